"""Analysis measures on hand-built spike trains with known answers."""

import numpy as np
import pytest

from engine.spiking.analysis import cv_isi, population_rates, rate_histogram, synchrony


def test_rates_count_spikes_per_population(spike_dataset):
    # E: neurons 0-1 with 10 and 20 spikes; I: neuron 2 with 5 spikes; 1 s window
    t = np.concatenate([np.linspace(1, 999, 10), np.linspace(1, 999, 20), np.linspace(1, 999, 5)])
    i = np.repeat([0, 1, 2], [10, 20, 5])
    ds = spike_dataset(t, i, n_exc=2, n_inh=1, duration_ms=1000)
    assert population_rates(ds) == {"E": pytest.approx(15.0), "I": pytest.approx(5.0)}
    assert population_rates(ds, t_start=500)["E"] == pytest.approx(15.0, rel=0.15)


def test_cv_is_zero_for_regular_and_one_for_poisson(spike_dataset):
    rng = np.random.default_rng(0)
    regular = np.arange(1, 10_000, 10.0)
    poisson = np.cumsum(rng.exponential(10.0, 5000))
    poisson = poisson[poisson < 10_000]
    ds = spike_dataset(
        np.concatenate([regular, poisson]),
        np.repeat([0, 1], [regular.size, poisson.size]),
        n_exc=1,
        n_inh=1,
        duration_ms=10_000,
    )
    cv = cv_isi(ds)
    assert cv["E"] == pytest.approx(0.0, abs=1e-9)
    assert cv["I"] == pytest.approx(1.0, abs=0.05)


def test_synchrony_is_one_for_identical_trains_and_small_for_independent(spike_dataset):
    rng = np.random.default_rng(1)
    n, dur = 200, 5000.0
    train = np.sort(rng.uniform(0, dur, 100))
    same = spike_dataset(np.tile(train, n), np.repeat(np.arange(n), train.size), n_exc=n, duration_ms=dur)
    t = rng.uniform(0, dur, 100 * n)
    indep = spike_dataset(t, np.repeat(np.arange(n), 100), n_exc=n, duration_ms=dur)
    assert synchrony(same)["chi"] == pytest.approx(1.0, abs=1e-6)
    chi = synchrony(indep)["chi"]
    assert chi < 3 / np.sqrt(n)  # ~1/sqrt(N) for independent trains
    assert synchrony(indep)["fano"] == pytest.approx(1.0, abs=0.15)  # Poisson population count


def test_rate_histogram_counts_every_neuron(spike_dataset):
    ds = spike_dataset([1, 2, 3, 4], [0, 0, 1, 2], n_exc=3, n_inh=1, duration_ms=1000)
    hist = rate_histogram(ds, bins=4)
    assert int(hist["count"].sum()) == 4
    assert hist["rate_bin"].attrs["units"] == "Hz"
