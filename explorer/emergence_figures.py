"""Static (matplotlib) figures of emergence runs: for notebooks, papers and the README.

``python -m explorer.emergence_figures RUN.zarr [RUN2.zarr ...] OUT.png`` draws :func:`run_figure`
for one run, or :func:`compare_figure` for several (same task).
"""

from __future__ import annotations

import sys

import matplotlib

if __name__ == "__main__":
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from engine.emergence.summary import ONSET_CURVES, curve, law_fits, onset_fits

__all__ = ["law_panel", "onset_panel", "heads_panel", "spectrum_panel", "run_figure", "compare_figure"]

COLORS = plt.get_cmap("tab10").colors
LABELS = {
    "top_ratio": "top / median |h|",
    "nonzero_share": "nonzero MLP share",
    "icl_acc": "in-context accuracy",
    "iwl_acc": "in-weights accuracy",
    "induction_max": "best induction score",
    "train_acc": "train accuracy",
    "test_acc": "test accuracy",
    "icl_loss": "in-context loss (nats)",
}


def law_panel(ax, ds, name: str = "top_ratio", *, label: str = "") -> None:
    """Each layer's curve (dots) with its fitted emergence law (line); the legend gives kind and R²."""
    steps = ds["probe"].values
    fine = np.linspace(steps.min(), steps.max(), 300)
    for layer, fit in enumerate(law_fits(ds, name)):
        color = COLORS[layer % 10]
        ax.plot(steps, ds[name].values[:, layer], ".", ms=3, color=color)
        text = f"{label}layer {layer}: {fit.kind}" + (f", R² {fit.r2:.3f}" if fit.ok else "")
        ax.plot(fine, fit.predict(fine), "-", lw=1.2, color=color, label=text)
    ax.set_xlabel("training step")
    ax.set_ylabel(LABELS.get(name, name))
    ax.legend(fontsize=7, frameon=False)


def onset_panel(ax, ds, names=None, *, label: str = "", style: str = "-") -> None:
    """The task's abrupt curves with their logistic fits and onsets (dashed verticals)."""
    fits = onset_fits(ds)
    names = names or [n for n in ONSET_CURVES.get(ds.attrs.get("task", ""), ()) if n in fits]
    steps = ds["probe"].values
    fine = np.linspace(steps.min(), steps.max(), 300)
    for i, name in enumerate(names):
        color = COLORS[i % 10]
        t, y = curve(ds, name)
        fit = fits[name]
        ax.plot(t, y, style, lw=1, color=color, alpha=0.6)
        if fit.ok:
            onset = f", onset {fit.onset:.0f}" + (" (abrupt)" if fit.abrupt else "")
            ax.plot(fine, fit.predict(fine), "-", lw=1.6, color=color, label=f"{label}{LABELS.get(name, name)}{onset}")
            if steps.min() <= fit.onset <= steps.max():
                ax.axvline(fit.onset, color=color, ls="--", lw=0.8)
        else:
            ax.plot([], [], color=color, label=f"{label}{LABELS.get(name, name)}")
    ax.set_xlabel("training step")
    ax.legend(fontsize=7, frameon=False)


def heads_panel(ax, ds, name: str = "induction") -> None:
    """One line per (layer, head) of a per-head score over training."""
    steps = ds["probe"].values
    values = ds[name].values  # (probe, layer, head)
    for layer in range(values.shape[1]):
        for head in range(values.shape[2]):
            ax.plot(steps, values[:, layer, head], color=COLORS[layer % 10], lw=1, alpha=0.5 + 0.5 / (head + 1))
    ax.plot([], [], color=COLORS[0], label="layer 0")
    if values.shape[1] > 1:
        ax.plot([], [], color=COLORS[1], label="layer 1")
    ax.set_xlabel("training step")
    ax.set_ylabel(ds[name].attrs.get("long_name", name))
    ax.legend(fontsize=7, frameon=False)


def spectrum_panel(ax, ds) -> None:
    """Grokking: the share of embedding power per frequency over training (frequency x step)."""
    spec = ds["spectrum"].values.T  # (frequency, probe)
    steps = ds["probe"].values
    ax.imshow(spec, aspect="auto", origin="lower", cmap="magma",
              extent=(steps.min(), steps.max(), -0.5, spec.shape[0] - 0.5))  # fmt: skip
    ax.set_xlabel("training step")
    ax.set_ylabel("frequency k")


def run_figure(ds):
    """The panels that fit the run's task, side by side."""
    task = ds.attrs.get("task", "")
    if task == "grokking":
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), layout="constrained")
        onset_panel(axes[0], ds)
        axes[1].plot(ds["probe"].values, ds["fourier_concentration"].values, color="k")
        axes[1].set_xlabel("training step")
        axes[1].set_ylabel("Fourier concentration")
        spectrum_panel(axes[2], ds)
    else:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), layout="constrained")
        law_panel(axes[0], ds, "top_ratio")
        onset_panel(axes[1], ds)
        if task in ("massive", "sparsity"):
            law_panel(axes[2], ds, "nonzero_share")
        else:
            heads_panel(axes[2], ds, "induction")
    fig.suptitle(ds.attrs.get("title", ""), fontsize=9)
    return fig


def compare_figure(runs: dict):
    """Several runs of one task: their abrupt curves and onsets on shared axes (name -> dataset)."""
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    for i, (name, ds) in enumerate(runs.items()):
        onset_panel(ax, ds, label=f"{name}: ", style=("-", "--", ":", "-.")[i % 4])
    return fig


if __name__ == "__main__":
    from engine.store import open_run

    paths, out = sys.argv[1:-1], sys.argv[-1]
    datasets = {p: open_run(p) for p in paths}
    figure = run_figure(datasets[paths[0]]) if len(paths) == 1 else compare_figure(datasets)
    figure.savefig(out, dpi=130)
