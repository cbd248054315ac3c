"""Directions of effect of Huang et al. at laptop scale, on converged networks only.

Each sweep trains a batched ensemble per condition on Dask (two worker processes) and measures
degeneracy over the converged networks. The spread is across networks: each network's mean
distance to the others. A direction counts when the difference of the condition means exceeds
twice its standard error.

Measured (README, "RNN solution degeneracy"): flip-flop 1 -> 3 channels at width 64 raises
weight degeneracy as in the paper, but raises dynamics (DSA) degeneracy where the paper reports
a fall; width 32 -> 128 lowers weight degeneracy as in the paper, but again raises DSA. The DSA
directions held for every delay/rank setting tried. The width test uses 1-bit flip-flop to keep
the suite fast; 3-bit flip-flop gives the same directions (README).
"""

import numpy as np
import pytest
import xarray as xr

from engine.rnn.sweep import SweepSpec, network_means, run_sweep

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _sweep(tmp_path_factory, **spec) -> xr.Dataset:
    path = tmp_path_factory.mktemp("sweep") / "sweep.zarr"
    run_sweep(SweepSpec(task="flipflop", **spec), path, workers=2)
    return xr.open_zarr(path, consolidated=False).load()


def _levels(ds: xr.Dataset, i: int) -> dict[str, np.ndarray]:
    conv = ds["converged"].values[i]
    return {"dynamics": network_means(ds["dsa"].values[i], conv), "weights": network_means(ds["pif"].values[i], conv)}


def _z(low: np.ndarray, high: np.ndarray) -> float:
    """(mean(high) - mean(low)) / its standard error."""
    se = np.sqrt(low.var(ddof=1) / low.size + high.var(ddof=1) / high.size)
    return float((high.mean() - low.mean()) / se)


@pytest.fixture(scope="module")
def channels(tmp_path_factory):
    return _sweep(tmp_path_factory, knob="channels", values=(1, 3), seeds=SEEDS, hidden=64)


@pytest.fixture(scope="module")
def width(tmp_path_factory):
    return _sweep(tmp_path_factory, knob="hidden", values=(32, 128), seeds=SEEDS, task_options={"channels": 1})


SEEDS = 6


def test_harder_task_raises_weight_degeneracy_and_with_it_dsa(channels):
    assert (channels["n_converged"].values >= SEEDS - 1).all(), "too few networks reached the threshold"
    one, three = _levels(channels, 0), _levels(channels, 1)
    assert _z(one["weights"], three["weights"]) > 2  # the paper's direction: weights more degenerate
    # The paper reports lower DSA degeneracy for harder tasks; at this scale we measure the
    # opposite, clearly (README). The test pins the measurement so a change is noticed.
    assert _z(one["dynamics"], three["dynamics"]) > 2


def test_wider_networks_have_less_degenerate_weights_and_more_degenerate_dsa(width):
    assert (width["n_converged"].values >= SEEDS - 1).all(), "too few networks reached the threshold"
    narrow, wide = _levels(width, 0), _levels(width, 1)
    assert _z(wide["weights"], narrow["weights"]) > 2  # the paper's direction
    # The paper reports lower DSA degeneracy for wider networks; we measure higher (README).
    assert _z(narrow["dynamics"], wide["dynamics"]) > 2
