"""Known results: COBA rates of the published variant, Brunel (2000) regimes A-D.

Brunel (2000), figure 8, describes its panels as: A (g=3, eta=2) almost fully synchronised,
regular firing at high rate; B (g=6, eta=4) fast oscillation of the global activity, irregular
firing; C (g=5, eta=2) stationary global activity, irregular firing; D (g=4.5, eta=0.9) slow
oscillation of the global activity, irregular firing at very low rate. Theory (p. 196):
B 55.8 Hz, C 38 Hz, D 6.5 Hz.
"""

import numpy as np
import pytest

from engine.spiking import SpikingConfig, cv_isi, oscillation, population_rates, run, synchrony

BRIAN2_COBA = {"E": 21.35, "I": 21.68}  # Brian2 2.9, N = 4000, speed-comparison variant


def test_coba_rates_match_the_published_variant():
    """Mean over seeds within 10% of Brian2's published rates (single seeds spread ~±10%)."""
    rates = [population_rates(run(SpikingConfig(model="coba", seed=s))) for s in (1, 2, 3, 4)]
    for pop, ref in BRIAN2_COBA.items():
        mean = np.mean([r[pop] for r in rates])
        assert abs(mean / ref - 1) < 0.10, (pop, mean)


@pytest.fixture(scope="module")
def brunel():
    """The four panels at the paper's size (N = 12,500), 0.5 s each, first 100 ms skipped."""
    out = {}
    for regime in "ABCD":
        ds = run(SpikingConfig(model="brunel", regime=regime, duration=0.5, seed=1, record_v=0))
        out[regime] = {
            "rate": np.mean(list(population_rates(ds, 100).values())),
            "cv": cv_isi(ds, 100)["all"],
            "chi_1ms": synchrony(ds, 1.0, 100)["chi"],
            "chi_5ms": synchrony(ds, 5.0, 100)["chi"],
            **oscillation(ds, 100),
        }
    return out


@pytest.mark.slow
def test_brunel_rates_near_theory(brunel):
    assert brunel["A"]["rate"] > 200  # near saturation 1 / t_ref
    assert brunel["B"]["rate"] == pytest.approx(55.8, rel=0.15)
    assert brunel["C"]["rate"] == pytest.approx(38.0, rel=0.15)
    assert brunel["D"]["rate"] == pytest.approx(6.5, rel=0.35)


@pytest.mark.slow
def test_brunel_A_is_synchronous_regular(brunel):
    a = brunel["A"]
    assert a["cv"] < 0.1
    for other in "BCD":
        assert a["cv"] < brunel[other]["cv"]
        assert a["chi_1ms"] > brunel[other]["chi_1ms"]


@pytest.mark.slow
def test_brunel_B_C_D_fire_irregularly(brunel):
    for regime in "BCD":
        assert brunel[regime]["cv"] > 0.3, regime
    assert brunel["B"]["cv"] > 0.7  # close to Poisson


@pytest.mark.slow
def test_brunel_C_is_the_stationary_asynchronous_state(brunel):
    """C's global activity is the least synchronous at the time scale of each oscillation."""
    assert brunel["C"]["chi_1ms"] < brunel["B"]["chi_1ms"]
    assert brunel["C"]["chi_5ms"] < brunel["D"]["chi_5ms"]


@pytest.mark.slow
def test_brunel_B_oscillates_fast_and_D_slowly(brunel):
    assert brunel["B"]["peak_hz"] > 100
    assert brunel["D"]["peak_hz"] < 50
    assert brunel["B"]["peak_share"] > brunel["C"]["peak_share"]
