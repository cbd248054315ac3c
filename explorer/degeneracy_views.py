"""Views of a degeneracy sweep: live losses, distance matrices, MDS, the three levels, trajectories.

Each view owns Bokeh figures and their ``ColumnDataSource``s (named, so a browser test can find
them). The live loss view streams only the new training steps (``source.stream``); the other
views are redrawn when a condition finishes, from the sweep dataset, so a live sweep and a
reopened one look the same. Every range is a server-set ``Range1d`` (auto-ranging would send
bounds back from the browser after each update, see :mod:`explorer.spiking_views`). Axis labels
come from the variables' ``long_name`` and ``units`` attrs.
"""

from __future__ import annotations

import numpy as np
import panel as pn
import param
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    FixedTicker,
    HoverTool,
    LinearColorMapper,
    PrintfTickFormatter,
    Range1d,
    Span,
)
from bokeh.palettes import Category10_10, Category20_20, Viridis256
from bokeh.plotting import figure

__all__ = ["CONDITION_COLORS", "LossView", "MatrixView", "MDSView", "LevelsView", "TrajectoryView", "axis_label"]

CONDITION_COLORS = Category10_10  # condition i is drawn in CONDITION_COLORS[i % 10] everywhere
NETWORK_COLORS = (*Category20_20[0::2], *Category20_20[1::2])  # network j's loss curve: ten strong, then pale
STABLE_COLOR, UNSTABLE_COLOR = "#111111", "#d62728"


def axis_label(attrs: dict, fallback: str = "") -> str:
    """``long_name (units)`` from a variable's attrs."""
    name = attrs.get("long_name") or fallback
    units = attrs.get("units") or ""
    return f"{name} ({units})" if units else name


def _figure(title: str, height: int, x_label: str, y_label: str, **kw) -> figure:
    kw.setdefault("sizing_mode", "stretch_width")
    fig = figure(
        title=title,
        height=height,
        x_axis_label=x_label,
        y_axis_label=y_label,
        tools=kw.pop("tools", "pan,wheel_zoom,box_zoom,reset,save"),
        toolbar_location="right",
        x_range=kw.pop("x_range", Range1d(0, 1)),
        y_range=kw.pop("y_range", Range1d(0, 1)),
        **kw,
    )
    fig.title.text_font_size = "11pt"
    return fig


def _compact(*axes) -> None:
    """Two significant digits on linear axes (distances of 1e-3 otherwise read 1.000e-3 and collide)."""
    for axis in axes:
        axis.formatter = PrintfTickFormatter(format="%.2g")


