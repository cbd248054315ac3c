"""Emergence-law and logistic fits against synthetic curves with known parameters.

Tolerances come from the spread of the fitted values over 40 noise seeds on the same curves
(standard deviations quoted beside each check); every bound is about four of them.
"""

import numpy as np
import pytest
from scipy.special import lambertw

from engine.emergence.fits import (
    LAW_KINDS,
    LAW_PARAMS,
    MIN_POINTS_LAW,
    MIN_POINTS_LOGISTIC,
    LawFit,
    LogisticFit,
    emergence_law,
    fit_emergence_law,
    fit_logistic,
    logistic,
)

STEPS = np.linspace(25.0, 2000.0, 80)  # a probe every 25 steps
PEAK = {"A": 10.0, "lam": 0.1, "gamma": 0.02, "t0": 1.0, "K": 5.0}  # early peak then decay
CLIMB = {"A": 3.0, "lam": 0.0, "gamma": 0.01, "t0": 1.0, "K": 2.0}  # pure log climb
NOISE = 0.1


def noisy(params: dict, seed: int, t: np.ndarray = STEPS) -> np.ndarray:
    return emergence_law(t, **params) + np.random.default_rng(seed).normal(0.0, NOISE, t.size)


def true_peak_step(p: dict) -> float:
    x_star = float(np.exp(lambertw(1.0 / p["lam"]).real))
    return (x_star - p["t0"]) / p["gamma"]


# -- the law itself ---------------------------------------------------------------------------


def test_law_is_a_log_climb_at_zero_decay():
    t = np.array([0.0, 10.0, 1000.0])
    np.testing.assert_allclose(emergence_law(t, 2.0, 0.0, 0.1, 3.0, -1.0), 2.0 * np.log(0.1 * t + 3.0) - 1.0)


def test_law_peaks_where_lambda_x_log_x_is_one():
    t = np.linspace(0.0, 2000.0, 200001)
    f = emergence_law(t, **PEAK)
    assert t[np.argmax(f)] == pytest.approx(true_peak_step(PEAK), abs=0.02)
    assert f[-1] < f.max() - 5.0  # it decays back towards K


# -- five-parameter fit: recovery -------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_early_peak_is_recovered(seed):
    fit = fit_emergence_law(STEPS, noisy(PEAK, seed))
    assert fit.kind == "early peak" and fit.n == STEPS.size and fit.ok
    assert fit.r2 > 0.98
    # spread over 40 seeds: lam 0.011, K 0.050, peak step 1.8 steps (probe spacing 25)
    assert fit.params["lam"] == pytest.approx(PEAK["lam"], abs=0.05)
    assert fit.params["K"] == pytest.approx(PEAK["K"], abs=0.2)
    assert fit.peak_step == pytest.approx(true_peak_step(PEAK), abs=8.0)
    # every parameter is identifiable here, and the standard errors are of the size of the scatter
    for name in LAW_PARAMS:
        assert np.isfinite(fit.stderr[name]) and fit.stderr[name] > 0
        assert abs(fit.params[name] - PEAK[name]) < 5 * fit.stderr[name]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_increase_is_recovered(seed):
    fit = fit_emergence_law(STEPS, noisy(CLIMB, seed))
    assert fit.kind == "log increase" and np.isnan(fit.peak_step)
    assert fit.r2 > 0.98
    assert fit.params["lam"] == 0.0  # the decay does not lower the residual significantly
    # at lam = 0 only A, the bend t0/gamma and f(0) are determined; the representative with
    # t0 = 1 has K = f(0). Spread over 40 seeds: A 0.041, bend 6.7 steps, K 0.092
    assert fit.params["t0"] == 1.0
    assert fit.params["A"] == pytest.approx(CLIMB["A"], abs=0.2)
    assert fit.params["t0"] / fit.params["gamma"] == pytest.approx(CLIMB["t0"] / CLIMB["gamma"], abs=27.0)
    assert fit.params["K"] == pytest.approx(CLIMB["K"], abs=0.4)


def test_log_increase_reports_the_degenerate_parameters_as_unidentifiable():
    fit = fit_emergence_law(STEPS, noisy(CLIMB, 0))
    assert np.isfinite(fit.stderr["A"]) and np.isfinite(fit.stderr["lam"])
    assert all(np.isnan(fit.stderr[name]) for name in ("gamma", "t0", "K"))


def test_falling_curve_and_dip_are_classified():
    falling = {**CLIMB, "A": -3.0}
    assert fit_emergence_law(STEPS, noisy(falling, 0)).kind == "log decrease"
    dip = {**PEAK, "A": -10.0}
    fit = fit_emergence_law(STEPS, noisy(dip, 0))
    assert fit.kind == "early dip" and fit.peak_step == pytest.approx(true_peak_step(dip), abs=8.0)


