"""Views of emergence runs: curves with their fits and onset markers, the embedding spectrum of grokking,
neurons per Fourier frequency, and the table of fits.

:class:`FitCurveView` is the attention dashboard's :class:`~explorer.attention_views.CurveView` (new
rows streamed into named sources, server-set ranges) with, per run, fitted curves drawn dashed from
sources named ``{name}-fit-{run}`` that are replaced at every refit, and onset markers from a source
named ``{name}-onset-{run}``: a vertical line at each fitted onset (10 % of the way) and a faint band
to the 90 % point. Every range is a server-set ``Range1d``.
"""

from __future__ import annotations

import html

import numpy as np
from bokeh.models import ColumnDataSource, HoverTool, LegendItem

from explorer.attention_views import RUN_COLORS, CurveView, FigureView, Line, fixed_figure

__all__ = ["FitCurveView", "SpectrumView", "FrequencyView", "fit_table_html", "RUN_COLORS", "Line"]

ONSET_COLORS = ("#08306b", "#67000d")  # run A, run B


def _empty_onsets() -> dict:
    return {"step": [], "end": [], "name": [], "label": [], "abrupt": [], "color": []}


class FitCurveView(CurveView):
    """Curves of one or two runs with their fitted curves (dashed) and onset markers."""

    def __init__(self, name: str, title: str, y_label: str, *, onsets: bool = False, **params):
        super().__init__(name, title, y_label, **params)
        self.fit_sources: dict[int, ColumnDataSource] = {}
        self.onset_sources = (
            [ColumnDataSource(_empty_onsets(), name=f"{name}-onset-{i}") for i in range(2)] if onsets else []
        )
        self._onset_renderers = []
        for source in self.onset_sources:
            band = self.fig.vstrip(
                x0="step", x1="end", source=source, fill_color="color", fill_alpha=0.06, line_alpha=0
            )
            mark = self.fig.vspan(x="step", source=source, line_color="color", line_width=2, line_dash="dashdot")
            self._onset_renderers.append((band, mark))
        self._fit_lines: list[list[Line]] = []
        self._fit_renderers: list[list] = []

    def configure(self, runs: list[list[Line]], fits: list[list[Line]] | None = None) -> None:
        """Draw the runs' lines (as :meth:`CurveView.configure`) and, per run, ``fits[i]``: fitted
        curves, each ``Line.column`` a column of the run's fit source. Fits and onsets start empty."""
        super().configure(runs)
        fits = fits if fits is not None else [[] for _ in runs]
        keep: list[list] = []
        for i, lines in enumerate(fits):
            if i < len(self._fit_lines) and self._fit_lines[i] == lines:
                keep.append(self._fit_renderers[i])
                self.fit_sources[i].data = {k: np.zeros(0) for k in self.fit_sources[i].data}
                continue
            cols = {"step": np.zeros(0)} | {line.column: np.zeros(0) for line in lines}
            self.fit_sources[i] = ColumnDataSource(cols, name=f"{self.key}-fit-{i}")
            keep.append([self._draw(line, self.fit_sources[i]) for line in lines])
        self._drop(self._fit_renderers, keep)
        self.fit_sources = {i: src for i, src in self.fit_sources.items() if i < len(fits)}
        self._fit_lines, self._fit_renderers = [list(lines) for lines in fits], keep
        items = list(self.legend.items)
        for i, renderers in enumerate(keep):
            if renderers:
                items.append(LegendItem(label=f"{'AB'[i]} · fits (dashed)", renderers=renderers))
        for i, (source, renderers) in enumerate(zip(self.onset_sources, self._onset_renderers, strict=True)):
            source.data = _empty_onsets()
            if i < len(runs):
                items.append(LegendItem(label=f"{'AB'[i]} · onset (10 % of the step)", renderers=[renderers[1]]))
        self.legend.items = items

    def show_fit(self, index: int, rows: dict[str, np.ndarray]) -> None:
        """Replace run ``index``'s fitted curves (``step`` and one column per fit line)."""
        source = self.fit_sources.get(index)
        if source is None:
            return
        source.data = {k: np.asarray(rows.get(k, np.full(len(rows["step"]), np.nan))) for k in source.data}

    def show_onsets(self, index: int, rows: dict[str, list], colors: dict[str, str] | None = None) -> None:
        """Replace run ``index``'s onset markers (rows of :func:`explorer.emergence_data.onset_rows`),
        each in the colour of its curve (``colors``: name -> colour; default the run's marker colour)."""
        if index >= len(self.onset_sources):
            return
        source = self.onset_sources[index]
        colors = colors or {}
        rows = {**rows, "color": [colors.get(name, ONSET_COLORS[index % 2]) for name in rows["name"]]}
        if {k: list(v) for k, v in source.data.items()} != {k: list(v) for k, v in rows.items()}:
            source.data = {k: list(v) for k, v in rows.items()}