def _set(rng: Range1d, lo: float, hi: float, *, slack: float = 0.08, log: bool = False) -> None:
    """Set a range to [lo, hi] plus slack (a factor on a log axis); ignores non-finite bounds."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return
    if log:
        lo, hi = max(lo, 1e-300) / 1.6, max(hi, 1e-300) * 1.6
        short = 2.05 - np.log10(hi / lo)  # under two decades Bokeh's log ticker falls back to crowded linear ticks
        if short > 0:
            lo, hi = lo / 10 ** (short / 2), hi * 10 ** (short / 2)
        rng.start, rng.end = lo, hi
        return
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = slack * (hi - lo)
    rng.start, rng.end = lo - pad, hi + pad


def _finite(*arrays) -> np.ndarray:
    values = np.concatenate([np.asarray(a, float).ravel() for a in arrays]) if arrays else np.zeros(0)
    return values[np.isfinite(values)]


class LossView(pn.viewable.Viewer):
    """Training loss of every network of the condition being trained, on a log axis, with the threshold.

    ``reset`` prepares one line per network; ``push`` streams only the new steps (every
    ``stride``-th, so a long run keeps at most ``max_points`` points per network).
    """

    max_points = param.Integer(default=4000, bounds=(100, 1_000_000), doc="steps drawn per network")

    def __init__(self, **params):
        super().__init__(**params)
        self.source = ColumnDataSource({"step": np.zeros(0, np.int64)}, name="loss")
        self.fig = _figure(
            "Training loss",
            300,
            "training step",
            "training MSE (MSE)",
            y_axis_type="log",
            x_range=Range1d(0, 100),
            y_range=Range1d(1e-4, 1.0),
        )
        self.threshold = Span(location=1e-3, dimension="width", line_dash="dashed", line_color="#333333")
        self.threshold.visible = False
        self.fig.add_layout(self.threshold)
        self.fig.add_tools(HoverTool(tooltips=[("", "$name"), ("step", "$x{0}"), ("MSE", "$y{0.00e}")]))
        self._lines: list = []
        self.stride = 1
        self.rows = 0  # rows streamed since the last reset
        self.last_step = -1
        self._lo, self._hi = np.inf, -np.inf

    def reset(
        self, networks: int, threshold: float, max_steps: int, title: str, labels: tuple[str, str] | None = None
    ) -> None:
        """Empty the plot and prepare ``networks`` lines; ``threshold`` is drawn dashed."""
        self.fig.renderers = [r for r in self.fig.renderers if r not in self._lines]
        self.source.data = {"step": np.zeros(0, np.int64), **{f"n{j}": np.zeros(0) for j in range(networks)}}
        self._lines = [
            self.fig.line(
                "step",
                f"n{j}",
                source=self.source,
                color=NETWORK_COLORS[j % len(NETWORK_COLORS)],
                line_width=1.3,
                alpha=0.85,
                name=f"network {j}",
            )
            for j in range(networks)
        ]
        self.stride = max(1, -(-max_steps // self.max_points))
        self.rows, self.last_step = 0, -1
        self.threshold.location = threshold
        self.threshold.visible = True
        self._lo, self._hi = threshold, threshold
        _set(self.fig.y_range, threshold, threshold, log=True)  # two decades about the threshold, grown by data
        self.fig.title.text = title
        if labels is not None:
            self.fig.xaxis.axis_label, self.fig.yaxis.axis_label = labels
        self.fig.x_range.start, self.fig.x_range.end = 0, 100

    def push(self, chunk) -> None:
        """Stream the steps of a training chunk: ``loss (step, net)``, ``step (step,)``."""
        steps = np.asarray(chunk["step"].values)
        if not steps.size:
            return
        loss = np.asarray(chunk["loss"].values, float)  # (step, net)
        loss = np.where(np.isfinite(loss) & (loss > 0), loss, np.nan)
        keep = steps % self.stride == 0
        if keep.any():
            rows = {"step": steps[keep], **{f"n{j}": loss[keep, j] for j in range(loss.shape[1])}}
            self.source.stream(rows)
            self.rows += int(keep.sum())
        self.last_step = int(steps[-1])
        seen = _finite(loss)
        if seen.size:
            self._lo, self._hi = min(self._lo, seen.min()), max(self._hi, seen.max())
        y = self.fig.y_range
        if self._lo < y.start or self._hi > y.end:
            _set(y, self._lo, self._hi, log=True)
        if self.last_step > self.fig.x_range.end:
            self.fig.x_range.end = max(100, int(self.last_step * 1.25))

    def __panel__(self):
        return pn.pane.Bokeh(self.fig, sizing_mode="stretch_width")


class MatrixView(pn.viewable.Viewer):
    """A pairwise distance matrix of one condition as a heatmap (blank outside converged networks)."""

    def __init__(self, var: str, **params):
        super().__init__(**params)
        self.var = var
        self.source = ColumnDataSource({"x": [], "y": [], "value": []}, name=f"matrix-{var}")
        self.mapper = LinearColorMapper(palette=Viridis256, low=0.0, high=1.0, nan_color="#eeeeee")
        self.fig = _figure(
            var.upper(),
            320,
            "network",
            "network",
            sizing_mode="fixed",
            width=380,
            x_range=Range1d(-0.5, 0.5),
            y_range=Range1d(0.5, -0.5),  # row 0 at the top, as a matrix is written
            tools="hover,save",
            tooltips=[("networks", "@y, @x"), ("distance", "@value{0.0000}")],
        )
        self.fig.rect(
            "x",
            "y",
            width=1,
            height=1,
            source=self.source,
            fill_color={"field": "value", "transform": self.mapper},
            line_color=None,
        )
        self.colorbar = ColorBar(
            color_mapper=self.mapper, width=10, title_text_font_size="8pt", formatter=PrintfTickFormatter(format="%.2g")
        )
        self.fig.add_layout(self.colorbar, "right")

    def show(self, matrix: np.ndarray, title: str, name: str = "") -> None:
        """``matrix`` (net, net2), NaN where a network did not converge; ``name`` titles the colour bar."""
        m = np.asarray(matrix, float)
        k = m.shape[0]
        rows, cols = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")  # (net, net2)
        self.source.data = {"x": cols.ravel(), "y": rows.ravel(), "value": m.ravel()}
        seen = _finite(m)
        self.mapper.low, self.mapper.high = 0.0, float(seen.max()) if seen.size and seen.max() > 0 else 1.0
        self.fig.x_range.start, self.fig.x_range.end = -0.5, k - 0.5
        self.fig.y_range.start, self.fig.y_range.end = k - 0.5, -0.5
        ticks = list(range(0, k, max(1, -(-k // 10))))  # whole networks, at most ten labels
        self.fig.xaxis.ticker = self.fig.yaxis.ticker = FixedTicker(ticks=ticks)
        self.fig.title.text = title
        self.colorbar.title = name or None

    def clear(self, title: str) -> None:
        self.source.data = {"x": [], "y": [], "value": []}
        self.fig.title.text = title

    def __panel__(self):
        return pn.pane.Bokeh(self.fig)


class MDSView(pn.viewable.Viewer):
    """Classical MDS of one distance (DSA or PIF): a point per converged network, coloured by condition."""

    def __init__(self, var: str, **params):
        super().__init__(**params)
        self.var = var
        self.source = ColumnDataSource(self._empty(), name=f"mds-{var}")
        self.fig = _figure(
            f"MDS of {var.upper()}",
            340,
            "MDS 1",
            "MDS 2",
            x_range=Range1d(-1, 1),
            y_range=Range1d(-1, 1),
            tools="pan,wheel_zoom,reset,save,hover",
            tooltips=[("condition", "@label"), ("network", "@net")],
        )
        self.fig.scatter(
            "x", "y", source=self.source, size=11, color="color", legend_field="label", line_color="white", alpha=0.9
        )
        self.fig.legend.label_text_font_size = "9pt"
        self.fig.add_layout(self.fig.legend[0], "right")  # beside the points, not over them
        _compact(self.fig.xaxis, self.fig.yaxis)

    @staticmethod
    def _empty() -> dict:
        return {"x": [], "y": [], "net": [], "condition": [], "label": [], "color": []}

    def show(self, points: dict[str, np.ndarray], name: str) -> None:
        """``points`` from :func:`explorer.degeneracy_data.mds_points`; ``name`` the distance's long name."""
        colors = [CONDITION_COLORS[int(c) % len(CONDITION_COLORS)] for c in points["condition"]]
        self.source.data = {**points, "color": colors}
        n = len(points["x"])
        self.fig.title.text = f"MDS of {name} · {n} converged network{'s' if n != 1 else ''}"
        reach = float(np.abs(_finite(points["x"], points["y"])).max(initial=0.0))
        reach = reach * 1.2 if reach > 0 else 1.0
        for rng in (self.fig.x_range, self.fig.y_range):
            rng.start, rng.end = -reach, reach

    def clear(self) -> None:
        self.source.data = self._empty()
        self.fig.title.text = f"MDS of {self.var.upper()}"

    def __panel__(self):
        return pn.pane.Bokeh(self.fig, sizing_mode="stretch_width")


