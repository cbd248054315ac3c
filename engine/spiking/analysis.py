"""Measures of spiking datasets: rates, ISI irregularity, synchrony, rate histograms.

All functions take a run dataset (from :func:`engine.spiking.run`, a stream chunk, or
:func:`engine.store.open_run`), as an ``xr.Dataset`` or an :class:`engine.chunk.Chunk`, and an
optional analysis window ``(t_start, t_stop]`` in ms.

- Rate: spikes / (neurons x window) per population, in Hz.
- ISI CV: std/mean of each neuron's inter-spike intervals (neurons with >= 3 spikes), averaged
  over neurons: ~1 for Poisson-like (irregular) firing, << 1 for regular firing.
- Synchrony: Golomb's chi (Golomb 2007, Scholarpedia "Neuronal synchrony measures") on spike
  counts in bins: chi^2 = Var_t(mean_i n_i(t)) / mean_i Var_t(n_i(t)), between ~1/sqrt(N)
  (asynchronous) and 1 (fully synchronous). Also the Fano factor of the population count.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "neuron_cv_isi",
    "window",
    "population_rates",
    "neuron_rates",
    "cv_isi",
    "synchrony",
    "oscillation",
    "rate_histogram",
    "summary",
]


def window(ds: xr.Dataset, t_start: float = 0.0, t_stop: float | None = None) -> tuple[float, float]:
    """The analysis window in ms, clipped to the time the dataset covers."""
    end = float(ds["chunk_end"].values.max()) if "chunk_end" in ds and ds.sizes.get("chunk", 0) else 0.0
    stop = end if t_stop is None else min(t_stop, end)
    return float(t_start), float(stop)


def _spikes(ds: xr.Dataset, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(ds["spike_time"].values)
    i = np.asarray(ds["spike_neuron"].values)
    keep = (t > t0) & (t <= t1)
    return t[keep], i[keep]


def _pop_codes(ds: xr.Dataset) -> tuple[np.ndarray, list[str]]:
    labels = np.asarray(ds["population"].values).astype(str)
    names = [str(p) for p in ds["pop"].values] if "pop" in ds else sorted(set(labels))
    codes = (
        np.searchsorted(np.array(names), labels)
        if names == sorted(names)
        else np.array([names.index(x) for x in labels])
    )
    return codes, names


def neuron_rates(ds: xr.Dataset, t_start: float = 0.0, t_stop: float | None = None) -> np.ndarray:
    """Firing rate of every neuron in Hz over the window."""
    t0, t1 = window(ds, t_start, t_stop)
    _, i = _spikes(ds, t0, t1)
    n = ds.sizes["neuron"]
    span = max(t1 - t0, 1e-12) * 1e-3
    return np.bincount(i, minlength=n) / span


def population_rates(ds: xr.Dataset, t_start: float = 0.0, t_stop: float | None = None) -> dict[str, float]:
    """Mean rate of each population in Hz."""
    rates = neuron_rates(ds, t_start, t_stop)
    codes, names = _pop_codes(ds)
    return {
        name: float(rates[codes == k].mean()) if (codes == k).any() else float("nan") for k, name in enumerate(names)
    }


def neuron_cv_isi(ds: xr.Dataset, t_start: float = 0.0, t_stop: float | None = None, min_spikes: int = 3) -> np.ndarray:
    """ISI coefficient of variation of every neuron (NaN with fewer than ``min_spikes`` spikes)."""
    t0, t1 = window(ds, t_start, t_stop)
    t, i = _spikes(ds, t0, t1)
    order = np.lexsort((t, i))
    t, i = t[order], i[order]
    isi = np.diff(t)
    same = i[1:] == i[:-1]
    isi, owner = isi[same], i[1:][same]
    n = ds.sizes["neuron"]
    count = np.bincount(owner, minlength=n).astype(float)
    s1 = np.bincount(owner, isi, minlength=n)
    s2 = np.bincount(owner, isi * isi, minlength=n)
    ok = count >= max(2, min_spikes - 1)
    mean = np.where(ok, s1 / np.maximum(count, 1), np.nan)
    var = np.where(ok, s2 / np.maximum(count, 1) - mean**2, np.nan)
    return np.sqrt(np.maximum(var, 0)) / mean


def cv_isi(ds: xr.Dataset, t_start: float = 0.0, t_stop: float | None = None, min_spikes: int = 3) -> dict[str, float]:
    """Mean ISI coefficient of variation per population and over all neurons (``"all"``)."""
    cv = neuron_cv_isi(ds, t_start, t_stop, min_spikes)
    codes, names = _pop_codes(ds)
    out = {name: _nanmean(cv[codes == k]) for k, name in enumerate(names)}
    out["all"] = _nanmean(cv)
    return out


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def synchrony(
    ds: xr.Dataset, bin_ms: float = 1.0, t_start: float = 0.0, t_stop: float | None = None
) -> dict[str, float]:
    """Golomb's chi and the Fano factor of the population spike count, in bins of ``bin_ms``."""
    t0, t1 = window(ds, t_start, t_stop)
    n_bins = int((t1 - t0) // bin_ms)
    n = ds.sizes["neuron"]
    if n_bins < 2:
        return {"chi": float("nan"), "fano": float("nan")}
    t, i = _spikes(ds, t0, t0 + n_bins * bin_ms)
    b = np.minimum(((t - t0) // bin_ms).astype(np.int64), n_bins - 1)
    pop = np.bincount(b, minlength=n_bins).astype(float)
    var_pop_mean = pop.var() / n**2
    # per-neuron variance from counts per (neuron, bin): E[n^2] - E[n]^2
    _, per_cell_bin = np.unique(i.astype(np.int64) * n_bins + b, return_counts=True)
    sum_sq = float((per_cell_bin.astype(float) ** 2).sum())
    mean_sq = sum_sq / (n * n_bins)
    counts = np.bincount(i, minlength=n) / n_bins
    mean_var = mean_sq - np.mean(counts**2)
    chi = math.sqrt(var_pop_mean / mean_var) if mean_var > 0 else float("nan")
    fano = float(pop.var() / pop.mean()) if pop.mean() > 0 else float("nan")
    return {"chi": float(chi), "fano": fano}


def oscillation(
    ds: xr.Dataset, t_start: float = 0.0, t_stop: float | None = None, min_hz: float = 5.0
) -> dict[str, float]:
    """Dominant frequency of the whole-network rate (its power spectrum's peak above ``min_hz``).

    ``peak_hz``: the frequency; ``peak_share``: its share of the spectral power above ``min_hz``
    (large for a clean global oscillation, small for stationary activity).
    """
    t0, t1 = window(ds, t_start, t_stop)
    times = np.asarray(ds["time"].values)
    keep = (times > t0) & (times <= t1)
    if keep.sum() < 8:
        return {"peak_hz": float("nan"), "peak_share": float("nan")}
    labels = np.asarray(ds["population"].values)
    weights = np.array([float((labels == p).sum()) for p in ds["pop"].values])
    total = (np.asarray(ds["rate"].values)[:, keep] * weights[:, None]).sum(0) / weights.sum()
    step_s = float(np.median(np.diff(times))) * 1e-3
    freqs = np.fft.rfftfreq(total.size, step_s)
    power = np.abs(np.fft.rfft(total - total.mean())) ** 2
    band = freqs > min_hz
    if not band.any() or power[band].sum() == 0:
        return {"peak_hz": float("nan"), "peak_share": float("nan")}
    k = np.argmax(power[band])
    return {"peak_hz": float(freqs[band][k]), "peak_share": float(power[band][k] / power[band].sum())}


def rate_histogram(
    ds: xr.Dataset, bins: int | np.ndarray = 30, t_start: float = 0.0, t_stop: float | None = None
) -> xr.Dataset:
    """Histogram of single-neuron rates per population (``count(pop, rate_bin)``)."""
    import xarray as xr

    rates = neuron_rates(ds, t_start, t_stop)
    edges = np.histogram_bin_edges(rates, bins=bins)
    codes, names = _pop_codes(ds)
    counts = np.stack([np.histogram(rates[codes == k], bins=edges)[0] for k in range(len(names))])
    centers = 0.5 * (edges[1:] + edges[:-1])
    return xr.Dataset(
        {"count": (("pop", "rate_bin"), counts, {"long_name": "neurons", "units": ""})},
        coords={
            "pop": ("pop", names, {"long_name": "population", "units": ""}),
            "rate_bin": ("rate_bin", centers, {"long_name": "firing rate", "units": "Hz"}),
            "rate_edge": ("rate_edge", edges, {"long_name": "bin edge", "units": "Hz"}),
        },
    )


def summary(ds: xr.Dataset, t_start: float = 0.0, t_stop: float | None = None) -> dict:
    """The run's summary: what the CLI prints and ``dynascope info`` reports."""
    cfg = json.loads(ds.attrs.get("config", "{}"))
    t0, t1 = window(ds, t_start, t_stop)
    sync = synchrony(ds, t_start=t0, t_stop=t1)
    spike_time = np.asarray(ds["spike_time"].values)
    return {
        "engine": ds.attrs.get("engine", "spiking"),
        "model": cfg.get("model"),
        "regime": cfg.get("regime") or None,
        "seed": ds.attrs.get("seed"),
        "n_neurons": int(ds.sizes["neuron"]),
        "n_synapses": int(ds.attrs.get("n_synapses", 0)),
        "simulated_ms": t1,
        "window_ms": [t0, t1],
        "rate_hz": population_rates(ds, t0, t1),
        "spikes": int(((spike_time > t0) & (spike_time <= t1)).sum()),
        "cv_isi": cv_isi(ds, t0, t1),
        "synchrony": sync["chi"],
        "fano": sync["fano"],
        "sim_seconds": float(np.sum(ds["sim_seconds"].values)) if "sim_seconds" in ds else float("nan"),
        "chunks": int(ds.sizes.get("chunk", 0)),
        "status": ds.attrs.get("run_status", "complete"),
    }
