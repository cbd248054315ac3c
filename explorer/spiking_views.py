"""Views of spiking runs: raster, population rates, membrane potentials, histograms, phase diagram.

Each view owns a Bokeh figure and its ``ColumnDataSource``. Live updates stream only the new
rows (``source.stream(rows, rollover)``), which keeps a push cheap; ``load`` shows a whole
stored run. Views accept an ``xr.Dataset`` or an :class:`engine.chunk.Chunk`.

Every range is set by the server (``Range1d``): auto-ranging ``DataRange1d`` would send new
bounds back from the browser after each update, and under a live stream that traffic delayed
the browser's own widget changes by seconds.
"""

from __future__ import annotations

import time

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource, HoverTool, Label, Range1d
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from engine.spiking.analysis import neuron_cv_isi, neuron_rates
from engine.spiking.phase import load_phase_grid
from explorer.style import COLORS

__all__ = ["RasterView", "RateView", "VoltageView", "HistogramView", "PhaseDiagram", "COLORS"]

STATE_COLORS = {"SR": "#8e44ad", "AI": "#27ae60", "SI fast": "#e67e22", "SI slow": "#f1c40f", "quiescent": "#bdc3c7"}


def _fit(rng: Range1d, lo: float, hi: float, slack: float = 0.1) -> None:
    """Set a range to [lo, hi] plus slack, only when the data left the current range or fill it poorly."""
    if not np.isfinite(lo) or not np.isfinite(hi):
        return
    if hi <= lo:
        hi = lo + 1.0
    pad = slack * (hi - lo)
    want = (lo - pad, hi + pad)
    span = rng.end - rng.start
    if lo < rng.start or hi > rng.end or (hi - lo) < 0.5 * span:
        rng.start, rng.end = want


def _fig(title: str, y_label: str, height: int, **kw) -> figure:
    fig = figure(
        title=title,
        height=height,
        sizing_mode="stretch_width",
        x_axis_label="time (ms)",
        y_axis_label=y_label,
        tools="pan,xwheel_zoom,box_zoom,reset,save",
        toolbar_location="right",
        **kw,
    )
    fig.title.text_font_size = "11pt"
    return fig


class _TimeView(pn.viewable.Viewer):
    """A time-series view whose x range follows the newest data."""

    window_ms = param.Number(default=1000.0, bounds=(10.0, 1e7), doc="time shown (ms)")

    def _follow(self, t_end: float) -> None:
        start = max(0.0, t_end - self.window_ms)
        self.fig.x_range.start, self.fig.x_range.end = start, max(t_end, start + 1.0)

    def __panel__(self):
        return pn.pane.Bokeh(self.fig, sizing_mode="stretch_width")


