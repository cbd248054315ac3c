"""The feature-visualisation tab of the emergence dashboard: what drives one MLP neuron, or grokking's
Fourier features.

For a token transformer with an MLP (tasks ``massive`` and ``sparsity``), pick a layer and a neuron:

- *Top-activating* shows the neuron's largest activations over the run's probe batch as text, each
  token shaded by the activation there and the example's own token outlined
  (:func:`engine.emergence.features.top_activating`), with the layer's most active neurons listed;
- *Multifaceted* clusters the neuron's top examples and optimises one input per cluster (Nguyen,
  Yosinski & Clune 2016; :func:`engine.emergence.features.multifaceted`): per facet, its size, the
  optimised input read as its nearest real tokens (cosine similarity on hover), the activation it
  reaches against the best real one, and a few member examples.

Both run on a private copy of the model loaded with the newest kept weights of the live run
(:meth:`explorer.attention_run.TrainingRun.latest_weights`), in a background thread; the training
thread never waits for them. For ``grokking`` the features are the probe's own variables: hidden
neurons per dominant Fourier frequency of their input weights, their purity, and the purest neurons,
at the newest probe (stored runs too).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import panel as pn
import torch

from explorer.background import Outcomes
from explorer.emergence_data import example_html, frequency_counts, purest_neurons, token_text
from explorer.emergence_views import FrequencyView
from explorer.session import held, locked

__all__ = ["FeatureSource", "FeatureTab", "top_html", "facets_html"]

EXAMPLES = 8  # top-activating examples shown
CONTEXT = 10  # tokens shown before each example's own
FACETS = 3
MOST_ACTIVE = 10  # neurons listed as the layer's most active


@dataclass
class FeatureSource:
    """What the tab needs of one run: its task, model config, newest weights, probe batch and history."""

    label: str  # "A" or "B"
    task: str
    model_cfg: Any | None  # TransformerConfig of a token transformer; None without a live model
    weights: Callable[[], tuple[int, dict] | None]  # (step, state dict) of the newest kept weights
    tokens: np.ndarray | None  # (sample, position) probe inputs
    names: Any  # (token,) token names
    seed: int
    data: Callable[[], Any]  # the run's history so far (chunk), for grokking's probe variables

    @property
    def has_neurons(self) -> bool:
        cfg = self.model_cfg
        return cfg is not None and cfg.mlp_ratio > 0 and not cfg.input_dim and self.tokens is not None


def top_html(ex, names, neuron_index: int) -> str:
    """The examples of one neuron of a :class:`~engine.emergence.features.TopExamples` as HTML rows."""
    values = ex.value[neuron_index]  # (rank,)
    high = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    rows = []
    for r in range(values.shape[0]):
        text = example_html(ex.window[neuron_index, r], ex.window_value[neuron_index, r], names, high)
        where = f"sequence {int(ex.sample[neuron_index, r])}, position {int(ex.position[neuron_index, r])}"
        rows.append(
            f'<div class="example" title="{where}"><span style="display:inline-block;width:60px;color:#555">'
            f"{values[r]:.3f}</span>{text}</div>"
        )
    return "".join(rows)


def facets_html(facets, names, seconds: float) -> str:
    """Per facet: size, the optimised input as its nearest tokens, the activation reached, member examples."""
    parts = [f"<p><b>{len(facets)} facets</b> · computed in {seconds:.1f} s on the newest weights</p>"]
    for f in facets:
        v = f.visualisation
        cells = []
        for pos in range(v.nearest_tokens.shape[0]):
            column = "<br>".join(
                f'<span title="cosine {v.nearest_cosine[pos, j]:.2f}" style="opacity:{1.0 if j == 0 else 0.55}">'
                f"{html.escape(token_text(names, int(v.nearest_tokens[pos, j])))}</span>"
                for j in range(v.nearest_tokens.shape[1])
            )
            cells.append(f'<td style="font-family:monospace;padding:0 4px;vertical-align:top">{column}</td>')
        high = float(np.nanmax(f.value)) if len(f.value) else 1.0
        members = "".join(
            f'<div class="example">{example_html(f.window[m], np.full(f.window.shape[1], np.nan), names, high)}'
            f' <span style="color:#555">{f.value[m]:.3f}</span></div>'
            for m in range(min(3, f.size))
        )
        real = f"{v.real_activation:.3f}" if np.isfinite(v.real_activation) else "–"
        parts.append(
            f'<div class="facet" style="margin:6px 0;padding:4px;border-left:3px solid #e6550d">'
            f"<b>facet {f.index + 1}</b> · {f.size} examples · optimised input reaches "
            f"<b>{v.activation:.3f}</b> (its nearest tokens {v.decoded_activation:.3f}; best real example {real})"
            '<div style="color:#555;font-size:9pt">optimised input read as its nearest tokens (1st to 3rd; '
            "cosine on hover):</div>"
            f"<table><tr>{''.join(cells)}</tr></table>"
            f'<div style="color:#555;font-size:9pt">members:</div>{members}</div>'
        )
    return "".join(parts)


class FeatureTab(pn.viewable.Viewer):
    """Feature visualisation of the runs on screen (one per browser session)."""

    def __init__(self, *, period_ms: int = 300, **params):
        super().__init__(**params)
        self.period_ms = period_ms
        self.sources: list[FeatureSource] = []
        self._results = Outcomes()
        self._busy = False
        self._callback = None
        self._models: dict[str, tuple[int, Any]] = {}  # label -> (loaded step, private model)
        self.run_select = pn.widgets.Select(name="run", options={"A": 0}, value=0, width=70, visible=False)
        self.layer_select = pn.widgets.Select(name="layer", options={"L0": 0}, width=80, css_classes=["feature-layer"])
        self.neuron_input = pn.widgets.IntInput(
            name="neuron", value=0, start=0, width=100, css_classes=["neuron-input"]
        )
        self.top_btn = pn.widgets.Button(name="Top-activating", button_type="primary", width=130)
        self.facet_btn = pn.widgets.Button(name="Multifaceted", button_type="primary", width=130)
        self.top_btn.on_click(lambda e: locked(self.top))
        self.facet_btn.on_click(lambda e: locked(self.multifaceted))
        self.status = pn.pane.HTML("", css_classes=["feature-status"], sizing_mode="stretch_width", min_height=22)
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["feature-error"])
        self.examples = pn.pane.HTML("", css_classes=["feature-examples"], sizing_mode="stretch_width")
        self.facets = pn.pane.HTML("", css_classes=["feature-facets"], sizing_mode="stretch_width")
        self.frequencies = FrequencyView("neuron-freq")
        self.purest = pn.pane.HTML("", css_classes=["purest-neurons"], width=320)
        self.neuron_controls = pn.Column(
            pn.Row(self.run_select, self.layer_select, self.neuron_input, self.top_btn, self.facet_btn),
            self.examples,
            self.facets,
            sizing_mode="stretch_width",
        )
        self.fourier = pn.Row(self.frequencies, self.purest, visible=False)
        self.run_select.param.watch(lambda e: (self._layers(), self.refresh()), "value")
        self.set_sources([])

    # -- sources --------------------------------------------------------------------------
    def set_sources(self, sources: list[FeatureSource]) -> None:
        """The runs on screen (a new run or a stored one)."""
        self.sources = sources
        self._models.clear()
        self.examples.object = self.facets.object = self.purest.object = ""
        self.frequencies.clear()
        self._show_error("")
        self.run_select.options = {s.label: i for i, s in enumerate(sources)} or {"A": 0}
        self.run_select.value = 0
        self.run_select.visible = len(sources) > 1
        grokking = bool(sources) and sources[0].task == "grokking"
        self.fourier.visible = grokking
        self.neuron_controls.visible = not grokking
        self._layers()
        if not sources:
            self.status.object = "start a run (massive or sparsity for MLP neurons, grokking for Fourier features)"
        elif grokking:
            self.status.object = "Fourier features of the hidden neurons at the newest probe"
            self.refresh()
        else:
            self.status.object = self._availability(sources[0]) or "pick a layer and a neuron"

    def _source(self) -> FeatureSource | None:
        i = self.run_select.value or 0
        return self.sources[i] if i < len(self.sources) else None

    def _layers(self) -> None:
        s = self._source()
        if s is None or s.model_cfg is None or not s.has_neurons:
            self.layer_select.options = {"L0": 0}
            self.neuron_input.end = None
            return
        self.layer_select.options = {f"L{layer}": layer for layer in range(s.model_cfg.layers)}
        self.neuron_input.end = s.model_cfg.mlp_ratio * s.model_cfg.width - 1

    @staticmethod
    def _availability(s: FeatureSource) -> str:
        """Why this run's neurons cannot be visualised ("" when they can)."""
        if s.task == "grokking":
            return ""
        if s.model_cfg is None:
            return (
                "a stored run keeps its curves, not its weights: train a run here to visualise its neurons "
                "(grokking's Fourier features are shown for stored runs too)"
            )
        if s.model_cfg.input_dim:
            return f"the {s.task} model reads real vectors, not tokens: its neurons have no text to show"
        if s.model_cfg.mlp_ratio == 0:
            return f"the {s.task} model is attention-only: it has no MLP neurons (train massive or sparsity)"
        return ""

    def _show_error(self, message: str) -> None:
        self.error.object = message
        self.error.visible = bool(message)

    # -- grokking ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw grokking's Fourier features at the newest probe (cheap; called at each new probe)."""
        s = self._source()
        if s is None or s.task != "grokking":
            return
        data = s.data()
        if data is None or "neuron_freq" not in data or not len(data["probe"].values):
            return
        freq = np.asarray(data["neuron_freq"].values)[-1]  # (neuron,)
        purity = np.asarray(data["neuron_purity"].values)[-1]
        n_freq = len(data["frequency"].values) if "frequency" in data else int(freq.max()) + 1
        counts, mean = frequency_counts(freq, purity, n_freq)
        step = int(data["probe"].values[-1])
        self.frequencies.show(counts, mean, f"Run {s.label}: neurons per dominant frequency · step {step}")
        rows = "".join(f"<tr><td>{n}</td><td>{f}</td><td>{p:.3f}</td></tr>" for n, f, p in purest_neurons(freq, purity))
        concentration = ""
        if "fourier_concentration" in data:
            concentration = f"<p>Fourier concentration {float(data['fourier_concentration'].values[-1]):.3f}</p>"
        self.purest.object = (
            f"<b>Purest neurons at step {step}</b>{concentration}"
            '<table style="font-size:9.5pt"><tr><th>neuron</th><th>frequency</th><th>purity</th></tr>'
            f"{rows}</table>"
        )

    # -- neurons of a token transformer --------------------------------------------------------
    def _request(self) -> tuple[FeatureSource, int, int] | None:
        s = self._source()
        if s is None:
            self._show_error("start a run first")
            return None
        problem = self._availability(s)
        if problem:
            self._show_error(problem)
            return None
        if self._busy:
            return None
        layer, neuron = self.layer_select.value, self.neuron_input.value
        if neuron is None:
            self._show_error("neuron is empty: type a number")
            return None
        self._show_error("")
        return s, int(layer or 0), int(neuron)

    def top(self) -> None:
        """The chosen neuron's top-activating examples (and the layer's most active neurons), in a thread."""
        request = self._request()
        if request is not None:
            self._launch("top", *request)

    def multifaceted(self) -> None:
        """The chosen neuron's facets, in a thread (seconds)."""
        request = self._request()
        if request is not None:
            self._launch("facets", *request)

    def _launch(self, kind: str, s: FeatureSource, layer: int, neuron: int) -> None:
        self._busy = True
        self._started = time.perf_counter()
        self.top_btn.disabled = self.facet_btn.disabled = True
        what = "top-activating examples" if kind == "top" else "facets (clustering and optimising inputs)"
        self.status.object = f"computing the {what} of L{layer} neuron {neuron} …"
        self._results.launch(lambda: self._work(kind, s, layer, neuron), name="dynascope-features")
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.tick, period=self.period_ms)

    def _model(self, s: FeatureSource):
        """A private model at the newest kept weights (never the training model)."""
        from engine.transformer.model import Transformer

        got = s.weights()
        if got is None:
            raise ValueError("no weights kept yet: wait for the first probe")
        step, weights = got
        loaded = self._models.get(s.label)
        if loaded is None or loaded[0] != step:
            model = loaded[1] if loaded is not None else Transformer(s.model_cfg, seed=s.seed)
            model.load_state_dict(weights)
            model.eval()
            loaded = self._models[s.label] = (step, model)
        return loaded

    def _work(self, kind: str, s: FeatureSource, layer: int, neuron: int) -> tuple[str, tuple]:
        """The examples (``kind`` "top") or the facets of one neuron (in the background thread; a silent
        neuron or too few examples raise ``ValueError``)."""
        from engine.emergence.features import multifaceted, top_activating

        if torch.get_num_threads() != 1:  # one intra-op thread: two would spin against training
            torch.set_num_threads(1)
        t0 = time.perf_counter()
        step, model = self._model(s)
        if kind == "top":
            ex = top_activating(model, s.tokens, layer, k=EXAMPLES, context=CONTEXT)
            return "top", (s, layer, neuron, step, ex, time.perf_counter() - t0)
        facets = multifaceted(model, s.tokens, layer, neuron, facets=FACETS, context=CONTEXT, seed=s.seed)
        return "facets", (s, layer, neuron, step, facets, time.perf_counter() - t0)

    def tick(self) -> None:
        kind, payload = self._results.take()
        if kind:
            with held(pn.state.curdoc):
                self._busy = False
                self.top_btn.disabled = self.facet_btn.disabled = False
                if kind == "error":
                    self._show_error(payload)
                    self.status.object = "failed"
                elif kind == "top":
                    self._draw_top(*payload)
                else:
                    self._draw_facets(*payload)
        if not self._busy and self._callback is not None:
            self._callback.stop()
            self._callback = None

    def _draw_top(self, s: FeatureSource, layer: int, neuron: int, step: int, ex, seconds: float) -> None:
        best = np.nanmax(ex.value, axis=1)  # (neuron,)
        order = np.argsort(-best, kind="stable")[:MOST_ACTIVE]
        active = ", ".join(f"{int(ex.neuron[n])} ({best[n]:.2f})" for n in order)
        index = int(np.flatnonzero(ex.neuron == neuron)[0])
        self.examples.object = (
            f"<p><b>Run {s.label} · L{layer} neuron {neuron}</b> · top {ex.value.shape[1]} of the probe batch at "
            f"step {step} · most active neurons of L{layer}: {active}</p>{top_html(ex, s.names, index)}"
        )
        self.status.object = f"top-activating examples of L{layer} neuron {neuron} at step {step} · {seconds:.2f} s"

    def _draw_facets(self, s: FeatureSource, layer: int, neuron: int, step: int, facets, seconds: float) -> None:
        title = f"<p><b>Run {s.label} · L{layer} neuron {neuron} · step {step}</b></p>"
        self.facets.object = title + facets_html(facets, s.names, seconds)
        self.status.object = f"{len(facets)} facets of L{layer} neuron {neuron} at step {step} · {seconds:.1f} s"

    def shutdown(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def __panel__(self):
        return pn.Column(
            "### Feature visualisation",
            self.status,
            self.error,
            self.neuron_controls,
            self.fourier,
            sizing_mode="stretch_width",
        )