class LevelsView(pn.viewable.Viewer):
    """Degeneracy against the knob at three levels, with the spread over seeds.

    Dynamics (DSA) and weights (PIF): mean ± sd across converged networks of each network's
    mean distance to the others (faint dots: the networks). Behaviour: σ_OOD, the sd of the
    networks' OOD MSE (faint dots: each network's OOD MSE), on a log axis.
    """

    def __init__(self, **params):
        super().__init__(**params)
        self.conditions = ColumnDataSource(self._empty_conditions(), name="levels")
        self.networks = ColumnDataSource(
            {"x": [], "condition": [], "net": [], "dsa": [], "pif": [], "ood_mse": []}, name="levels-networks"
        )
        self.dyn = _figure("Dynamics: DSA", 280, "knob", "DSA distance", x_range=Range1d(-0.5, 0.5))
        self.wts = _figure("Weights: PIF", 280, "knob", "PIF distance", x_range=Range1d(-0.5, 0.5))
        self.beh = _figure(
            "Behaviour: σ_OOD",
            280,
            "knob",
            "OOD MSE",
            y_axis_type="log",
            x_range=Range1d(-0.5, 0.5),
            y_range=Range1d(1e-6, 1.0),
        )
        for fig, var in ((self.dyn, "dsa"), (self.wts, "pif")):
            fig.scatter("x", var, source=self.networks, size=5, color="#999999", alpha=0.6, legend_label="networks")
            fig.segment("x", f"{var}_lo", "x", f"{var}_hi", source=self.conditions, color="#1f3b73", line_width=2)
            fig.line("x", f"{var}_mean", source=self.conditions, color="#1f3b73", line_width=1.5)
            fig.scatter("x", f"{var}_mean", source=self.conditions, size=10, color="#1f3b73", legend_label="mean ± sd")
            fig.add_tools(
                HoverTool(tooltips=[("", "@label"), ("mean", f"@{var}_mean{{0.0000}}"), ("converged", "@n_converged")])
            )
        self.beh.scatter(
            "x", "ood_mse", source=self.networks, size=5, color="#999999", alpha=0.6, legend_label="network OOD MSE"
        )
        self.beh.line("x", "sigma_ood", source=self.conditions, color="#7b2d26", line_width=1.5)
        self.beh.scatter("x", "sigma_ood", source=self.conditions, size=10, color="#7b2d26", legend_label="σ_OOD")
        self.beh.add_tools(HoverTool(tooltips=[("", "@label"), ("σ_OOD", "@sigma_ood{0.00e}")]))
        _compact(self.dyn.yaxis, self.wts.yaxis)
        for fig in self.figures:
            fig.legend.location = "top_left"
            fig.legend.label_text_font_size = "8pt"
            fig.legend.background_fill_alpha = 0.6

    @property
    def figures(self) -> tuple:
        return self.dyn, self.wts, self.beh

    @staticmethod
    def _empty_conditions() -> dict:
        cols = ("x", "condition", "label", "n_converged", "sigma_ood")
        return {k: [] for k in (*cols, *(f"{v}_{s}" for v in ("dsa", "pif") for s in ("mean", "lo", "hi")))}

    def set_axis(self, labels: list[str], knob: str, attrs: dict[str, dict]) -> None:
        """One tick per condition of the sweep, labelled with its knob value; y labels from ``attrs``."""
        ticks = list(range(len(labels)))
        for fig in self.figures:
            fig.xaxis.ticker = FixedTicker(ticks=ticks)
            fig.xaxis.major_label_overrides = {i: text for i, text in enumerate(labels)}
            fig.xaxis.axis_label = knob
            fig.x_range.start, fig.x_range.end = -0.5, len(labels) - 0.5
        self.dyn.yaxis.axis_label = axis_label(attrs.get("dsa", {}), "DSA distance")
        self.wts.yaxis.axis_label = axis_label(attrs.get("pif", {}), "PIF distance")
        self.beh.yaxis.axis_label = axis_label(attrs.get("ood_mse", {}), "OOD MSE")

    def show(self, per_condition: dict[str, np.ndarray], per_network: dict[str, np.ndarray], networks: int) -> None:
        """Tables from :func:`explorer.degeneracy_data.levels`; ``networks`` per condition (for jitter)."""
        cond = per_condition["condition"]
        self.conditions.data = {**per_condition, "x": cond.astype(float)}
        jitter = (per_network["net"] / max(1, networks - 1) - 0.5) * 0.3 if networks > 1 else 0.0
        self.networks.data = {**per_network, "x": per_network["condition"] + jitter}
        for fig, var in ((self.dyn, "dsa"), (self.wts, "pif")):
            seen = _finite(per_condition[f"{var}_lo"], per_condition[f"{var}_hi"], per_network[var])
            if seen.size:
                _set(fig.y_range, min(0.0, seen.min()), seen.max())
        seen = _finite(per_condition["sigma_ood"], per_network["ood_mse"])
        seen = seen[seen > 0]
        if seen.size:
            _set(self.beh.y_range, seen.min(), seen.max(), log=True)

    def clear(self) -> None:
        self.conditions.data = self._empty_conditions()
        self.networks.data = {k: [] for k in self.networks.data}

    def __panel__(self):
        return pn.Row(
            *(pn.pane.Bokeh(f, sizing_mode="stretch_width") for f in self.figures), sizing_mode="stretch_width"
        )


