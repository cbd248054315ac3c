"""Views of attention runs: a layer x head grid of attention maps, one enlarged map with per-token hover,
curves over training, and the pictures of a real model's probe.

Each view owns its Bokeh figure and ``ColumnDataSource``s (named, so a browser test can find them)
and is updated in place: images are replaced in their source, curves receive only new rows
(``source.stream``). Every range is a server-set ``Range1d`` (auto-ranging would send bounds back
from the browser after each update, see :mod:`explorer.spiking_views`). Attention images are drawn
with query 0 at the top and key 0 at the left, as attention matrices are written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import panel as pn
from bokeh.events import Tap
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJSHover,
    FixedTicker,
    HoverTool,
    Legend,
    LegendItem,
    LinearColorMapper,
    LogColorMapper,
    NumeralTickFormatter,
    PrintfTickFormatter,
    Range1d,
)
from bokeh.palettes import Blues256, Magma256
from bokeh.plotting import figure

__all__ = [
    "ATTENTION_PALETTE",
    "RUN_COLORS",
    "FigureView",
    "fixed_figure",
    "HeadGrid",
    "PatternView",
    "Line",
    "CurveView",
    "Heatmap",
    "ActivationView",
]

ATTENTION_PALETTE = tuple(reversed(Blues256))  # 0 white, 1 dark blue
GAP_COLOR = "#c8c8c8"
RUN_COLORS = (  # run A: cool colours, run B: warm ones; one per curve series
    (
        "#1f77b4", "#2ca02c", "#17becf", "#9467bd", "#393b79", "#637939", "#3182bd", "#31a354",
        "#6baed6", "#74c476", "#9e9ac8", "#0b5394", "#38761d", "#5b5ea6", "#1b9e77", "#08519c",
    ),
    (
        "#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#843c39", "#bd9e39", "#e6550d", "#ad494a",
        "#fd8d3c", "#d6616b", "#a55194", "#b8860b", "#cc4c02", "#990000", "#c51b7d", "#e7298a",
    ),
)  # fmt: skip

_LABEL_JS = """
const i = Math.floor(value);
const labels = meta.data.label;
return (i >= 0 && i < labels.length) ? String(labels[i]) : "";
"""

_GRID_JS = """
const t = meta.data.tile[0], g = meta.data.gap[0], labels = meta.data.label;
const s = t + g;
const h = Math.floor(special_vars.x / s), l = Math.floor(special_vars.y / s);
const k = Math.floor(special_vars.x - h * s), q = Math.floor(special_vars.y - l * s);
if (k < 0 || q < 0 || k >= t || q >= t) return "";
const name = (i) => (i < labels.length ? String(labels[i]) : String(i));
return "L" + l + " H" + h + " · query " + name(q) + " · key " + name(k);
"""


def _empty_image() -> dict:
    return {"image": [np.full((1, 1), np.nan, np.float32)], "x": [0.0], "y": [0.0], "dw": [1.0], "dh": [1.0]}


def _title(fig) -> None:
    fig.title.text_font_size = "11pt"


def fixed_figure(
    title: str,
    x_label: str,
    y_label: str,
    *,
    width: int,
    height: int,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    tools: str = "save",
    **options,
):
    """A figure of fixed size whose ranges the server sets (``Range1d``), its title in the views' size."""
    fig = figure(
        title=title,
        height=height,
        width=width,
        x_axis_label=x_label,
        y_axis_label=y_label,
        x_range=Range1d(*x_range),
        y_range=Range1d(*y_range),
        tools=tools,
        **options,
    )
    _title(fig)
    return fig


class FigureView(pn.viewable.Viewer):
    """A view drawn in one Bokeh figure of fixed size (``self.fig``)."""

    def __panel__(self):
        return pn.pane.Bokeh(self.fig, sizing_mode="fixed")


def _set(rng: Range1d, lo: float, hi: float, *, slack: float = 0.06) -> None:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = slack * (hi - lo)
    rng.start, rng.end = lo - pad, hi + pad


