"""Static figures of spiking runs (matplotlib), with labelled axes, units and a caption.

python -m explorer.figures brunel-regimes docs/brunel-regimes.png
"""

from __future__ import annotations

import argparse
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from engine.spiking import SpikingConfig, cv_isi, population_rates, run, synchrony  # noqa: E402
from explorer.style import COLORS  # noqa: E402

__all__ = ["raster_and_rate", "brunel_regimes", "COLORS"]


def raster_and_rate(
    ds: xr.Dataset,
    axes: tuple,
    *,
    n_show: int = 50,
    t_start: float = 0.0,
    t_stop: float | None = None,
    rate_step: float | None = None,
) -> None:
    """Raster of ``n_show`` neurons (E and I in proportion) above the whole-network rate."""
    ax_raster, ax_rate = axes
    t_stop = float(ds["chunk_end"].max()) if t_stop is None else t_stop
    pops = ds["population"].values.astype(str)
    n_exc = int((pops == "E").sum())
    n_inh = pops.size - n_exc
    k_inh = round(n_show * n_inh / pops.size)
    shown = np.concatenate(
        [
            np.linspace(0, n_exc - 1, n_show - k_inh).astype(int),
            n_exc + np.linspace(0, max(n_inh - 1, 0), k_inh).astype(int),
        ]
    )
    row = np.full(pops.size, -1)
    row[shown] = np.arange(shown.size)
    t = ds["spike_time"].values
    i = ds["spike_neuron"].values
    keep = (t > t_start) & (t <= t_stop) & (row[i] >= 0)
    for pop in ("E", "I"):
        sel = keep & (pops[i] == pop)
        ax_raster.scatter(t[sel], row[i[sel]], s=2, c=COLORS[pop], marker="|", linewidths=0.6, label=pop)
    ax_raster.set_ylim(-1, shown.size)
    ax_raster.set_ylabel("neuron")
    ax_raster.set_yticks([])
    times = ds["time"].values
    sizes = np.array([float((pops == p).sum()) for p in ds["pop"].values])
    total = (ds["rate"].values * sizes[:, None]).sum(0) / sizes.sum()
    sel = (times > t_start) & (times <= t_stop)
    ax_rate.plot(times[sel], total[sel], color="black", lw=0.7)
    ax_rate.set_ylabel("rate (Hz)")
    ax_rate.set_xlabel("time (ms)")
    ax_rate.set_xlim(t_start, t_stop)
    ax_raster.set_xlim(t_start, t_stop)


def brunel_regimes(*, scale: float = 1.0, duration: float = 0.4, seed: int = 1, window: float = 100.0):
    """Brunel (2000) figure 8 reproduced: panels A-D, raster of 50 neurons and global rate."""
    fig, axes = plt.subplots(
        2, 4, figsize=(14, 4.6), sharex="col", gridspec_kw={"height_ratios": [2.2, 1], "hspace": 0.08, "wspace": 0.22}
    )
    titles = {
        "A": "A: synchronous regular",
        "B": "B: fast oscillation, irregular",
        "C": "C: asynchronous irregular",
        "D": "D: slow oscillation, irregular",
    }
    t_stop = duration * 1000
    for col, regime in enumerate("ABCD"):
        cfg = SpikingConfig(
            model="brunel", regime=regime, scale=scale, duration=duration, seed=seed, sample_interval=0.2, record_v=0
        )
        ds = run(cfg)
        raster_and_rate(ds, (axes[0, col], axes[1, col]), t_start=t_stop - window, t_stop=t_stop)
        rate = np.mean(list(population_rates(ds, 100).values()))
        cv = cv_isi(ds, 100)["all"]
        chi = synchrony(ds, 1.0, 100)["chi"]
        p = cfg.params
        axes[0, col].set_title(
            f"{titles[regime]}\ng={p.g:g}, eta={p.eta:g}: {rate:.0f} Hz, CV {cv:.2f}, chi {chi:.2f}", fontsize=9
        )
        if col:
            axes[0, col].set_ylabel("")
            axes[1, col].set_ylabel("")
    axes[0, 0].legend(loc="upper right", fontsize=7, markerscale=3)
    n = cfg.params.n
    fig.suptitle(
        f"Brunel (2000) regimes, N = {n} LIF neurons (delta synapses, J = 0.1 mV, D = 1.5 ms), "
        f"dt = 0.1 ms, seed {seed}; last {window:g} ms of {duration:g} s",
        fontsize=10,
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explorer.figures")
    parser.add_argument("figure", choices=["brunel-regimes"])
    parser.add_argument("out", help="PNG or SVG path")
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    fig = brunel_regimes(scale=args.scale)
    fig.savefig(args.out, dpi=130, bbox_inches="tight")
    return 0


if __name__ == "__main__":
    sys.exit(main())