class TrajectoryView(pn.viewable.Viewer):
    """Hidden trajectories of one network on the test trials in its first two principal components,
    with its fixed points: stable (filled) and unstable (red crosses)."""

    def __init__(self, **params):
        super().__init__(**params)
        self.lines = ColumnDataSource({"xs": [], "ys": [], "trial": [], "color": []}, name="trajectories")
        self.ends = ColumnDataSource({"x": [], "y": [], "color": []}, name="trajectory-ends")
        self.stable = ColumnDataSource(self._empty_points(), name="fixed-stable")
        self.unstable = ColumnDataSource(self._empty_points(), name="fixed-unstable")
        self.fig = _figure("Hidden trajectories", 420, "PC 1", "PC 2", x_range=Range1d(-1, 1), y_range=Range1d(-1, 1))
        self.fig.multi_line("xs", "ys", source=self.lines, color="color", line_width=1, alpha=0.55)
        self.fig.scatter("x", "y", source=self.ends, color="color", size=5, alpha=0.8)
        fp_tips = [("unstable dimensions", "@n_unstable"), ("speed q", "@speed{0.0e}")]
        stable = self.fig.scatter(
            "x", "y", source=self.stable, size=13, color=STABLE_COLOR, line_color="white", legend_label="stable"
        )
        unstable = self.fig.scatter(
            "x",
            "y",
            source=self.unstable,
            size=14,
            marker="x",
            line_width=3,
            color=UNSTABLE_COLOR,
            legend_label="unstable (saddle or repeller)",
        )
        self.fig.add_tools(HoverTool(renderers=[stable, unstable], tooltips=fp_tips))
        self.fig.legend.location = "top_right"
        self.fig.legend.label_text_font_size = "9pt"

    @staticmethod
    def _empty_points() -> dict:
        return {"x": [], "y": [], "n_unstable": [], "speed": []}

    def show(self, trajectories: np.ndarray, explained: np.ndarray, title: str) -> None:
        """``trajectories`` (trial, time, k >= 2) projected states; ``explained`` (k,) variance fractions."""
        xy = np.asarray(trajectories, float)
        if xy.shape[-1] < 2:
            xy = np.concatenate([xy, np.zeros((*xy.shape[:-1], 2 - xy.shape[-1]))], axis=-1)
        trials = xy.shape[0]
        colors = [CONDITION_COLORS[t % len(CONDITION_COLORS)] for t in range(trials)]
        self.lines.data = {
            "xs": [xy[t, :, 0] for t in range(trials)],
            "ys": [xy[t, :, 1] for t in range(trials)],
            "trial": list(range(trials)),
            "color": colors,
        }
        self.ends.data = {"x": xy[:, -1, 0], "y": xy[:, -1, 1], "color": colors}
        self.clear_points()
        for axis, k in ((self.fig.xaxis, 0), (self.fig.yaxis, 1)):
            share = f" ({explained[k]:.0%} of variance)" if k < len(explained) else ""
            axis.axis_label = f"PC {k + 1}{share}"
        self.fig.title.text = title
        self._fit(xy[..., 0], xy[..., 1])

    def show_points(self, points: np.ndarray, stable: np.ndarray, n_unstable: np.ndarray, speed: np.ndarray) -> None:
        """Fixed points projected on the same axes: ``points`` (m, k >= 2)."""
        pts = np.asarray(points, float)
        pts = pts.reshape(len(pts), -1) if pts.size else np.zeros((0, 2))  # (m, k)
        if pts.shape[1] < 2:
            pts = np.pad(pts, ((0, 0), (0, 2 - pts.shape[1])))
        stable = np.asarray(stable, bool)
        for source, keep in ((self.stable, stable), (self.unstable, ~stable)):
            source.data = {
                "x": pts[keep, 0],
                "y": pts[keep, 1],
                "n_unstable": np.asarray(n_unstable)[keep],
                "speed": np.asarray(speed)[keep],
            }
        lines = self.lines.data
        xs = np.concatenate([*lines["xs"], pts[:, 0]]) if lines["xs"] else pts[:, 0]
        ys = np.concatenate([*lines["ys"], pts[:, 1]]) if lines["ys"] else pts[:, 1]
        self._fit(xs, ys)

    def clear_points(self) -> None:
        self.stable.data = self._empty_points()
        self.unstable.data = self._empty_points()

    def clear(self, title: str = "Hidden trajectories") -> None:
        self.lines.data = {"xs": [], "ys": [], "trial": [], "color": []}
        self.ends.data = {"x": [], "y": [], "color": []}
        self.clear_points()
        self.fig.title.text = title

    def _fit(self, xs, ys) -> None:
        for rng, values in ((self.fig.x_range, xs), (self.fig.y_range, ys)):
            seen = _finite(values)
            if seen.size:
                _set(rng, seen.min(), seen.max())

    def __panel__(self):
        return pn.pane.Bokeh(self.fig, sizing_mode="stretch_width")
