"""The emergence explorer: train a task live and watch activations, heads and accuracies emerge, with their
fitted laws and onsets.

Compose it in a ``panel serve`` app (``panels/emergence.py``) or a notebook::

    EmergenceExplorer(task="induction", steps=400).servable()

The training tab trains one of the tasks of :mod:`engine.emergence` (massive activations, lazy-neuron
sparsity, induction heads, Reddy's bursty in-context classification, grokking) in a background
thread (:class:`explorer.attention_run.TrainingRun` running
:class:`engine.emergence.training.EmergenceStream`) and shows, as the probes arrive:

- per layer, the top/median activation ratio and the share of nonzero MLP activations, each with
  the emergence law (Gallego-Feliciano et al. 2025) fitted to each layer and redrawn as the run
  goes, its kind and R² in the table of fits;
- the task's abrupt curves (in-context accuracy and the best head's induction score; in-context and
  in-weights accuracy; train and test accuracy; the in-context loss) with their logistic fits and a
  marker at each onset (10 % of the way up the step) and a band to its 90 % point;
- per head, the induction and previous-token scores (icl-bursty: query → matching item and label →
  item attention);
- for grokking, the embedding Fourier spectrum at a chosen probe and every frequency over training;
- the training loss.

A second run with the same seed and one setting changed (the clamp intervention off and on,
burstiness 1 against the chosen B, no weight decay) trains alongside, step for step, its curves in
warm colours on the same axes. The fits are recomputed in a background thread (throttled: see
:class:`explorer.emergence_data.Refitter`). Learning rate and probe interval act on a running run at
its next chunk; the other settings apply to the next run. Bad values are reported beside the controls
and start nothing. Every run is stored under the runs folder and can be opened again by path, with its
curves and fits. The features tab is :class:`explorer.emergence_features.FeatureTab`. Like the attention
dashboard, the explorer is a :class:`explorer.training_app.TrainingApp`, which holds what both do alike.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import panel as pn
import param

from engine.emergence.config import TASKS, EmergenceConfig
from engine.store import StoreError, open_chunk
from explorer.attention_data import head_series
from explorer.attention_run import ENDED, TrainingRun
from explorer.attention_views import CurveView, Heatmap
from explorer.emergence_data import (
    ABRUPT,
    HEAD_SCORES,
    Fits,
    Refitter,
    RunHistory,
    abrupt_names,
    fit_summary,
    fitted_rows,
    head_rows,
    layer_rows,
    loss_rows,
    onset_rows,
    scalar_rows,
    spectrum_map,
)
from explorer.emergence_features import FeatureSource, FeatureTab
from explorer.emergence_views import RUN_COLORS, FitCurveView, Line, SpectrumView, fit_table_html
from explorer.session import locked
from explorer.training_app import TrainingApp

__all__ = ["EmergenceExplorer", "Shown", "COMPARES", "TASK_FIELDS", "compare_configs"]

MAP_EVERY = 2.0  # seconds between redraws of the spectrum-over-training map while a run trains
MODEL_FIELDS = ("layers", "heads", "width")
TASK_FIELDS: dict[str, tuple[str, ...]] = {  # the settings each task reads, beyond COMMON_FIELDS
    "massive": (*MODEL_FIELDS, "length"),
    "sparsity": (*MODEL_FIELDS, "length"),
    "induction": (*MODEL_FIELDS, "vocab", "repeat"),
    "icl-bursty": (*MODEL_FIELDS, "pairs", "burstiness", "classes"),
    "grokking": ("modulus", "train_fraction", "weight_decay"),
}
CLAMP_FIELDS = ("clamp", "clamp_mode", "clamp_start", "clamp_end")
COMMON_FIELDS = ("steps", "seed", "lr", "probe_every")
LIVE_FIELDS = ("lr", "probe_every")
COMPARES = {
    "none": "none",
    "clamp": "the clamp: A without, B with",
    "burstiness": "burstiness B = 1 (icl-bursty)",
    "weight decay": "weight decay 0",
}
CLASS_CHOICES = [2**k for k in range(4, 15)]  # K offered by the classes slider: 16 .. 16384
TASK_NOTES = {
    "massive": "Bigram-Backcopy, ReLU MLP: top/median activation per layer (Sun et al. 2024)",
    "sparsity": "Bigram-Backcopy, ReLU MLP: share of nonzero MLP activations (Li et al. 2022)",
    "induction": "associative recall over random tokens, attention-only: induction heads (Olsson et al. 2022)",
    "icl-bursty": "in-context classification with burstiness B (Reddy 2023)",
    "grokking": "(a + b) mod p, two-layer network with weight decay (Tian 2025)",
}


def _fields(task: str) -> tuple[str, ...]:
    return (*TASK_FIELDS[task], *COMMON_FIELDS, *(CLAMP_FIELDS if task != "grokking" else ()))


def compare_configs(cfg: EmergenceConfig, compare: str) -> list[EmergenceConfig]:
    """Run A's and, with a comparison, run B's config (the same seed, one setting changed)."""
    if compare == "none":
        return [cfg]
    if compare == "clamp":
        if not cfg.clamp:
            raise ValueError("compare=clamp needs heads to clamp: type them as LAYER.HEAD (e.g. 0.1,1.0)")
        if cfg.clamp_end <= cfg.clamp_start:
            raise ValueError(
                f"compare=clamp needs a clamp window: clamp_end={cfg.clamp_end} is not after "
                f"clamp_start={cfg.clamp_start}"
            )
        return [cfg.replace(clamp=""), cfg]
    if compare == "burstiness":
        if cfg.task != "icl-bursty":
            raise ValueError(f"compare=burstiness is for the icl-bursty task, not {cfg.task}")
        if cfg.burstiness == 1:
            raise ValueError("compare=burstiness compares with B = 1: choose a burstiness above 1 for run A")
        return [cfg, cfg.replace(burstiness=1)]
    if compare == "weight decay":
        if cfg.weight_decay == 0:
            raise ValueError("compare=weight decay compares with weight decay 0: choose a positive one for run A")
        return [cfg, cfg.replace(weight_decay=0.0)]
    raise ValueError(f"compare={compare!r} is not allowed: choose one of {', '.join(COMPARES)}")


def _describe(cfg: EmergenceConfig, other: EmergenceConfig | None) -> str:
    """What sets a run apart from the other one shown (``""`` alone)."""
    if other is None:
        return ""
    if cfg.clamp != other.clamp:
        return f"clamp {cfg.clamp} [{cfg.clamp_start}, {cfg.clamp_end})" if cfg.clamp else "no clamp"
    if cfg.burstiness != other.burstiness and cfg.task == "icl-bursty":
        return f"B = {cfg.burstiness}"
    if cfg.weight_decay != other.weight_decay:
        return f"weight decay {cfg.weight_decay:g}"
    return f"seed {cfg.seed}"


@dataclass
class Shown:
    """A run on screen (live or stored): its config, everything received so far and its fits."""

    label: str  # "A" or "B"
    config: EmergenceConfig
    history: RunHistory = field(default_factory=RunHistory)
    path: Path | None = None
    status: str = ""
    what: str = ""  # what sets it apart from the other run shown
    fits: Fits | None = None
    fitted: int = 0  # the history version last sent to be fitted

    @property
    def name(self) -> str:
        return f"{self.label} ({self.what})" if self.what else self.label


class EmergenceExplorer(TrainingApp):
    """Emergence over training, live and stored, with fitted laws and onsets (one per browser session)."""

    engine = "emergence"
    ending = "Stop"

    task = param.Selector(default="induction", objects=list(TASKS), doc="what to train and measure")
    compare = param.Selector(default="none", objects=list(COMPARES), doc="a second run alongside (same seed)")
    layers = param.Integer(2, allow_None=True, doc="transformer blocks")
    heads = param.Integer(4, allow_None=True, doc="attention heads per block")
    width = param.Integer(64, allow_None=True, doc="residual width d (a multiple of heads)")
    length = param.Integer(32, allow_None=True, doc="tokens per sequence (massive, sparsity)")
    vocab = param.Integer(64, allow_None=True, doc="random tokens (induction)")
    repeat = param.Integer(16, allow_None=True, doc="length of the repeated half (induction)")
    pairs = param.Integer(8, allow_None=True, doc="N item-label pairs before the query (icl-bursty)")
    burstiness = param.Integer(4, allow_None=True, doc="B: copies of each class in a bursty context")
    classes = param.Integer(256, allow_None=True, doc="K classes seen in training (icl-bursty)")
    modulus = param.Integer(59, allow_None=True, doc="p of (a + b) mod p (grokking)")
    train_fraction = param.Number(0.4, allow_None=True, doc="share of the p² pairs trained on (grokking)")
    weight_decay = param.Number(1.0, allow_None=True, doc="weight decay")
    steps = param.Integer(1500, allow_None=True, doc="training steps")
    seed = param.Integer(0, allow_None=True, doc="seed of the weights, the data and the probes")
    lr = param.Number(1e-3, allow_None=True, doc="learning rate (acts on a running run)")
    probe_every = param.Integer(25, allow_None=True, doc="steps between probes (acts on a running run)")
    clamp = param.String("", doc="heads clamped during the window: LAYER.HEAD,…")
    clamp_mode = param.Selector(default="zero", objects=["zero", "mean"], doc="clamp to zero or the batch mean")
    clamp_start = param.Integer(0, allow_None=True, doc="first clamped step")
    clamp_end = param.Integer(0, allow_None=True, doc="first step after the clamp")

    def __init__(
        self,
        *,
        open_path: str | None = None,
        period_ms: int = 250,
        fit_every: float = 1.0,
        **params,
    ):
        task = params.get("task", "induction")
        defaults = EmergenceConfig.for_task(task) if task in TASKS else EmergenceConfig()
        given = set(params)
        for name in self._setting_names():
            if name not in given:
                params[name] = getattr(defaults, name)
        super().__init__(period_ms=period_ms, **params)
        self.refitter = Refitter(every=fit_every)
        self.shown: list[Shown] = []
        self._generation = 0  # bumped for every new set of runs shown; stale fits are dropped
        self._map_due, self._map_at = False, 0.0  # the spectrum map waits to be redrawn / was at
        self._views()
        self._widgets()
        self._boxes()
        self.features = FeatureTab()
        self._check()
        self._task_layout()
        self._setup([])
        self._open_and_watch(open_path)

    @classmethod
    def _setting_names(cls) -> list[str]:
        return [n for n in dict.fromkeys(f for t in TASKS for f in _fields(t))]

    # -- views ----------------------------------------------------------------------------------
    def _views(self) -> None:
        self.ratio = FitCurveView(
            "ratio", "Top / median |activation| per layer · dashed: emergence-law fit", "max |h| / median |h|",
            y_range=(1.0, 10.0), log=True,
        )  # fmt: skip
        self.sparsity = FitCurveView(
            "sparsity", "Share of nonzero MLP activations per layer · dashed: emergence-law fit", "nonzero share",
            y_range=(0.0, 0.6),
        )  # fmt: skip
        self.abrupt = FitCurveView("abrupt", "Abrupt curves", "accuracy", y_range=(0.0, 1.0), onsets=True)
        self.heads_a = CurveView("heads-a", "Induction score per head", "score", y_range=(0.0, 0.5))
        self.heads_b = CurveView("heads-b", "Previous-token score per head", "score", y_range=(0.0, 0.5))
        self.loss = CurveView("loss", "Training loss", "cross-entropy (nats)", y_range=(0.5, 5.0), log=True)
        self.grok_loss = CurveView(
            "grok-loss", "Train (solid) and test (dashed) loss", "cross-entropy (nats)", y_range=(0.01, 5.0), log=True
        )
        self.spectrum = SpectrumView("spectrum")
        self.spectrum_map = Heatmap(
            "spectrum-map", "Embedding spectrum over training (run A)", "training step", "frequency k",
            width=420, height=300, fmt="0.000",
        )  # fmt: skip
        self.curves = (self.ratio, self.sparsity, self.abrupt, self.heads_a, self.heads_b, self.grok_loss)
        self.fit_table = pn.pane.HTML(fit_table_html([]), css_classes=["fit-table"], width=470)

    # -- widgets --------------------------------------------------------------------------
    def _widgets(self) -> None:
        def ints(name: str, label: str, w: int = 100) -> pn.widgets.IntInput:
            css = f"{name.replace('_', '-')}-input"
            return pn.widgets.IntInput.from_param(self.param[name], name=label, width=w, css_classes=[css])

        def floats(name: str, label: str, w: int = 145, fmt: str = "0.00000") -> pn.widgets.FloatInput:
            css = f"{name.replace('_', '-')}-input"
            return pn.widgets.FloatInput.from_param(
                self.param[name], name=label, width=w, format=fmt, step=1e-3, css_classes=[css]
            )

        self.task_select = pn.widgets.Select.from_param(
            self.param.task, name="task", width=200, css_classes=["task-select"]
        )
        self.task_note = pn.pane.HTML("", width=320, css_classes=["task-note"], styles={"font-size": "9pt"})
        self.inputs: dict[str, Any] = {
            "layers": ints("layers", "layers"),
            "heads": ints("heads", "heads"),
            "width": ints("width", "width d"),
            "length": ints("length", "sequence length", 145),
            "vocab": ints("vocab", "random tokens", 145),
            "repeat": ints("repeat", "repeated half", 145),
            "pairs": ints("pairs", "pairs N", 100),
            "burstiness": pn.widgets.IntSlider(
                name="burstiness B", start=1, end=max(2, self.pairs or 2), value=self.burstiness or 1, width=300,
                css_classes=["burstiness-input"],
            ),
            "classes": pn.widgets.DiscreteSlider(
                name="classes K", options=self._class_options(self.classes), value=self.classes or 256, width=300,
                css_classes=["classes-input"],
            ),
            "modulus": ints("modulus", "modulus p", 100),
            "train_fraction": pn.widgets.FloatSlider.from_param(
                self.param.train_fraction, name="train fraction", start=0.05, end=0.95, step=0.05, width=300,
                css_classes=["train-fraction-input"],
            ),
            "weight_decay": floats("weight_decay", "weight decay", 145, "0.0000"),
            "steps": ints("steps", "training steps", 145),
            "seed": ints("seed", "seed", 100),
            "lr": floats("lr", "learning rate"),
            "probe_every": ints("probe_every", "probe every (steps)", 145),
            "clamp": pn.widgets.TextInput.from_param(
                self.param.clamp, name="clamp heads (L.H,…)", placeholder="e.g. 0.1,1.0", width=145,
                css_classes=["clamp-input"],
            ),
            "clamp_mode": pn.widgets.Select.from_param(self.param.clamp_mode, name="clamp to", width=90),
            "clamp_start": ints("clamp_start", "from step", 100),
            "clamp_end": ints("clamp_end", "until step", 100),
        }  # fmt: skip
        for name in ("burstiness", "classes"):  # sliders linked by hand: their ranges change
            self.inputs[name].param.watch(lambda e, n=name: self._from_slider(n, e.new), "value")
        self.compare_select = pn.widgets.Select(
            name="compare with (same seed)", options={v: k for k, v in COMPARES.items()}, value=self.compare,
            width=230, css_classes=["compare-select"],
        )  # fmt: skip
        self.compare_select.param.watch(lambda e: setattr(self, "compare", e.new), "value")
        self._run_widgets()
        self.stop_btn = pn.widgets.Button(name="Stop", button_type="default", width=80)
        self.stop_btn.on_click(lambda e: locked(self.stop))
        self.probe_slider = pn.widgets.IntSlider(
            name="spectrum at probe", start=0, end=1, value=0, disabled=True, width=300, css_classes=["probe-slider"]
        )
        self.probe_slider.param.watch(self._on_slider, "value")
        settings = [n for n in self._setting_names() if n not in LIVE_FIELDS]
        self.param.watch(lambda *events: self._check(), [*settings, "compare"])
        self.param.watch(self._on_task, "task")
        self.param.watch(self._on_pairs, "pairs")
        for name in LIVE_FIELDS:
            self.param.watch(lambda e, n=name: self._on_live(n, e.new), name)

    @staticmethod
    def _class_options(current: int | None) -> list[int]:
        return sorted(set(CLASS_CHOICES) | ({int(current)} if current else set()))

    def _from_slider(self, name: str, value: int) -> None:
        if not self._syncing:
            setattr(self, name, int(value))

    def _to_sliders(self) -> None:
        """The hand-linked sliders show the params (their ranges follow pairs and K)."""
        with self._quietly():
            b = self.inputs["burstiness"]
            b.end = max(2, self.pairs or 2, self.burstiness or 1)  # a B beyond N stays shown (and reported)
            b.value = max(1, self.burstiness or 1)
            k = self.inputs["classes"]
            k.options = self._class_options(self.classes)
            k.value = self.classes or 256

    def _on_pairs(self, event) -> None:
        self._to_sliders()

    def _on_task(self, event) -> None:
        """A new task: its own defaults (seed kept) and its settings shown."""
        if self._syncing:
            return
        defaults = EmergenceConfig.for_task(event.new)
        with self._quietly():
            self.param.update(**{n: getattr(defaults, n) for n in self._setting_names() if n != "seed"}, compare="none")
            self.compare_select.value = "none"
        self._to_sliders()
        self._task_layout()
        self._check()

    def _task_layout(self) -> None:
        task = self.task
        shown = set(_fields(task))
        for name, widget in self.inputs.items():
            widget.visible = name in shown
        self.task_note.object = TASK_NOTES.get(task, "")

    # -- config ---------------------------------------------------------------------------
    def _build(self) -> list[EmergenceConfig]:
        """The configs of the run (and its comparison) from the settings; ``ValueError`` if bad."""
        values = {name: getattr(self, name) for name in _fields(self.task)}
        for name, value in values.items():
            if value is None:
                raise ValueError(f"{name} is empty: type a number")
        cfg = EmergenceConfig.for_task(self.task, **values)
        return compare_configs(cfg, self.compare)

    def _changed(self, configs: list[EmergenceConfig]) -> list[str]:
        now = self.shown[0].config
        changed = [
            f
            for f in ("task", *_fields(now.task))
            if f not in LIVE_FIELDS and getattr(configs[0], f) != getattr(now, f)
        ]
        if len(configs) != len(self.shown):
            changed.append("compare")
        return changed

    # -- run control ----------------------------------------------------------------------
    def _training_run(self, configs: list[EmergenceConfig], paths: list[Path]) -> TrainingRun:
        from engine.emergence.training import EmergenceStream

        return TrainingRun(
            configs,
            paths,
            make_stream=EmergenceStream,
            model_of=lambda stream: stream.run.model,
            snapshot_bytes=1,  # the feature tab needs the newest weights only
            name="dynascope-emergence",
        )

    def _variant(self, config: EmergenceConfig) -> str:
        return config.task

    def _show_live(self, run: TrainingRun, configs: list[EmergenceConfig], paths: list[Path]) -> None:
        shown = []
        for i, (label, cfg, path) in enumerate(zip("AB", configs, paths, strict=False)):
            other = configs[1 - i] if len(configs) > 1 else None
            shown.append(Shown(label, cfg, path=path, what=_describe(cfg, other)))
        self._setup(shown)
        self.features.set_sources([self._feature_source(i, s, live=True) for i, s in enumerate(shown)])

    def _feature_source(self, index: int, s: Shown, *, live: bool = False) -> FeatureSource:
        """What the feature tab needs of a run (a stored run has no weights)."""
        model_cfg = tokens = names = None
        weights = lambda: None  # noqa: E731
        if live and self.run is not None and index < len(self.run.slots):
            task_run = self.run.slots[index].stream.run
            model_cfg = getattr(task_run.model, "cfg", None)
            probe = getattr(task_run, "probe_inputs", None)
            tokens = probe.numpy() if probe is not None and not probe.dtype.is_floating_point else None
            task = getattr(task_run, "task", None)
            names = getattr(task, "itos", None)
            if names is None and model_cfg is not None and s.config.task == "induction":
                names = [str(t) for t in range(s.config.vocab)] + ["<bos>"]
            run = self.run
            weights = lambda: run.latest_weights(index)  # noqa: E731
        history = s.history
        return FeatureSource(
            s.label, s.config.task, model_cfg, weights, tokens, names, s.config.seed, lambda: history.data
        )

    def stop(self) -> None:
        """End the run for good (its stores are marked stopped); its curves, fits and features stay."""
        if self.run is None or self.run.state in ENDED:
            return
        self.run.stop()
        self._ensure_callback()  # whatever it queued is drawn and fitted
        self._status()
        self._check()

    def shutdown(self) -> None:
        """End this session's run (the browser tab closed)."""
        super().shutdown()
        self.refitter.stop()
        self.features.shutdown()

    # -- views of the runs shown --------------------------------------------------------------
    def _setup(self, shown: list[Shown]) -> None:
        """Prepare every view for these runs (empty)."""
        super()._setup(shown)
        self._generation += 1
        self.refitter.forget()
        task = shown[0].config.task if shown else self.task
        steps = self._steps
        layered = task in ("massive", "sparsity", "induction")
        mlp = layered and bool(shown) and all(s.config.mlp_ratio > 0 for s in shown)
        runs_layers = [self._layer_lines(i, s, "") for i, s in enumerate(shown)] if layered else []
        fits_layers = [self._layer_lines(i, s, "fit") for i, s in enumerate(shown)] if layered else []
        self.ratio.configure(runs_layers, fits_layers)
        self.sparsity.configure(runs_layers if mlp else [], fits_layers if mlp else [])
        abrupt = dict(ABRUPT.get(task, ()))
        accuracy = task in ("induction", "icl-bursty", "grokking")
        self.abrupt.fig.title.text = (
            "Abrupt curves · dashed: logistic fit · dash-dot line: onset (10 % of the step), band: to 90 %"
        )
        self.abrupt.fig.yaxis.axis_label = "accuracy / score" if accuracy else "cross-entropy (nats)"
        self.abrupt.configure(
            [self._abrupt_lines(i, s, abrupt, fit=False) for i, s in enumerate(shown)],
            [self._abrupt_lines(i, s, abrupt, fit=True) for i, s in enumerate(shown)],
        )
        scores = HEAD_SCORES.get(task, ())
        for view, k in ((self.heads_a, 0), (self.heads_b, 1)):
            if k < len(scores):
                view.fig.title.text = f"{scores[k][1]} per head"
            view.configure([self._head_lines(i, s) for i, s in enumerate(shown)] if k < len(scores) else [])
        grok = task == "grokking"
        self.grok_loss.configure(
            [
                [
                    Line("train_loss", f"{s.label} · train", RUN_COLORS[i][0], width=2.0),
                    Line("test_loss", f"{s.label} · test", RUN_COLORS[i][1], dash="dashed", width=2.0),
                ]
                for i, s in enumerate(shown)
            ]
            if grok
            else []
        )
        self.loss.configure(
            [
                [Line("loss", f"{s.name} · training", RUN_COLORS[i][0], width=1.0, kind="step")]
                for i, s in enumerate(shown)
            ]
        )
        for view in (*self.curves, self.loss):
            view.set_steps(steps)
        self.spectrum.clear()
        self.spectrum_map.clear()
        self._map_due = False
        self.fit_table.object = fit_table_html([])
        with self._quietly():
            self.probe_slider.param.update(start=0, end=1, value=0, disabled=True)
        self.layer_box.visible = layered
        self.sparsity.fig.visible = mlp
        self.heads_box.visible = bool(scores)
        self.grok_box.visible = grok

    @staticmethod
    def _layer_lines(i: int, s: Shown, kind: str) -> list[Line]:
        colors = RUN_COLORS[i]
        if kind == "fit":
            return [
                Line(f"L{layer}", f"{s.label} · L{layer} fit", colors[layer % 16], dash="dashed", width=1.6)
                for layer in range(s.config.layers)
            ]
        return [
            Line(f"L{layer}", f"{s.name} · L{layer}", colors[layer % 16], width=2.2, alpha=0.75)
            for layer in range(s.config.layers)
        ]

    @staticmethod
    def _abrupt_lines(i: int, s: Shown, abrupt: dict[str, str], *, fit: bool) -> list[Line]:
        colors = RUN_COLORS[i]
        fitted = abrupt_names(s.config.task)
        lines = []
        for k, (name, label) in enumerate(abrupt.items()):
            if fit and name not in fitted:
                continue
            if fit:
                lines.append(Line(name, f"{s.label} · {label} fit", colors[k], dash="dashed", width=1.6))
            else:
                lines.append(Line(name, f"{s.name} · {label}", colors[k], width=2.2, alpha=0.8))
        return lines

    @staticmethod
    def _head_lines(i: int, s: Shown) -> list[Line]:
        colors = RUN_COLORS[i]
        return [
            Line(key, f"{s.label} · {label}", colors[k % 16], dash="solid" if i == 0 else "dashed")
            for k, (key, label) in enumerate(head_series(s.config.layers, s.config.heads))
        ]

    def _push_rows(self, index: int, data, *, replace: bool = False) -> None:
        """The rows of a chunk (or a whole stored run) into every curve of run ``index``."""
        task = self.shown[index].config.task
        if "top_ratio" in data:
            self.ratio.push(index, "probe", layer_rows(data, "top_ratio"), replace=replace)
        if "nonzero_share" in data:
            self.sparsity.push(index, "probe", layer_rows(data, "nonzero_share"), replace=replace)
        self.abrupt.push(index, "probe", scalar_rows(data, [n for n, _ in ABRUPT.get(task, ())]), replace=replace)
        scores = HEAD_SCORES.get(task, ())
        for view, k in ((self.heads_a, 0), (self.heads_b, 1)):
            if k < len(scores):
                view.push(index, "probe", head_rows(data, scores[k][0]), replace=replace)
        if task == "grokking":
            self.grok_loss.push(index, "probe", scalar_rows(data, ["train_loss", "test_loss"]), replace=replace)
        self.loss.push(index, "step", loss_rows(data, self._loss_stride), replace=replace)

    # -- the periodic update ----------------------------------------------------------------
    def tick(self) -> None:
        """Drain the runs' chunks into the views, submit their histories for refitting, draw new fits."""
        run = self.run
        ended = run is None or run.state in ENDED  # read first: what the run queued before it ended is drained now
        events = run.drain() if run is not None else []
        fitted = [(key, fits) for key, fits in self.refitter.results() if key[0] == self._generation]
        redraw_map = self._map_due and (ended or time.perf_counter() - self._map_at >= MAP_EVERY)
        if events or fitted or redraw_map:
            with self._pushing():
                self._receive(events)
                if events:
                    self._new_probes()
                if redraw_map:
                    self._draw_map()
                for (_, index), fits in fitted:
                    if index < len(self.shown):
                        self.shown[index].fits = fits
                        self._draw_fits(index)
                if fitted:
                    self._draw_fit_table()
                self._status()
                self._refit()
        else:
            self._status()
        idle = not self.refitter.busy and not self._unfitted() and not self._map_due
        if ended and (run is None or not run.pending) and idle:
            self._stop_callback()

    def _unfitted(self) -> bool:
        return any(s.fitted != s.history.version for s in self.shown)

    def _refit(self) -> None:
        """Send every history that changed since it was last sent (the refitter keeps the newest)."""
        for i, s in enumerate(self.shown):
            if s.history.data is not None and s.fitted != s.history.version:
                s.fitted = s.history.version
                self.refitter.submit((self._generation, i), s.history.data, s.history.version)

    def _draw_fits(self, index: int) -> None:
        s = self.shown[index]
        fits = s.fits
        if fits is None:
            return
        if "top_ratio" in fits.laws:
            self.ratio.show_fit(index, fitted_rows(fits.laws["top_ratio"], fits.last_step))
        if "nonzero_share" in fits.laws:
            self.sparsity.show_fit(index, fitted_rows(fits.laws["nonzero_share"], fits.last_step))
        if fits.onsets:
            labels = dict(ABRUPT.get(s.config.task, ()))
            self.abrupt.show_fit(index, fitted_rows(fits.onsets, fits.last_step))
            colors = {name: RUN_COLORS[index][k] for k, name in enumerate(labels)}  # as the curves
            self.abrupt.show_onsets(index, onset_rows(fits.onsets, labels, fits.last_step), colors)

    def _draw_fit_table(self) -> None:
        rows = []
        for s in self.shown:
            if s.fits is not None:
                rows.extend(fit_summary(s.label, s.fits, dict(ABRUPT.get(s.config.task, ()))))
        self.fit_table.object = fit_table_html(rows)

    def _new_probes(self) -> None:
        """Grokking: the spectrum slider covers every probe of run A and follows the newest unless moved."""
        if not self.shown or self.shown[0].config.task != "grokking":
            return
        n = self.shown[0].history.probes
        if n == 0:
            return
        self._follow_probes(n)
        self._draw_spectrum()
        self._map_due = True  # the map of every probe is redrawn less often (a few hundred cells)
        self.features.refresh()

    def _on_slider(self, event) -> None:
        if self._syncing or not self.shown:
            return
        self._follow = event.new >= self.shown[0].history.probes - 1
        self._draw_spectrum()

    def _draw_spectrum(self) -> None:
        a = self.shown[0].history.data
        if a is None or "spectrum" not in a:
            return
        steps = np.asarray(a["probe"].values)
        index = min(int(self.probe_slider.value), len(steps) - 1)
        step = int(steps[index])
        for i, s in enumerate(self.shown):
            data = s.history.data
            if data is None or "spectrum" not in data:
                continue
            own = np.asarray(data["probe"].values)
            j = max(0, int(np.searchsorted(own, step, side="right")) - 1)
            self.spectrum.show(
                i, data["spectrum"].values[j], f"Embedding Fourier spectrum · step {step}", len(self.shown)
            )

    def _draw_map(self) -> None:
        """Run A's spectrum at every probe so far (frequency x step)."""
        self._map_due, self._map_at = False, time.perf_counter()
        a = self.shown[0].history.data if self.shown else None
        if a is None or "spectrum" not in a:
            return
        steps = np.asarray(a["probe"].values)
        matrix = spectrum_map(a)  # (frequency, probe)
        freqs = [f"k = {k}" for k in range(matrix.shape[0])]
        self.spectrum_map.show(
            matrix, freqs, [f"step {int(t)}" for t in steps], low=0.0, col_ticks=[str(int(t)) for t in steps]
        )

    # -- status ---------------------------------------------------------------------------
    def _timings(self) -> list[str]:
        return [f"fits {self.refitter.last_seconds:.2f} s"]

    @staticmethod
    def _headline(s: Shown) -> str:
        """The task's headline measure at the newest probe."""
        data = s.history.data
        if data is None or not s.history.probes:
            return ""
        for name, label in (("icl_acc", "icl acc"), ("test_acc", "test acc"), ("icl_loss", "icl loss")):
            if name in data:
                return f", {label} {float(data[name].values[-1]):.2f}"
        return ""

    # -- stored runs ----------------------------------------------------------------------
    def _read_stored(self, paths: list[Path]) -> tuple[list, list[EmergenceConfig]]:
        chunks = [open_chunk(p) for p in paths]
        configs = [EmergenceConfig.from_dict(json.loads(c.attrs["config"])) for c in chunks]
        if len(configs) > 1 and configs[0].task != configs[1].task:
            raise StoreError(f"run A is a {configs[0].task} run, {paths[1].name} a {configs[1].task} run")
        return chunks, configs

    def _show_stored(self, paths: list[Path], chunks: list, configs: list[EmergenceConfig]) -> None:
        shown = []
        for i, (label, chunk, cfg, p) in enumerate(zip("AB", chunks, configs, paths, strict=False)):
            other = configs[1 - i] if len(configs) > 1 else None
            shown.append(
                Shown(
                    label, cfg, path=Path(p), status=str(chunk.attrs.get("run_status", "")), what=_describe(cfg, other)
                )
            )
        self._sync_controls(configs[0])
        self._setup(shown)
        for i, chunk in enumerate(chunks):
            self._add(i, chunk, replace=True)
        self._new_probes()
        if self._map_due:
            self._draw_map()
        self.features.set_sources([self._feature_source(i, s) for i, s in enumerate(shown)])
        self._refit()
        self._ensure_callback()  # the fits follow

    def _sync_controls(self, cfg: EmergenceConfig) -> None:
        """The settings show the opened run, ready to run again."""
        with self._quietly():
            self.param.update(task=cfg.task, **{n: getattr(cfg, n) for n in self._setting_names()})
        self._to_sliders()
        self._task_layout()
        self._check()

    # -- layout -------------------------------------------------------------------------------
    def __panel__(self):
        w = self.inputs
        controls = pn.Column(
            "### Task and model",
            self.task_select,
            self.task_note,
            pn.Row(w["layers"], w["heads"], w["width"]),
            pn.Row(w["length"], w["vocab"], w["repeat"]),
            pn.Row(w["pairs"]),
            w["burstiness"],
            w["classes"],
            pn.Row(w["modulus"], w["weight_decay"]),
            w["train_fraction"],
            pn.Row(w["steps"], w["seed"]),
            pn.Row(w["clamp"], w["clamp_mode"]),
            pn.Row(w["clamp_start"], w["clamp_end"]),
            self.compare_select,
            *self._run_controls([w["lr"], w["probe_every"]], self.stop_btn),
            width=340,
        )
        return self._tabs(controls)

    def _boxes(self) -> None:
        """The groups of views each task shows or hides."""
        self.layer_box = pn.Row(self.ratio, self.sparsity, sizing_mode="stretch_width")
        self.abrupt_box = pn.Row(self.abrupt, self.fit_table, sizing_mode="stretch_width")
        self.heads_box = pn.Row(self.heads_a, self.heads_b, sizing_mode="stretch_width")
        self.grok_box = pn.Column(
            self.probe_slider,
            pn.Row(self.spectrum, self.spectrum_map),
            self.grok_loss,
            sizing_mode="stretch_width",
        )
        self.views = pn.Column(
            self.status,
            self.layer_box,
            self.abrupt_box,
            self.heads_box,
            self.grok_box,
            self.loss,
            sizing_mode="stretch_width",
        )

    def _tabs(self, controls) -> pn.Tabs:
        training = pn.Row(controls, self.views)
        return pn.Tabs(("Training", training), ("Features", self.features), dynamic=False, sizing_mode="stretch_width")