class SpectrumView(FigureView):
    """Fourier power of the embeddings per frequency at one probe; run B's bars beside run A's."""

    def __init__(self, name: str = "spectrum", *, width: int = 540, **params):
        super().__init__(**params)
        self.sources = [ColumnDataSource({"frequency": [], "x": [], "power": []}, name=f"{name}-{i}") for i in range(2)]
        self.fig = fixed_figure(
            "Embedding Fourier spectrum", "frequency k (of the modulus)", "share of embedding power",
            width=width, height=300, x_range=(-0.5, 10.5), y_range=(0, 1),
        )  # fmt: skip
        for i, source in enumerate(self.sources):
            self.fig.vbar(x="x", top="power", width=0.4, source=source, color=RUN_COLORS[i][0], legend_label="AB"[i])
        self.fig.add_tools(HoverTool(tooltips=[("frequency", "@frequency"), ("power", "@power{0.000}")]))
        self.fig.legend.location = "top_right"

    def show(self, index: int, power: np.ndarray, title: str, runs: int = 1) -> None:
        p = np.asarray(power, dtype=float)
        f = np.arange(p.size)
        shift = 0.0 if runs == 1 else (-0.2 if index == 0 else 0.2)
        self.sources[index].data = {"frequency": f, "x": f + shift, "power": p}
        self.fig.x_range.start, self.fig.x_range.end = -0.6, p.size - 0.4
        tops = [np.nanmax(np.asarray(s.data["power"], float)) for s in self.sources if len(s.data["power"])]
        high = max([t for t in tops if np.isfinite(t)], default=1.0)
        self.fig.y_range.start, self.fig.y_range.end = 0.0, max(high * 1.1, 1e-6)
        self.fig.title.text = title

    def clear(self) -> None:
        for source in self.sources:
            source.data = {"frequency": [], "x": [], "power": []}
        self.fig.title.text = "Embedding Fourier spectrum"


class FrequencyView(FigureView):
    """Hidden neurons per dominant input frequency, with their mean purity on hover (grokking)."""

    def __init__(self, name: str = "neuron-freq", **params):
        super().__init__(**params)
        self.source = ColumnDataSource({"frequency": [], "count": [], "purity": []}, name=name)
        self.fig = fixed_figure(
            "Neurons per dominant frequency", "dominant frequency k", "neurons",
            width=560, height=300, x_range=(-0.5, 10.5), y_range=(0, 1),
        )  # fmt: skip
        self.fig.vbar(x="frequency", top="count", width=0.8, source=self.source, color="#7b2d26")
        self.fig.add_tools(
            HoverTool(tooltips=[("frequency", "@frequency"), ("neurons", "@count"), ("mean purity", "@purity{0.00}")])
        )

    def show(self, counts: np.ndarray, purity: np.ndarray, title: str) -> None:
        c = np.asarray(counts, dtype=float)
        self.source.data = {"frequency": np.arange(c.size), "count": c, "purity": np.asarray(purity, dtype=float)}
        self.fig.x_range.start, self.fig.x_range.end = -0.6, c.size - 0.4
        self.fig.y_range.start, self.fig.y_range.end = 0.0, max(1.0, float(c.max()) * 1.1 if c.size else 1.0)
        self.fig.title.text = title

    def clear(self) -> None:
        self.source.data = {"frequency": [], "count": [], "purity": []}


def _number(x: float, fmt: str) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return "before 0" if x < 0 else format(x, fmt)


def fit_table_html(rows: list[dict]) -> str:
    """The rows of :func:`explorer.emergence_data.fit_summary` as an HTML table."""
    if not rows:
        return "<i>no fits yet: they appear once a run has a few probes</i>"
    head = "<tr><th>run</th><th>curve</th><th>fit</th><th>R²</th><th>peak / onset step</th></tr>"
    body = []
    for r in rows:
        note = f' title="{html.escape(r["note"])}"' if r.get("note") else ""
        body.append(
            f"<tr{note}><td>{html.escape(r['run'])}</td><td>{html.escape(r['curve'])}</td>"
            f"<td>{html.escape(r['what'])}</td><td>{_number(r['r2'], '.3f')}</td>"
            f"<td>{_number(r['at'], ',.0f')}</td></tr>"
        )
    style = (
        "<style>table.fits{border-collapse:collapse;font-size:9.5pt} table.fits td,table.fits th"
        "{padding:1px 7px;border-bottom:1px solid #ddd;text-align:left}</style>"
    )
    return f'{style}<table class="fits">{head}{"".join(body)}</table>'