# -- attention maps -----------------------------------------------------------------------
class HeadGrid(FigureView):
    """Every head's attention map as a thumbnail in one image (rows: layers, columns: heads).

    :meth:`show` replaces the image in place; a click on a thumbnail calls ``on_pick(layer, head)``
    and the picked head is outlined.
    """

    def __init__(self, name: str = "grid", title: str = "Attention of every head", **params):
        super().__init__(**params)
        self.on_pick: Callable[[int, int], None] | None = None
        self.source = ColumnDataSource(_empty_image(), name=name)
        self.meta = ColumnDataSource({"label": [""], "tile": [1], "gap": [1]}, name=f"{name}-meta")
        self.outline = ColumnDataSource({"x": [], "y": [], "w": [], "h": []}, name=f"{name}-pick")
        self.mapper = LinearColorMapper(palette=ATTENTION_PALETTE, low=0.0, high=1.0, nan_color=GAP_COLOR)
        self.fig = figure(
            title=title,
            frame_width=320,
            frame_height=320,
            x_range=Range1d(0, 1),
            y_range=Range1d(1, 0),  # query 0 / layer 0 at the top
            tools="save",
            toolbar_location="right",
            x_axis_location="above",
        )
        _title(self.fig)
        image = self.fig.image(
            image="image", x="x", y="y", dw="dw", dh="dh", source=self.source, color_mapper=self.mapper
        )
        self.fig.rect("x", "y", "w", "h", source=self.outline, fill_alpha=0, line_color="#e6550d", line_width=2.5)
        hover = CustomJSHover(args={"meta": self.meta}, code=_GRID_JS)
        self.fig.add_tools(
            HoverTool(
                renderers=[image],
                tooltips=[("", "$x{grid}"), ("weight", "@image{0.000}")],
                formatters={"$x": hover},
            )
        )
        self.fig.grid.visible = False
        self.fig.on_event(Tap, self._on_tap)
        self.layers = self.heads = 0
        self.tile, self.gap = 1, 1
        self.picked: tuple[int, int] | None = None

    def layout(self, layers: int, heads: int, tile: int, gap: int = 1, labels: list[str] | None = None) -> None:
        """Shape the figure for ``layers x heads`` thumbnails of ``tile`` pixels; ``labels`` name the bins."""
        self.layers, self.heads, self.tile, self.gap = layers, heads, tile, gap
        s = tile + gap
        width, height = heads * s - gap, layers * s - gap
        px = max(16, min(160, 640 // max(layers, heads)))  # screen pixels per thumbnail
        self.fig.frame_width, self.fig.frame_height = max(120, heads * px), max(60, layers * px)
        self.fig.x_range.start, self.fig.x_range.end = 0, width
        self.fig.y_range.start, self.fig.y_range.end = height, 0
        every = max(1, -(-max(layers, heads) // 32))
        self.fig.xaxis.ticker = FixedTicker(ticks=[h * s + tile / 2 for h in range(0, heads, every)])
        self.fig.xaxis.major_label_overrides = {h * s + tile / 2: f"H{h}" for h in range(0, heads, every)}
        self.fig.yaxis.ticker = FixedTicker(ticks=[layer * s + tile / 2 for layer in range(0, layers, every)])
        self.fig.yaxis.major_label_overrides = {layer * s + tile / 2: f"L{layer}" for layer in range(0, layers, every)}
        names = list(labels or []) or [""]
        self.meta.data = {"label": names, "tile": [tile] * len(names), "gap": [gap] * len(names)}
        self._outline()

    def show(self, image: np.ndarray, title: str | None = None, high: float = 1.0) -> None:
        """Replace the mosaic (from :func:`explorer.attention_data.mosaic`)."""
        h, w = image.shape
        self.source.data = {"image": [image], "x": [0.0], "y": [0.0], "dw": [float(w)], "dh": [float(h)]}
        self.mapper.high = high
        if title is not None:
            self.fig.title.text = title

    def clear(self, title: str = "Attention of every head") -> None:
        self.source.data = _empty_image()
        self.fig.title.text = title
        self.outline.data = {"x": [], "y": [], "w": [], "h": []}

    def pick(self, layer: int, head: int) -> None:
        self.picked = (layer, head)
        self._outline()

    def _outline(self) -> None:
        data = {"x": [], "y": [], "w": [], "h": []}
        if self.picked is not None and self.layers:
            layer, head = self.picked
            s, t = self.tile + self.gap, self.tile
            data = {"x": [head * s + t / 2], "y": [layer * s + t / 2], "w": [t + 0.5], "h": [t + 0.5]}
        if {k: list(v) for k, v in self.outline.data.items()} != data:
            self.outline.data = data

    def _on_tap(self, event) -> None:
        if not self.layers or event.x is None or event.y is None:
            return
        s = self.tile + self.gap
        head, layer = int(event.x // s), int(event.y // s)
        if 0 <= layer < self.layers and 0 <= head < self.heads and self.on_pick is not None:
            self.on_pick(layer, head)


class PatternView(FigureView):
    """One head's attention map, enlarged, with the query token, key token and weight on hover."""

    def __init__(self, name: str = "pattern", **params):
        super().__init__(**params)
        self.source = ColumnDataSource(_empty_image(), name=name)
        self.labels = ColumnDataSource({"label": [""]}, name=f"{name}-labels")
        self.mapper = LinearColorMapper(palette=ATTENTION_PALETTE, low=0.0, high=1.0, nan_color=GAP_COLOR)
        self.fig = figure(
            title="Enlarged head",
            frame_width=460,
            frame_height=460,
            x_range=Range1d(0, 1),
            y_range=Range1d(1, 0),
            tools="pan,wheel_zoom,box_zoom,reset,save",
            toolbar_location="right",
            x_axis_location="above",
            x_axis_label="key",
            y_axis_label="query",
        )
        _title(self.fig)
        image = self.fig.image(
            image="image", x="x", y="y", dw="dw", dh="dh", source=self.source, color_mapper=self.mapper
        )
        self.fig.add_tools(
            HoverTool(
                renderers=[image],
                tooltips=[("query", "$y{query}"), ("key", "$x{key}"), ("weight", "@image{0.0000}")],
                formatters={
                    "$y": CustomJSHover(args={"meta": self.labels}, code=_LABEL_JS),
                    "$x": CustomJSHover(args={"meta": self.labels}, code=_LABEL_JS),
                },
            )
        )
        self.fig.add_layout(ColorBar(color_mapper=self.mapper, width=10, title="weight"), "right")
        self.fig.xaxis.major_label_orientation = np.pi / 2
        self.fig.grid.visible = False
        self._n = 0
        self._ticks: tuple | None = None

    def show(self, pattern: np.ndarray, labels: list[str], title: str, ticks: list[str] | None = None) -> None:
        """``pattern`` (q, k) with ``labels`` naming its bins (hover) and ``ticks`` short axis labels, one
        per bin (default: the bin index); every bin is ticked up to 48 bins, else about 16."""
        n_q, n_k = pattern.shape
        self.source.data = {
            "image": [np.asarray(pattern, np.float32)],
            "x": [0.0],
            "y": [0.0],
            "dw": [float(n_k)],
            "dh": [float(n_q)],
        }
        if list(self.labels.data["label"]) != list(labels):
            self.labels.data = {"label": list(labels)}
        self.fig.title.text = title
        n = max(n_q, n_k)
        if n != self._n:  # a new size: show it whole (otherwise keep the user's zoom)
            self._n = n
            self.fig.x_range.start, self.fig.x_range.end = 0, n_k
            self.fig.y_range.start, self.fig.y_range.end = n_q, 0
        ticks = list(ticks) if ticks is not None else [str(i) for i in range(n)]
        key = (n, tuple(ticks))
        if key == self._ticks:
            return
        self._ticks = key
        every = 1 if n <= 48 else -(-n // 16)  # every bin named up to 48, else about 16 ticks
        chosen = range(0, min(n, len(ticks)), every)
        positions = [i + 0.5 for i in chosen]
        overrides = {i + 0.5: ticks[i] for i in chosen}
        for axis in (self.fig.xaxis, self.fig.yaxis):
            axis.ticker = FixedTicker(ticks=positions)
            axis.major_label_overrides = overrides

    def set_high(self, high: float) -> None:
        self.mapper.high = high

    def clear(self) -> None:
        self.source.data = _empty_image()
        self.labels.data = {"label": [""]}
        self._n, self._ticks = 0, None
        self.fig.title.text = "Enlarged head"


# -- curves over training -------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One curve: ``column`` of the run's ``kind`` source (``"probe"`` or ``"step"``)."""

    column: str
    legend: str
    color: str
    dash: str = "solid"
    width: float = 1.8
    alpha: float = 1.0
    kind: str = "probe"


class CurveView(pn.viewable.Viewer):
    """Curves of one or two runs on shared axes; each run streams its new rows into its own sources.

    Sources are named ``{name}-{run}-{kind}`` (``run`` 0 or 1). Lines sharing a legend text share
    one legend entry (click it to hide them).
    """

    def __init__(
        self,
        name: str,
        title: str,
        y_label: str,
        *,
        y_range: tuple[float, float] = (0.0, 1.0),
        fit_y: bool = True,
        log: bool = False,
        height: int = 280,
        **params,
    ):
        super().__init__(**params)
        self.key = name
        self.fit_y, self.log = fit_y, log
        self.fig = figure(
            title=title,
            height=height,
            sizing_mode="stretch_width",
            x_axis_label="training step",
            y_axis_label=y_label,
            x_range=Range1d(0, 100),
            y_range=Range1d(*y_range),
            y_axis_type="log" if log else "linear",
            tools="pan,wheel_zoom,box_zoom,reset,save",
            toolbar_location="right",
        )
        _title(self.fig)
        self.legend = Legend(items=[], location="top_left", label_text_font_size="8pt", click_policy="hide")
        self.legend.spacing = 0
        self.fig.add_layout(self.legend, "right")
        self.fig.add_tools(HoverTool(tooltips=[("", "$name"), ("step", "$x{0}"), ("value", "$y{0.000}")]))
        self.sources: dict[tuple[int, str], ColumnDataSource] = {}
        self.fig.line(x=[], y=[], visible=False)  # a figure without renderers draws a warning
        self._runs: list[list[Line]] = []  # the lines of each run drawn
        self._run_renderers: list[list] = []
        self._lo, self._hi = np.inf, -np.inf
        self._y0 = y_range
        self._steps = 100  # planned training steps: the x axis grows up to them
        self.fig.xaxis.formatter = NumeralTickFormatter(format="0,0")

    def configure(self, runs: list[list[Line]]) -> None:
        """Draw ``runs[i]``'s lines from empty sources (the figure stays).

        A run whose lines are those it had keeps its renderers (its sources are emptied): a new
        run of the same shape sends no new models to the browser.
        """
        kept: list[list] = []
        for i, lines in enumerate(runs):
            if i < len(self._runs) and self._runs[i] == lines:
                kept.append(self._run_renderers[i])
                for kind in {line.kind for line in lines}:
                    source = self.sources[(i, kind)]
                    source.data = {k: np.zeros(0, np.asarray(v).dtype) for k, v in source.data.items()}
                continue
            for kind in sorted({line.kind for line in lines}):
                cols = {"step": np.zeros(0, np.int64)}
                cols.update({line.column: np.zeros(0) for line in lines if line.kind == kind})
                self.sources[(i, kind)] = ColumnDataSource(cols, name=f"{self.key}-{i}-{kind}")
            kept.append([self._draw(line, self.sources[(i, line.kind)]) for line in lines])
        self._drop(self._run_renderers, kept)
        self.sources = {key: src for key, src in self.sources.items() if key[0] < len(runs)}
        self._runs, self._run_renderers = [list(lines) for lines in runs], kept
        items: dict[str, list] = {}
        for lines, renderers in zip(runs, kept, strict=True):
            for line, r in zip(lines, renderers, strict=True):
                items.setdefault(line.legend, []).append(r)
        self.legend.items = [LegendItem(label=text, renderers=rs) for text, rs in items.items()]
        self._lo, self._hi = np.inf, -np.inf
        if self.fit_y:
            self.fig.y_range.start, self.fig.y_range.end = self._y0

    def _draw(self, line: Line, source: ColumnDataSource):
        """The renderer of ``line``, its values from ``source``."""
        return self.fig.line(
            "step",
            line.column,
            source=source,
            color=line.color,
            line_dash=line.dash,
            line_width=line.width,
            alpha=line.alpha,
            name=line.legend,
        )

    def _drop(self, drawn: list[list], kept: list[list]) -> None:
        """Take the renderers of ``drawn`` that are not ``kept`` off the figure."""
        now = {id(r) for rs in kept for r in rs}
        gone = {id(r) for rs in drawn for r in rs} - now
        if gone:
            self.fig.renderers = [r for r in self.fig.renderers if id(r) not in gone]

    def push(self, index: int, kind: str, rows: dict[str, np.ndarray], *, replace: bool = False) -> None:
        """Append rows to run ``index``'s ``kind`` source (``replace``: set them as the whole data)."""
        source = self.sources.get((index, kind))
        if source is None or not len(rows.get("step", ())):
            return
        cols = {k: np.asarray(rows[k]) for k in source.data if k in rows}
        if replace:
            source.data = cols
        else:
            source.stream(cols)
        last = int(np.max(cols["step"]))
        if last > self.fig.x_range.end:  # grow by half again, up to the planned steps
            self.fig.x_range.end = min(max(self._steps, 1), max(100, int(last * 1.5)))
        values = np.concatenate([np.asarray(v, float).ravel() for k, v in cols.items() if k != "step"] or [[]])
        values = values[np.isfinite(values) & ((values > 0) if self.log else True)]
        if values.size and self.fit_y:
            self._lo, self._hi = min(self._lo, values.min()), max(self._hi, values.max())
            lo, hi = self._y0
            if self.log:
                self.fig.y_range.start = min(lo, self._lo / 1.5)
                self.fig.y_range.end = max(hi, self._hi * 1.5)
            else:
                _set(self.fig.y_range, min(lo, self._lo), max(hi, self._hi), slack=0.04)

    def set_steps(self, planned: int, reached: int = 0) -> None:
        """x axis for a run of ``planned`` steps that has ``reached`` some: it starts at the steps
        reached (or a few hundred) and grows with the run, never beyond the planned steps."""
        self._steps = max(1, planned)
        self.fig.x_range.start, self.fig.x_range.end = 0, min(self._steps, max(reached, 300))

    def __panel__(self):
        return pn.pane.Bokeh(self.fig, sizing_mode="stretch_width")


# -- a real model's probe -------------------------------------------------------------------
class Heatmap(FigureView):
    """A (row, column) table of values as coloured cells, with named rows and columns on hover."""

    def __init__(
        self,
        name: str,
        title: str,
        x_label: str,
        y_label: str,
        *,
        log: bool = False,
        palette=Magma256,
        width: int = 420,
        height: int = 420,
        fmt: str = "0.000",
        **params,
    ):
        super().__init__(**params)
        self.source = ColumnDataSource({"x": [], "y": [], "value": [], "row": [], "col": []}, name=name)
        cls = LogColorMapper if log else LinearColorMapper
        self.mapper = cls(palette=tuple(reversed(palette)), low=1e-3 if log else 0.0, high=1.0, nan_color=GAP_COLOR)
        self.fig = figure(
            title=title,
            frame_width=width,
            frame_height=height,
            x_range=Range1d(-0.5, 0.5),
            y_range=Range1d(0.5, -0.5),
            x_axis_label=x_label,
            y_axis_label=y_label,
            tools="save,hover",
            tooltips=[("", "@row · @col"), ("value", f"@value{{{fmt}}}")],
            toolbar_location="right",
        )
        _title(self.fig)
        self.fig.rect(
            "x", "y", 1, 1, source=self.source, fill_color={"field": "value", "transform": self.mapper}, line_color=None
        )
        self.fig.add_layout(
            ColorBar(color_mapper=self.mapper, width=10, formatter=PrintfTickFormatter(format="%.3g")), "right"
        )
        self.fig.grid.visible = False

    def show(
        self,
        values: np.ndarray,
        row_names: list[str],
        col_names: list[str],
        *,
        low: float | None = None,
        high: float | None = None,
        ticks: int = 16,
        col_ticks: list[str] | None = None,
    ) -> None:
        """``values`` (row, col); colour limits default to the data's; ``col_ticks`` label the columns."""
        v = np.asarray(values, float)
        n_rows, n_cols = v.shape
        rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
        self.source.data = {
            "x": cols.ravel(),
            "y": rows.ravel(),
            "value": v.ravel(),
            "row": [row_names[i] for i in rows.ravel()],
            "col": [col_names[j] for j in cols.ravel()],
        }
        seen = v[np.isfinite(v)]
        if isinstance(self.mapper, LogColorMapper):
            seen = seen[seen > 0]
        if seen.size:
            self.mapper.low = float(seen.min()) if low is None else low
            self.mapper.high = float(max(seen.max(), self.mapper.low * 1.0001)) if high is None else high
        self.fig.x_range.start, self.fig.x_range.end = -0.5, n_cols - 0.5
        self.fig.y_range.start, self.fig.y_range.end = n_rows - 0.5, -0.5
        for axis, n, names in ((self.fig.xaxis, n_cols, col_ticks), (self.fig.yaxis, n_rows, None)):
            every = max(1, -(-n // ticks))
            chosen = list(range(0, n, every))
            axis.ticker = FixedTicker(ticks=chosen)
            axis.major_label_overrides = {i: names[i] for i in chosen} if names is not None else {}

    def clear(self) -> None:
        self.source.data = {"x": [], "y": [], "value": [], "row": [], "col": []}


class ActivationView(FigureView):
    """The largest activation of each layer's output over the median one (log axis), with where it sits."""

    def __init__(self, name: str = "activations", **params):
        super().__init__(**params)
        self.source = ColumnDataSource({"layer": [], "ratio": [], "where": []}, name=name)
        self.fig = fixed_figure(
            "Largest / median activation per layer", "layer (output of the block)", "max |h| / median |h|",
            width=620, height=380, x_range=(-0.5, 0.5), y_range=(1, 10), y_axis_type="log", tools="save,hover",
            tooltips=[("layer", "@layer"), ("ratio", "@ratio{0.0}"), ("largest at", "@where")],
        )  # fmt: skip
        self.fig.line("layer", "ratio", source=self.source, color="#7b2d26", line_width=1.5)
        self.fig.scatter("layer", "ratio", source=self.source, color="#7b2d26", size=8)

    def show(self, ratio: np.ndarray, where: list[str], title: str) -> None:
        r = np.asarray(ratio, float)
        self.source.data = {"layer": np.arange(r.size), "ratio": r, "where": list(where)}
        seen = r[np.isfinite(r) & (r > 0)]
        if seen.size:
            self.fig.y_range.start, self.fig.y_range.end = max(seen.min() / 2, 1e-3), seen.max() * 2
        self.fig.x_range.start, self.fig.x_range.end = -0.5, r.size - 0.5
        self.fig.title.text = title

    def clear(self) -> None:
        self.source.data = {"layer": [], "ratio": [], "where": []}
