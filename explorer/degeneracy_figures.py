"""Static (matplotlib) figures of a degeneracy sweep: for notebooks, papers and the README.

``python -m explorer.degeneracy_figures SWEEP.zarr OUT.png`` draws :func:`sweep_figure`.
"""

from __future__ import annotations

import sys

import matplotlib

if __name__ == "__main__":
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from engine.rnn.fixed_points import FixedPoints, project_pca
from explorer.degeneracy_data import levels, mds_points, open_sweep

__all__ = ["sweep_figure", "trajectory_figure"]

COLORS = plt.get_cmap("tab10").colors


def _mds_panel(ax, ds: xr.Dataset, var: str, title: str) -> None:
    pts = mds_points(ds, var)
    for i in np.unique(pts["condition"]):
        sel = pts["condition"] == i
        ax.scatter(pts["x"][sel], pts["y"][sel], s=22, color=COLORS[i % 10], label=f"{pts['label'][sel][0]}")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("MDS 1")
    ax.set_ylabel("MDS 2")
    ax.legend(fontsize=7, frameon=False)


def _level_panel(ax, x, per_cond: dict, per_net: dict, var: str, ylabel: str) -> None:
    for j, i in enumerate(per_cond["condition"]):
        sel = per_net["condition"] == i
        ax.scatter(np.full(sel.sum(), x[j]), per_net[var][sel], s=8, color=COLORS[i % 10], alpha=0.4)
    mean = per_cond[f"{var}_mean"]
    ax.errorbar(x, mean, yerr=per_cond[f"{var}_hi"] - mean, color="k", marker="o", ms=4, capsize=3, lw=1)
    ax.set_ylabel(ylabel, fontsize=8)


def sweep_figure(ds: xr.Dataset, title: str = "") -> plt.Figure:
    """MDS of the DSA and PIF matrices (one point per converged network) and the three levels against the knob."""
    per_cond, per_net = levels(ds)
    knob = ds.attrs["knob"]
    values = ds[knob].values[per_cond["condition"]]
    x = np.arange(len(values))
    fig = plt.figure(figsize=(11, 3.4), layout="constrained")
    grid = fig.add_gridspec(1, 5)
    counts = ", ".join(f"{lab}: {n}" for lab, n in zip(per_cond["label"], per_cond["n_converged"], strict=True))
    _mds_panel(fig.add_subplot(grid[0]), ds, "dsa", "dynamics (DSA)")
    _mds_panel(fig.add_subplot(grid[1]), ds, "pif", "weights (PIF)")
    panels = (
        ("dsa", "mean DSA per network"),
        ("pif", "mean PIF per network"),
        ("ood_mse", "OOD MSE (line: sigma_OOD)"),
    )
    for k, (var, label) in enumerate(panels):
        ax = fig.add_subplot(grid[2 + k])
        if var == "ood_mse":
            for j, i in enumerate(per_cond["condition"]):
                sel = per_net["condition"] == i
                ax.scatter(np.full(sel.sum(), x[j]), per_net[var][sel], s=8, color=COLORS[i % 10], alpha=0.5)
            twin = ax.twinx()
            twin.plot(x, per_cond["sigma_ood"], color="k", marker="o", ms=4, lw=1)
            twin.set_ylabel("sigma_OOD", fontsize=8)
            ax.set_ylabel("OOD MSE per network", fontsize=8)
        else:
            _level_panel(ax, x, per_cond, per_net, var, label)
        ax.set_xticks(x, [str(v) for v in values])
        ax.set_xlabel(knob)
    head = title or ds.attrs.get("task", "")
    fig.suptitle(f"{head}: converged networks ({counts}); mean ± sd across networks", fontsize=9)
    return fig


def trajectory_figure(states: np.ndarray, fps: FixedPoints | None = None, ax=None, trials: int = 8):
    """Hidden trajectories (trial, time, unit) in their first two principal components, with fixed points."""
    proj = project_pca(states, fps.points if fps is not None and len(fps) else None, k=2)
    ax = ax or plt.figure(figsize=(4, 4)).gca()
    for tr in proj.trajectories[:trials]:
        ax.plot(tr[:, 0], tr[:, 1], lw=0.6, color="0.6")
    if proj.points is not None:
        stable = fps.stable
        ax.scatter(*proj.points[stable].T, s=40, color="k", label="stable", zorder=3)
        ax.scatter(*proj.points[~stable].T, s=40, facecolor="w", edgecolor="tab:red", label="unstable", zorder=3)
        ax.legend(fontsize=7, frameon=False)
    ax.set_xlabel(f"PC 1 ({proj.explained[0]:.0%})")
    ax.set_ylabel(f"PC 2 ({proj.explained[1]:.0%})")
    return ax


if __name__ == "__main__":
    sweep_figure(open_sweep(sys.argv[1])).savefig(sys.argv[2], dpi=130)