def test_fit_works_on_uneven_checkpoints_and_large_values():
    t = np.unique(np.round(np.geomspace(1.0, 143000.0, 60)))  # log-spaced checkpoints, Pythia-like
    p = {"A": 400.0, "lam": 0.02, "gamma": 0.002, "t0": 2.0, "K": 80.0}
    y = emergence_law(t, **p) * (1.0 + np.random.default_rng(4).normal(0.0, 0.01, t.size))
    fit = fit_emergence_law(t, y)
    assert fit.r2 > 0.98 and fit.kind == "early peak"
    assert fit.peak_step == pytest.approx(true_peak_step(p), rel=0.1)


def test_predict_and_to_dict_agree_with_params():
    fit = fit_emergence_law(STEPS, noisy(PEAK, 0))
    np.testing.assert_array_equal(fit.predict(STEPS), emergence_law(STEPS, **fit.params))
    d = fit.to_dict()
    assert d["params"] == fit.params and d["kind"] == fit.kind and d["r2"] == fit.r2 and d["message"] == ""


# -- logistic ---------------------------------------------------------------------------------

LOGI_STEPS = np.arange(25.0, 3001.0, 25.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_logistic_recovers_a_sharp_step(seed):
    lo, hi, mid, w = 0.1, 0.9, 1200.0, 20.0
    y = logistic(LOGI_STEPS, lo, hi, mid, w) + np.random.default_rng(seed).normal(0.0, 0.03, LOGI_STEPS.size)
    fit = fit_logistic(LOGI_STEPS, y)
    assert fit.r2 > 0.98 and fit.abrupt
    # spread over 40 seeds: midpoint 2.4, width 1.5, onset 4.4, levels 0.004
    assert fit.midpoint == pytest.approx(mid, abs=10.0)
    assert fit.width == pytest.approx(w, abs=6.0)
    assert fit.onset == pytest.approx(mid - w * np.log(9.0), abs=18.0)
    assert fit.onset == pytest.approx(fit.midpoint - fit.width * np.log(9.0))
    assert fit.sharpness == pytest.approx(1.0 / fit.width)
    assert (fit.lo, fit.hi) == (pytest.approx(lo, abs=0.02), pytest.approx(hi, abs=0.02))
    assert abs(fit.midpoint - mid) < 5 * fit.stderr["midpoint"]


def test_logistic_fits_a_falling_step():
    y = logistic(LOGI_STEPS, 2.0, 0.5, 800.0, 40.0) + np.random.default_rng(0).normal(0.0, 0.05, LOGI_STEPS.size)
    fit = fit_logistic(LOGI_STEPS, y)
    assert fit.abrupt and fit.hi < fit.lo
    assert fit.onset == pytest.approx(800.0 - 40.0 * np.log(9.0), abs=25.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_slow_linear_ramp_is_not_abrupt(seed):
    y = 0.1 + 0.8 * LOGI_STEPS / 3000.0 + np.random.default_rng(seed).normal(0.0, 0.03, LOGI_STEPS.size)
    fit = fit_logistic(LOGI_STEPS, y)
    assert fit.ok and not fit.abrupt
    assert 2 * fit.width * np.log(9.0) > 0.2 * (LOGI_STEPS[-1] - LOGI_STEPS[0])


@pytest.mark.parametrize(("share", "abrupt"), [(0.1, True), (0.4, False)])
def test_a_linear_rise_is_abrupt_only_when_short(share, abrupt):
    """A straight rise over a share of the run has a 10–90 % width of about 0.9 times that share."""
    span = LOGI_STEPS[-1] - LOGI_STEPS[0]
    y = np.interp(LOGI_STEPS, [900.0, 900.0 + share * span], [0.1, 0.9])
    y = y + np.random.default_rng(0).normal(0.0, 0.03, LOGI_STEPS.size)
    fit = fit_logistic(LOGI_STEPS, y)
    assert fit.abrupt == abrupt
    assert 2 * fit.width * np.log(9.0) / span == pytest.approx(0.9 * share, rel=0.15)


def test_step_outside_the_observed_range_or_under_the_noise_is_not_abrupt():
    rng = np.random.default_rng(0)
    not_yet = logistic(LOGI_STEPS, 0.1, 0.9, 3200.0, 20.0) + rng.normal(0.0, 0.03, LOGI_STEPS.size)
    assert not fit_logistic(LOGI_STEPS, not_yet).abrupt
    tiny = logistic(LOGI_STEPS, 0.1, 0.11, 1200.0, 20.0) + rng.normal(0.0, 0.03, LOGI_STEPS.size)
    assert not fit_logistic(LOGI_STEPS, tiny).abrupt


# -- short, flat and NaN-containing curves ----------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, MIN_POINTS_LAW - 1])
def test_law_with_too_few_points_reports_insufficient_data(n):
    fit = fit_emergence_law(STEPS[:n], noisy(PEAK, 0)[:n])
    assert isinstance(fit, LawFit) and fit.kind == "insufficient data" and not fit.ok
    assert f"at least {MIN_POINTS_LAW}" in fit.message and fit.n == n
    assert np.isnan(fit.r2) and np.isnan(fit.peak_step)
    assert all(np.isnan(v) for v in fit.params.values())
    assert np.isnan(fit.predict(STEPS)).all() and fit.to_dict()["message"] == fit.message


@pytest.mark.parametrize("n", [0, MIN_POINTS_LOGISTIC - 1])
def test_logistic_with_too_few_points_reports_insufficient_data(n):
    fit = fit_logistic(LOGI_STEPS[:n], np.linspace(0, 1, LOGI_STEPS.size)[:n])
    assert isinstance(fit, LogisticFit) and not fit.ok and not fit.abrupt
    assert f"at least {MIN_POINTS_LOGISTIC}" in fit.message
    assert np.isnan(fit.onset) and np.isnan(fit.r2) and np.isnan(fit.predict(LOGI_STEPS)).all()


def test_repeated_steps_do_not_count_as_distinct():
    t = np.repeat([100.0, 200.0, 300.0], 4)
    y = np.tile([1.0, 2.0, 3.0, 4.0], 3)
    assert "distinct steps" in fit_emergence_law(t, y).message
    assert "distinct steps" in fit_logistic(t, y).message


@pytest.mark.parametrize("value", [0.0, 7.5, -3.0])
def test_constant_curve_reports_insufficient_data(value):
    y = np.full(STEPS.size, value)
    law, logi = fit_emergence_law(STEPS, y), fit_logistic(STEPS, y)
    assert law.kind == "insufficient data" and "constant" in law.message
    assert "constant" in logi.message and not logi.abrupt


def test_nan_points_are_dropped():
    y = noisy(PEAK, 0)
    t_nan, y_nan = STEPS.copy(), y.copy()
    y_nan[[3, 40, 79]] = np.nan
    t_nan[10] = np.nan
    y_nan[20] = np.inf
    keep = np.isfinite(t_nan) & np.isfinite(y_nan)
    fit = fit_emergence_law(t_nan, y_nan)
    assert fit.n == keep.sum() == STEPS.size - 5
    assert fit.to_dict() == fit_emergence_law(STEPS[keep], y[keep]).to_dict()
    assert fit_logistic(t_nan, y_nan).to_dict() == fit_logistic(STEPS[keep], y[keep]).to_dict()
    all_nan = fit_emergence_law(STEPS, np.full(STEPS.size, np.nan))
    assert all_nan.kind == "insufficient data" and all_nan.n == 0


def test_every_prefix_of_a_live_curve_fits_without_error():
    """A dashboard refits after every probe: no prefix may raise or produce a non-finite fit."""
    y = noisy(PEAK, 3)
    y_acc = np.round(logistic(STEPS, 0.0, 1.0, 900.0, 30.0))  # a 0/1 accuracy, quantised
    for n in range(0, STEPS.size + 1, 5):
        law = fit_emergence_law(STEPS[:n], y[:n])
        assert law.kind in LAW_KINDS
        assert law.ok == (n >= MIN_POINTS_LAW)
        if law.ok:
            assert np.isfinite(law.r2) and np.isfinite(law.predict(STEPS)).all()
        logi = fit_logistic(STEPS[:n], y_acc[:n])
        assert logi.ok or logi.message


def test_caller_errors_raise():
    with pytest.raises(ValueError, match="differ in length"):
        fit_emergence_law(STEPS, STEPS[:-1])
    with pytest.raises(ValueError, match="differ in length"):
        fit_logistic(STEPS, STEPS[:-1])
    with pytest.raises(ValueError, match=">= 0"):
        fit_emergence_law(STEPS - 100.0, noisy(PEAK, 0))


# -- determinism ------------------------------------------------------------------------------


def test_same_input_gives_the_same_fit():
    y = noisy(PEAK, 5)
    assert repr(fit_emergence_law(STEPS, y)) == repr(fit_emergence_law(STEPS, y))
    order = np.random.default_rng(0).permutation(STEPS.size)
    assert repr(fit_emergence_law(STEPS[order], y[order])) == repr(fit_emergence_law(STEPS, y))
    y = noisy(CLIMB, 5)
    assert repr(fit_emergence_law(STEPS, y)) == repr(fit_emergence_law(STEPS, y))
    y = logistic(LOGI_STEPS, 0.1, 0.9, 1200.0, 20.0) + np.random.default_rng(0).normal(0.0, 0.03, LOGI_STEPS.size)
    assert repr(fit_logistic(LOGI_STEPS, y)) == repr(fit_logistic(LOGI_STEPS, y))