class RasterView(_TimeView):
    """Spikes as points (time, neuron), one source per population.

    Shows the neurons of ``neuron_range``; when the range holds more than ``max_rows`` neurons,
    every k-th one, so a whole network fits on screen with both populations. Only the points
    inside the time window are kept in the browser.
    """

    neuron_range = param.Range(default=(0, 1000), bounds=(0, None), doc="neurons shown [first, last)")
    max_rows = param.Integer(default=400, bounds=(10, 100_000), doc="most neurons drawn (evenly spaced)")
    max_points = param.Integer(default=100_000, bounds=(1000, 2_000_000), doc="points kept on screen")
    draw_budget = param.Number(
        default=100_000.0,
        bounds=(1e3, None),
        doc="canvas points redrawn per second: a fuller raster is redrawn less often",
    )

    def __init__(self, **params):
        super().__init__(**params)
        self.sources = {pop: ColumnDataSource(self._empty()) for pop in COLORS}
        self.fig = _fig(
            "Spike raster",
            "neuron",
            340,
            output_backend="canvas",
            x_range=Range1d(0, self.window_ms),
            y_range=Range1d(*self.neuron_range),
        )
        for pop, color in COLORS.items():
            self.fig.scatter(
                "time",
                "neuron",
                source=self.sources[pop],
                size=2.5,
                marker="square",
                line_color=None,
                color=color,
                legend_label=pop,
            )
        self.fig.legend.location = "top_left"
        self.fig.legend.orientation = "horizontal"
        self.points = 0
        self._pending: list[dict[str, dict]] = []  # rows not yet sent to the browser
        self._drawn_at = 0.0

    @staticmethod
    def _empty() -> dict:
        return {"time": np.zeros(0), "neuron": np.zeros(0, np.int32)}

    @property
    def stride(self) -> int:
        lo, hi = self.neuron_range
        return max(1, -(-(hi - lo) // self.max_rows))

    def _rows(self, data, labels: np.ndarray) -> dict[str, dict]:
        t = np.asarray(data["spike_time"].values)
        i = np.asarray(data["spike_neuron"].values)
        lo, hi = self.neuron_range
        keep = (i >= lo) & (i < hi) & ((i - lo) % self.stride == 0)
        t, i = t[keep], i[keep]
        pops = labels[i]
        return {pop: {"time": t[pops == pop], "neuron": i[pops == pop].astype(np.int32)} for pop in COLORS}

    def reset(self) -> None:
        for source in self.sources.values():
            source.data = self._empty()
        self.points = 0
        self._pending.clear()

    def push(self, chunk, labels: np.ndarray, t_end: float) -> None:
        """Stream the new spikes; keep only points inside the time window (and max_points).

        With the canvas renderer a raster of P points is redrawn at most every
        P / draw_budget seconds (up to 1 s): a browser drawing 100k points in software then stays
        free to answer its controls. New spikes wait on the server meanwhile.
        """
        self._pending.append(self._rows(chunk, labels))
        now = time.perf_counter()
        interval = 0.0 if self.fig.output_backend == "webgl" else min(1.0, self.points / self.draw_budget)
        if now - self._drawn_at < interval:
            return
        self._drawn_at = now
        pending, self._pending = self._pending, []
        rows = {pop: {k: np.concatenate([p[pop][k] for p in pending]) for k in ("time", "neuron")} for pop in COLORS}
        cutoff = t_end - self.window_ms
        inside = {
            pop: int((np.asarray(src.data["time"]) > cutoff).sum() + (rows[pop]["time"] > cutoff).sum())
            for pop, src in self.sources.items()
        }
        total = sum(inside.values())
        self.points = 0
        for pop, source in self.sources.items():
            keep = max(1, min(inside[pop], self.max_points * inside[pop] // max(1, total)))
            if len(rows[pop]["time"]) or keep < len(source.data["time"]):
                source.stream(rows[pop], rollover=keep)  # rows arrive in time order: keep the newest
            self.points += len(source.data["time"])
        self._follow(t_end)

    def load(self, ds) -> None:
        labels = np.asarray(ds["population"].values).astype(str)
        rows = self._rows(ds, labels)
        share = self.max_points // len(rows)
        self.points = 0
        for pop, source in self.sources.items():
            source.data = {k: v[-share:] for k, v in rows[pop].items()}
            self.points += len(source.data["time"])
        self._follow(float(np.asarray(ds["chunk_end"].values).max()))

    @param.depends("neuron_range", watch=True)
    def _range(self):
        self.fig.y_range.start, self.fig.y_range.end = self.neuron_range


class RateView(_TimeView):
    """Population rates (E, I) per sample interval, optionally smoothed."""

    smooth_ms = param.Number(default=5.0, bounds=(0.0, 200.0), doc="box-filter width (ms)")

    def __init__(self, **params):
        super().__init__(**params)
        self.source = ColumnDataSource({"time": [], "E": [], "I": []})
        self.fig = _fig("Population rate", "rate (Hz)", 220, x_range=Range1d(0, self.window_ms), y_range=Range1d(0, 50))
        for pop, color in COLORS.items():
            self.fig.line("time", pop, source=self.source, color=color, line_width=1.3, legend_label=pop)
        self.fig.legend.location = "top_left"
        self.fig.legend.orientation = "horizontal"
        self.fig.add_tools(
            HoverTool(tooltips=[("t", "@time{0.0} ms"), ("E", "@E{0.0} Hz"), ("I", "@I{0.0} Hz")], mode="vline")
        )
        self._tail = np.zeros((2, 0))  # recent raw rates, for smoothing across pushes

    def _smoothed(self, rate: np.ndarray, step_ms: float) -> np.ndarray:
        width = max(1, round(self.smooth_ms / step_ms)) if self.smooth_ms else 1
        if width == 1:
            return rate
        joined = np.concatenate([self._tail, rate], axis=1)
        kernel = np.ones(width) / width
        out = np.stack([np.convolve(r, kernel, mode="full")[: joined.shape[1]] for r in joined])
        self._tail = joined[:, -(width - 1) :]
        return out[:, -rate.shape[1] :]

    def _columns(self, data) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(data["time"].values)
        rate = np.asarray(data["rate"].values)
        step = float(t[1] - t[0]) if t.size > 1 else 1.0
        return t, self._smoothed(rate, step)

    def reset(self) -> None:
        self.source.data = {"time": [], "E": [], "I": []}
        self._tail = np.zeros((2, 0))

    def _fit_y(self) -> None:
        e, i = np.asarray(self.source.data["E"]), np.asarray(self.source.data["I"])
        if e.size:
            _fit(self.fig.y_range, 0.0, float(max(e.max(), i.max(), 1.0)))

    def push(self, chunk, t_end: float) -> None:
        t, rate = self._columns(chunk)
        if t.size:
            keep = max(1, int(self.window_ms / max(float(t[1] - t[0]) if t.size > 1 else 1.0, 1e-3)))
            self.source.stream({"time": t, "E": rate[0], "I": rate[1]}, rollover=keep)
            self._fit_y()
        self._follow(t_end)

    def load(self, ds) -> None:
        self._tail = np.zeros((2, 0))
        t, rate = self._columns(ds)
        self.source.data = {"time": t, "E": rate[0], "I": rate[1]}
        self._fit_y()
        self._follow(float(t[-1]) if t.size else 0.0)


class VoltageView(_TimeView):
    """Membrane potentials of the first few recorded neurons, stacked."""

    traces = param.Integer(default=4, bounds=(1, 10), doc="traces shown")

    def __init__(self, **params):
        super().__init__(**params)
        self.fig = _fig(
            "Membrane potential", "v (mV)", 220, x_range=Range1d(0, self.window_ms), y_range=Range1d(-80, 0)
        )
        self.source = ColumnDataSource({"time": [], **{f"v{k}": [] for k in range(10)}})
        palette = [
            "#1b2631",
            "#7d3c98",
            "#117864",
            "#b9770e",
            "#2e4053",
            "#943126",
            "#1f618d",
            "#196f3d",
            "#6e2c00",
            "#4a235a",
        ]
        self._renderers = [
            self.fig.line("time", f"v{k}", source=self.source, color=palette[k], line_width=1) for k in range(10)
        ]
        self._visible()

    @param.depends("traces", watch=True)
    def _visible(self):
        for k, r in enumerate(self._renderers):
            r.visible = k < self.traces

    def _columns(self, data) -> dict:
        t = np.asarray(data["time"].values)
        v = np.asarray(data["v"].values, dtype=float)
        cols = {"time": t}
        for k in range(10):
            cols[f"v{k}"] = v[:, k] if k < v.shape[1] else np.full(t.size, np.nan)
        return cols

    def reset(self) -> None:
        self.source.data = {"time": [], **{f"v{k}": [] for k in range(10)}}

    def _fit_y(self) -> None:
        v = np.array([self.source.data[f"v{k}"] for k in range(self.traces)], dtype=float)
        if v.size and np.isfinite(v).any():
            _fit(self.fig.y_range, float(np.nanmin(v)), float(np.nanmax(v)), slack=0.05)

    def push(self, chunk, t_end: float) -> None:
        cols = self._columns(chunk)
        if cols["time"].size:
            step = float(cols["time"][1] - cols["time"][0]) if cols["time"].size > 1 else 1.0
            self.source.stream(cols, rollover=max(1, int(self.window_ms / step)))
            self._fit_y()
        self._follow(t_end)

    def load(self, ds) -> None:
        self.source.data = self._columns(ds)
        self._fit_y()
        t = np.asarray(ds["time"].values)
        self._follow(float(t[-1]) if t.size else 0.0)


class HistogramView(pn.viewable.Viewer):
    """Histograms of single-neuron rates and ISI CVs over a recent window, per population."""

    def __init__(self, **params):
        super().__init__(**params)
        self.rate_source = ColumnDataSource({"left": [], "right": [], "E": [], "I": []})
        self.cv_source = ColumnDataSource({"left": [], "right": [], "E": [], "I": []})
        self.rate_fig = _hist_fig("Rates of single neurons", "rate (Hz)", 100.0)
        self.cv_fig = _hist_fig("ISI irregularity", "ISI CV", 1.5)
        for fig, src in ((self.rate_fig, self.rate_source), (self.cv_fig, self.cv_source)):
            for pop, color in COLORS.items():
                fig.quad(
                    left="left",
                    right="right",
                    bottom=0,
                    top=pop,
                    source=src,
                    fill_color=color,
                    fill_alpha=0.45,
                    line_color=color,
                    legend_label=pop,
                )
            fig.legend.location = "top_right"
            fig.title.text_font_size = "11pt"

    def update(self, ds, t_start: float, t_stop: float) -> None:
        """Recompute from the spikes of ``ds`` in ``(t_start, t_stop]``."""
        labels = np.asarray(ds["population"].values).astype(str)
        rates = neuron_rates(ds, t_start, t_stop)
        cvs = neuron_cv_isi(ds, t_start, t_stop)
        for fig, source, values, floor in (
            (self.rate_fig, self.rate_source, rates, 1.0),
            (self.cv_fig, self.cv_source, cvs, 1.5),
        ):
            top = max(floor, float(np.nanpercentile(values, 99.5)) if np.isfinite(values).any() else floor)
            source.data = data = _hist(values, labels, np.linspace(0, top, 31))
            fig.x_range.start, fig.x_range.end = 0.0, top
            _fit(fig.y_range, 0.0, float(max(data["E"].max(), data["I"].max(), 1.0)))

    def __panel__(self):
        return pn.Row(
            pn.pane.Bokeh(self.rate_fig, sizing_mode="stretch_width"),
            pn.pane.Bokeh(self.cv_fig, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


def _hist_fig(title: str, x_label: str, x_max: float) -> figure:
    return figure(
        title=title,
        height=220,
        sizing_mode="stretch_width",
        x_axis_label=x_label,
        y_axis_label="neurons (%)",
        tools="save",
        x_range=Range1d(0, x_max),
        y_range=Range1d(0, 100),
    )


def _hist(values: np.ndarray, labels: np.ndarray, edges: np.ndarray) -> dict:
    out = {"left": edges[:-1], "right": edges[1:]}
    for pop in COLORS:
        v = values[(labels == pop) & np.isfinite(values)]
        counts = np.histogram(v, bins=edges)[0].astype(float)
        out[pop] = 100.0 * counts / max(1, (labels == pop).sum())
    return out


class PhaseDiagram(pn.viewable.Viewer):
    """Brunel (2000) states measured on a (g, eta) grid, the paper's panels, and the current run."""

    g = param.Number(default=5.0)
    eta = param.Number(default=2.0)

    def __init__(self, **params):
        super().__init__(**params)
        grid = load_phase_grid()
        pts = grid["points"]
        self.fig = figure(
            title=f"Brunel phase diagram (measured, N = {int(12500 * grid['scale'])})",
            height=300,
            x_range=Range1d(1.5, 9.8),
            y_range=Range1d(0.2, 4.4),
            sizing_mode="stretch_width",
            x_axis_label="g (relative inhibition)",
            y_axis_label="eta = nu_ext / nu_thr",
            tools="hover,save",
            tooltips=[
                ("g", "@g"),
                ("eta", "@eta"),
                ("state", "@state"),
                ("rate", "@rate{0.0} Hz"),
                ("ISI CV", "@cv{0.00}"),
                ("chi 1 ms", "@chi1{0.00}"),
            ],
        )
        src = ColumnDataSource(
            {
                "g": [p["g"] for p in pts],
                "eta": [p["eta"] for p in pts],
                "state": [p["state"] for p in pts],
                "rate": [p["rate"] or 0.0 for p in pts],
                "cv": [p["cv"] if p["cv"] is not None else np.nan for p in pts],
                "chi1": [p["chi_1ms"] if p["chi_1ms"] is not None else np.nan for p in pts],
            }
        )
        states = list(STATE_COLORS)
        self.fig.rect(
            "g",
            "eta",
            width=0.45,
            height=0.38,
            source=src,
            line_color="white",
            color=factor_cmap("state", list(STATE_COLORS.values()), states),
            legend_field="state",
        )
        for name, p in grid["panels"].items():
            self.fig.add_layout(
                Label(
                    x=p["g"],
                    y=p["eta"],
                    text=name,
                    text_font_style="bold",
                    text_align="center",
                    text_baseline="middle",
                    text_font_size="10pt",
                )
            )
        self.current = ColumnDataSource({"g": [self.g], "eta": [self.eta]})
        self.fig.scatter(
            "g",
            "eta",
            source=self.current,
            size=16,
            marker="circle_cross",
            fill_alpha=0,
            line_color="black",
            line_width=2,
        )
        self.fig.legend.location = "top_right"
        self.fig.legend.label_text_font_size = "8pt"
        self.fig.title.text_font_size = "11pt"

    @param.depends("g", "eta", watch=True)
    def _move(self):
        self.current.data = {"g": [self.g], "eta": [self.eta]}

    def __panel__(self):
        return pn.pane.Bokeh(self.fig, sizing_mode="stretch_width")
