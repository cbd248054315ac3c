"""The attention explorer: train a tiny transformer live and watch attention sinks form; analyse a real model.

Compose it in a ``panel serve`` app (``panels/attention.py``) or a notebook::

    AttentionExplorer(attention="softmax", compare="gated-head").servable()

The training tab trains on Bigram-Backcopy (:mod:`engine.transformer.training`) in a background
thread and shows, at every probe: a layer x head grid of attention maps (a step slider scrubs back
through every probe so far; it follows the newest unless moved), one enlarged head with the query
token, key token and weight on hover, and curves over training: sink scores per head on non-trigger
(solid) and trigger (dashed) queries, the sink rate, value drain, residual peak, and the in-context
and bigram losses. A second variant with the same seed (``compare``) trains alongside, step for
step, with its own grid and its curves on the same axes. Learning rate and probe interval act on a
running run at its next chunk; the other settings apply to the next run. Every run is stored under
the runs folder and can be opened again by path. Bad values are reported beside the controls and
start nothing. The real-model tab is :class:`explorer.attention_real.RealModelTab`; the run control, the
status line and the opening of stored runs are shared with the emergence dashboard
(:class:`explorer.training_app.TrainingApp`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import panel as pn
import param

from engine.store import open_run
from engine.transformer.model import ATTENTIONS, OPTIMIZERS
from engine.transformer.training import AttentionConfig
from explorer.attention_data import (
    DISPLAY_MAX,
    ProbeHistory,
    bin_labels,
    bin_ticks,
    head_series,
    mosaic,
    pool,
    probe_rows,
    step_rows,
    tile_size,
    token_labels,
)
from explorer.attention_real import RealModelTab
from explorer.attention_run import ENDED, SequenceAttention, TrainingRun
from explorer.attention_views import RUN_COLORS, CurveView, HeadGrid, Line, PatternView
from explorer.session import locked
from explorer.training_app import IDLE, TrainingApp

__all__ = ["AttentionExplorer", "Shown"]

SEQUENCES = 8  # probe sequences offered for single-sequence attention
MEAN = -1  # "attention of": the probe-batch mean
RESTART_FIELDS = ("attention", "optimizer", "layers", "heads", "width", "length", "steps", "seed")


@dataclass
class Shown:
    """A run on screen (live or stored): its config, probes so far and probe sequences."""

    label: str  # "A" or "B"
    config: AttentionConfig
    history: ProbeHistory
    tokens: np.ndarray  # (sample, position) probe sequences
    trigger: np.ndarray  # (sample, position) bool
    names: np.ndarray  # (token,) vocabulary
    tile: int
    path: Path | None = None
    seq: SequenceAttention | None = None  # single-sequence attention (live runs: weights in memory)
    status: str = ""
    sink: float = float("nan")  # strongest non-trigger sink score at the newest probe

    @property
    def name(self) -> str:
        return self.label


def config_from_attrs(attrs: dict) -> AttentionConfig:
    """The config a stored run was made with."""
    return AttentionConfig.from_dict(json.loads(attrs["config"]))


class AttentionExplorer(TrainingApp):
    """Attention sinks, live and stored, and a real model's probe (one per browser session)."""

    engine = "attention"
    ending = "Reset"

    attention = param.Selector(default="softmax", objects=list(ATTENTIONS), doc="attention variant")
    optimizer = param.Selector(default="adamw", objects=list(OPTIMIZERS), doc="optimizer")
    compare = param.Selector(
        default="none", objects=["none", *ATTENTIONS], doc="a second variant trained alongside (same seed)"
    )

    def __init__(
        self,
        *,
        layers: int = 2,
        heads: int = 2,
        width: int = 64,
        length: int = 32,
        lr: float = 3e-3,
        steps: int = 1500,
        probe_every: int = 25,
        seed: int = 0,
        open_path: str | None = None,
        probe_path: str | None = None,
        period_ms: int = 200,
        probe_fn: Callable[..., Any] | None = None,
        **params,
    ):
        super().__init__(period_ms=period_ms, **params)
        self.grids = [HeadGrid("grid-0", "Run A"), HeadGrid("grid-1", "Run B")]
        for i, grid in enumerate(self.grids):
            grid.on_pick = lambda layer, head, i=i: self._on_pick(i, layer, head)
        self.pattern = PatternView("pattern")
        self.sinks = CurveView(
            "sinks", "Sink score per head · solid: non-trigger queries, dashed: trigger queries", "attention to BOS",
            fit_y=False,
        )  # fmt: skip
        self.drain = CurveView("drain", "Value drain per head", "‖v BOS‖ / mean ‖v other‖", y_range=(0.0, 1.5))
        self.resid = CurveView("resid", "Residual peak per layer", "‖h BOS‖ / mean ‖h other‖", y_range=(0.0, 2.0))
        self.losses = CurveView(
            "losses", "Losses · solid: in-context (trigger), dashed: bigram, faint: training", "cross-entropy (nats)",
            y_range=(0.05, 5.0), log=True,
        )  # fmt: skip
        self.curves = (self.sinks, self.drain, self.resid, self.losses)
        self.real = RealModelTab(probe_fn=probe_fn, open_path=probe_path)
        self.shown: list[Shown] = []
        self._drawn: list[tuple | None] = [None, None]
        self._enlarged: tuple | None = None
        self._widgets(layers, heads, width, length, lr, steps, probe_every, seed)
        self._check()
        self._open_and_watch(open_path)

    # -- widgets --------------------------------------------------------------------------
    def _widgets(
        self, layers: int, heads: int, width: int, length: int, lr: float, steps: int, probe_every: int, seed: int
    ) -> None:
        def ints(name: str, value: int, css: str, start: int = 0, w: int = 100) -> pn.widgets.IntInput:
            return pn.widgets.IntInput(name=name, value=value, start=start, width=w, css_classes=[css])

        self.layers_input = ints("layers", layers, "layers-input", 1)
        self.heads_input = ints("heads", heads, "heads-input", 1)
        self.width_input = ints("width d", width, "width-input", 1)
        self.length_input = ints("sequence length", length, "length-input", 3, 145)
        self.steps_input = ints("training steps", steps, "steps-input", 1, 145)
        self.seed_input = ints("seed", seed, "seed-input", 0)
        self.lr_input = pn.widgets.FloatInput(
            name="learning rate", value=lr, step=1e-3, format="0.00000", width=145, css_classes=["lr-input"]
        )
        self.probe_input = ints("probe every (steps)", probe_every, "probe-input", 1, 145)
        self._run_widgets()
        self.reset_btn = pn.widgets.Button(name="Reset", button_type="default", width=80)
        self.reset_btn.on_click(lambda e: locked(self.reset))
        self.probe_slider = pn.widgets.IntSlider(
            name="probe", start=0, end=1, value=0, disabled=True, width=330, css_classes=["probe-slider"]
        )
        self.probe_label = pn.pane.HTML("no probe yet", css_classes=["probe-step"], width=330, min_height=20)
        self.of_select = pn.widgets.Select(
            name="attention of", options={"probe-batch mean": MEAN}, value=MEAN, width=160, css_classes=["of-select"]
        )
        self.head_select = pn.widgets.Select(name="enlarged head", options={}, width=110, css_classes=["head-select"])
        self.run_select = pn.widgets.Select(
            name="of run", options={"A": 0}, value=0, width=70, visible=False, css_classes=["run-select"]
        )
        self.scale_select = pn.widgets.Select(
            name="colour scale", options={"0 – 1": "fixed", "largest shown": "auto"}, width=120
        )
        for w in (
            self.layers_input,
            self.heads_input,
            self.width_input,
            self.length_input,
            self.steps_input,
            self.seed_input,
        ):
            w.param.watch(lambda e: self._check(), "value")
        self.param.watch(lambda e: self._check(), ["attention", "optimizer", "compare"])
        self.lr_input.param.watch(lambda e: self._on_live("lr", e.new), "value")
        self.probe_input.param.watch(lambda e: self._on_live("probe_every", e.new), "value")
        self.probe_slider.param.watch(self._on_slider, "value")
        for w in (self.of_select, self.head_select, self.run_select, self.scale_select):
            w.param.watch(lambda e: self._redraw_maps(), "value")

    # -- config ---------------------------------------------------------------------------
    def _build(self) -> list[AttentionConfig]:
        """The configs of the run (and its comparison) from the controls; ``ValueError`` if bad."""
        values = {
            "layers": self.layers_input.value,
            "heads": self.heads_input.value,
            "width": self.width_input.value,
            "length": self.length_input.value,
            "steps": self.steps_input.value,
            "seed": self.seed_input.value,
            "lr": self.lr_input.value,
            "probe_every": self.probe_input.value,
        }
        for name, value in values.items():
            if value is None:
                raise ValueError(f"{name} is empty: type a number")
        cfg = AttentionConfig(attention=self.attention, optimizer=self.optimizer, **values)
        configs = [cfg]
        if self.compare != "none":
            configs.append(cfg.replace(attention=self.compare))
        return configs

    def _changed(self, configs: list[AttentionConfig]) -> list[str]:
        now = self.shown[0].config
        changed = [f for f in RESTART_FIELDS if getattr(configs[0], f) != getattr(now, f)]
        if len(configs) != len(self.shown) or (
            len(configs) > 1 and configs[1].attention != self.shown[1].config.attention
        ):
            changed.append("compare")
        return changed

    # -- run control ----------------------------------------------------------------------
    def _training_run(self, configs: list[AttentionConfig], paths: list[Path]) -> TrainingRun:
        return TrainingRun(configs, paths)

    def _variant(self, config: AttentionConfig) -> str:
        return config.attention

    def _show_live(self, run: TrainingRun, configs: list[AttentionConfig], paths: list[Path]) -> None:
        shown = []
        for label, slot, path in zip("AB", run.slots, paths, strict=False):
            stream = slot.stream
            tokens = stream.probe_tokens.numpy()
            shown.append(
                Shown(
                    label,
                    stream.config,
                    ProbeHistory(),
                    tokens,
                    np.asarray(stream.probe_trigger, bool),
                    np.asarray(stream.task.itos),
                    tile_size(stream.config.layers, stream.config.heads, stream.config.length - 1),
                    path,
                    SequenceAttention(stream.config, tokens[:SEQUENCES]),
                )
            )
        self._setup(shown)

    def reset(self) -> None:
        """End the run (its stores stay) and clear the views."""
        self._stop_run()
        self._setup([])
        self.status.object = IDLE
        self._check()

    def shutdown(self) -> None:
        """End this session's run (the browser tab closed)."""
        super().shutdown()
        self.real.shutdown()

    # -- views of the runs shown --------------------------------------------------------------
    def _setup(self, shown: list[Shown]) -> None:
        """Prepare every view for these runs (empty)."""
        super()._setup(shown)
        self._drawn = [None, None]  # what each grid shows: (probe, attention of, scale)
        self._enlarged = None  # what the enlarged map shows: (run, probe, attention of, scale, head)
        for i, grid in enumerate(self.grids):
            if i < len(shown):
                s = shown[i]
                labels = bin_labels([str(p) for p in range(s.config.length)], s.config.length - 1, s.tile)
                grid.layout(s.config.layers, s.config.heads, s.tile, labels=labels)
                grid.clear(f"Run {s.label}: {s.config.attention}, {s.config.optimizer}")
            else:
                grid.clear("Run B" if i else "Run A")
        self.grids[1].fig.visible = len(shown) > 1
        self.pattern.clear()
        steps = self._steps
        self.sinks.configure([self._sink_lines(i, s) for i, s in enumerate(shown)])
        self.drain.configure([self._series_lines(i, s, "vd") for i, s in enumerate(shown)])
        self.resid.configure(
            [
                [
                    Line(f"rp_{layer}", f"{s.label} · L{layer}", RUN_COLORS[i][layer % 16])
                    for layer in range(s.config.layers)
                ]
                for i, s in enumerate(shown)
            ]
        )
        self.losses.configure([self._loss_lines(i, s) for i, s in enumerate(shown)])
        for view in self.curves:
            view.set_steps(steps)
        with self._quietly():
            first = shown[0].config if shown else None
            heads = (
                {f"L{layer} H{head}": (layer, head) for layer in range(first.layers) for head in range(first.heads)}
                if first
                else {}
            )
            self.head_select.options = heads
            self.head_select.value = next(iter(heads.values()), None)
            self.run_select.options = {s.label: i for i, s in enumerate(shown)} or {"A": 0}
            self.run_select.value = 0
            self.run_select.visible = len(shown) > 1
            live = bool(shown) and shown[0].seq is not None
            options = {"probe-batch mean": MEAN}
            if live:
                options.update({f"probe sequence {k}": k for k in range(min(SEQUENCES, shown[0].tokens.shape[0]))})
            self.of_select.options = options
            self.of_select.value = 0 if live else MEAN
            self.probe_slider.param.update(start=0, end=1, value=0, disabled=True)
            self.probe_label.object = "no probe yet"
        self._picked_outline()

    @staticmethod
    def _series_lines(i: int, s: Shown, prefix: str) -> list[Line]:
        colors = RUN_COLORS[i]
        return [
            Line(f"{prefix}_{key}", f"{s.label} · {label}", colors[k % 16])
            for k, (key, label) in enumerate(head_series(s.config.layers, s.config.heads))
        ]

    @staticmethod
    def _sink_lines(i: int, s: Shown) -> list[Line]:
        colors = RUN_COLORS[i]
        lines = []
        for k, (key, label) in enumerate(head_series(s.config.layers, s.config.heads)):
            legend = f"{s.label} · {label}"
            lines.append(Line(f"nt_{key}", legend, colors[k % 16], width=2.2))
            lines.append(Line(f"tr_{key}", legend, colors[k % 16], dash="dashed", width=1.5))
        lines.append(
            Line(
                "rate",
                f"{s.label} · sink rate (α₀ > 0.3)",
                "#333333" if i == 0 else "#999999",
                dash="dotted",
                width=2.5,
            )
        )
        return lines

    @staticmethod
    def _loss_lines(i: int, s: Shown) -> list[Line]:
        c = RUN_COLORS[i]
        return [
            Line("loss", f"{s.label} · training", c[2], width=1.0, alpha=0.3, kind="step"),
            Line("icl", f"{s.label} · in-context", c[0], width=2.2),
            Line("bigram", f"{s.label} · bigram", c[1], dash="dashed", width=2.2),
        ]

    def _push_rows(self, index: int, data, *, replace: bool = False) -> None:
        rows = probe_rows(data)
        last = [v[-1] for k, v in rows.items() if k.startswith("nt_") and len(v)]
        if last and np.isfinite(last).any():
            self.shown[index].sink = float(np.nanmax(last))
        for view in self.curves:
            view.push(index, "probe", rows, replace=replace)
        loss = step_rows(data)
        keep = loss["step"] % self._loss_stride == 0
        self.losses.push(index, "step", {k: v[keep] for k, v in loss.items()}, replace=replace)

    # -- the periodic update ----------------------------------------------------------------
    def tick(self) -> None:
        """Drain the runs' chunks into the views (one push per tick) and refresh the status line."""
        run = self.run
        if run is None:
            self._stop_callback()
            return
        ended = run.state in ENDED  # read first: whatever the run queued before it ended is drained now
        events = run.drain()
        if events:
            with self._pushing():
                self._receive(events)
                self._new_probes()
                self._status()
        else:
            self._status()
        if ended and not run.pending:
            self._stop_callback()

    def _new_probes(self) -> None:
        """The slider covers every probe of run A; it follows the newest unless the user moved it."""
        n = len(self.shown[0].history) if self.shown else 0
        if n == 0:
            return
        self._follow_probes(n)
        self._redraw_maps()

    def _on_slider(self, event) -> None:
        if self._syncing:
            return
        n = len(self.shown[0].history) if self.shown else 0
        self._follow = event.new >= n - 1
        self._redraw_maps()

    def _on_pick(self, run: int, layer: int, head: int) -> None:
        """A click on a thumbnail enlarges that head."""
        with self._quietly():
            if run < len(self.shown):
                self.run_select.value = run
        if (layer, head) in self.head_select.options.values():
            if self.head_select.value == (layer, head):
                self._redraw_maps()
            else:
                self.head_select.value = (layer, head)

    def _picked_outline(self) -> None:
        picked = self.head_select.value
        for i, grid in enumerate(self.grids):
            if picked is not None and i == self.run_select.value:
                grid.pick(*picked)
            else:
                grid.picked = None
                grid._outline()

    def _patterns(self, s: Shown, index: int, of: int) -> tuple[np.ndarray, str, bool]:
        """(layer, head, q, k) maps of probe ``index``: the batch mean, or one sequence when its weights are kept."""
        step = s.history.steps[index]
        if of != MEAN and s.seq is not None and self.run is not None:
            weights = self.run.weights(0 if s.label == "A" else 1, step)
            if weights is not None:
                return s.seq.pattern(weights, step, of), f"probe sequence {of}", True
            return s.history.patterns[index], "probe-batch mean (weights of this probe not kept)", False
        return s.history.patterns[index], "probe-batch mean", False

    def _redraw_maps(self) -> None:
        """Grids and the enlarged head at the slider's probe (run B: its probe at the same step)."""
        if self._syncing or not self.shown or not len(self.shown[0].history):
            return
        index = min(int(self.probe_slider.value), len(self.shown[0].history) - 1)
        step = self.shown[0].history.steps[index]
        n = len(self.shown[0].history)
        follow = " · following the newest" if self._follow else ""
        self.probe_label.object = f"<b>step {step}</b> · probe {index + 1} of {n}{follow}"
        of = self.of_select.value if self.of_select.value is not None else MEAN
        auto = self.scale_select.value == "auto"
        picked = self.head_select.value
        enlarge_from = self.run_select.value or 0
        for i, s in enumerate(self.shown):
            if not len(s.history):
                continue
            j = index if i == 0 else s.history.index_at(step)
            grid_key = (j, of, auto)
            enlarge_key = (i, j, of, auto, picked) if i == enlarge_from and picked is not None else None
            redraw_grid = grid_key != self._drawn[i]
            redraw_enlarged = enlarge_key is not None and enlarge_key != self._enlarged
            if not (redraw_grid or redraw_enlarged):
                continue  # unchanged: nothing to send
            patterns, what, single = self._patterns(s, j, of)
            if redraw_grid:
                self._drawn[i] = grid_key
                image = mosaic(patterns, s.tile)
                high = float(np.nanmax(image)) if auto and np.isfinite(image).any() else 1.0
                title = f"{s.label}: {s.config.attention} · step {s.history.steps[j]}"
                self.grids[i].show(image, title, high=max(high, 1e-6))
            if redraw_enlarged:
                self._enlarged = enlarge_key
                self._enlarge(s, patterns, picked, of if single else MEAN, s.history.steps[j], what, auto)
        self._picked_outline()

    def _enlarge(
        self, s: Shown, patterns: np.ndarray, picked: tuple[int, int], sample: int, step: int, what: str, auto: bool
    ) -> None:
        layer, head = picked
        if layer >= patterns.shape[0] or head >= patterns.shape[1]:
            return
        pattern = pool(patterns[layer, head], DISPLAY_MAX)  # (q, k)
        n = patterns.shape[-1] if sample != MEAN else s.history.positions
        if sample == MEAN:
            labels, texts = [f"position {p}" for p in range(n)], None
        else:
            labels = token_labels(s.tokens[sample, :n], s.names, s.trigger[sample, :n])
            texts = [repr(str(s.names[int(t)])) for t in s.tokens[sample, :n]]
        size = pattern.shape[-1]
        labels, ticks = bin_labels(labels, n, size), bin_ticks(n, size, texts)
        high = float(np.nanmax(pattern)) if auto and np.isfinite(pattern).any() else 1.0
        self.pattern.set_high(max(high, 1e-6))
        self.pattern.show(
            pattern,
            labels,
            f"Run {s.label} ({s.config.attention}) · L{layer} H{head} · step {step} · {what}",
            ticks=ticks,
        )

    # -- status ---------------------------------------------------------------------------
    def _headline(self, s: Shown) -> str:
        return f", sink {s.sink:.2f}" if np.isfinite(s.sink) else ""

    # -- stored runs ----------------------------------------------------------------------
    def _read_stored(self, paths: list[Path]) -> tuple[list, list[AttentionConfig]]:
        datasets = [open_run(p) for p in paths]
        return datasets, [config_from_attrs(ds.attrs) for ds in datasets]

    def _show_stored(self, paths: list[Path], datasets: list, configs: list[AttentionConfig]) -> None:
        shown = []
        for label, ds, cfg, p in zip("AB", datasets, configs, paths, strict=False):
            shown.append(
                Shown(
                    label,
                    cfg,
                    ProbeHistory(),
                    np.asarray(ds["probe_tokens"].values),
                    np.asarray(ds["probe_trigger"].values, bool),
                    np.asarray(ds["token_name"].values),
                    tile_size(cfg.layers, cfg.heads, cfg.length - 1),
                    Path(p),
                    status=str(ds.attrs.get("run_status", "")),
                )
            )
        self._sync_controls(configs)
        self._setup(shown)
        for i, ds in enumerate(datasets):
            self._add(i, ds, replace=True)
        self._new_probes()

    def _sync_controls(self, configs: list[AttentionConfig]) -> None:
        """The controls show the opened run, ready to run again."""
        cfg = configs[0]
        with self._quietly():
            compare = configs[1].attention if len(configs) > 1 else "none"
            self.param.update(attention=cfg.attention, optimizer=cfg.optimizer, compare=compare)
            self.layers_input.value, self.heads_input.value, self.width_input.value = cfg.layers, cfg.heads, cfg.width
            self.length_input.value, self.steps_input.value, self.seed_input.value = cfg.length, cfg.steps, cfg.seed
            self.lr_input.value, self.probe_input.value = cfg.lr, cfg.probe_every
        self._check()

    # -- layout -------------------------------------------------------------------------------
    def __panel__(self):
        controls = pn.Column(
            "### Model and task",
            pn.widgets.Select.from_param(self.param.attention, width=145, css_classes=["attention-select"]),
            pn.widgets.Select.from_param(self.param.optimizer, width=145, css_classes=["optimizer-select"]),
            pn.Row(self.layers_input, self.heads_input, self.width_input),
            pn.Row(self.length_input, self.steps_input),
            pn.Row(self.seed_input),
            pn.widgets.Select.from_param(
                self.param.compare, name="compare with (same seed)", width=200, css_classes=["compare-select"]
            ),
            *self._run_controls([self.lr_input, self.probe_input], self.reset_btn),
            width=340,
        )
        maps = pn.Column(
            pn.Row(self.probe_slider, self.probe_label),
            pn.Row(self.of_select, self.head_select, self.run_select, self.scale_select),
            pn.Row(self.grids[0], self.grids[1], self.pattern),
        )
        curves = pn.Column(
            self.sinks,
            pn.Row(self.drain, self.resid, sizing_mode="stretch_width"),
            self.losses,
            sizing_mode="stretch_width",
        )
        training = pn.Row(controls, pn.Column(self.status, maps, curves, sizing_mode="stretch_width"))
        tabs = pn.Tabs(("Training", training), ("Real model", self.real), dynamic=False, sizing_mode="stretch_width")
        if self.real.tables is not None and not self.shown:  # started with a stored probe of a text
            tabs.active = 1
        return tabs
