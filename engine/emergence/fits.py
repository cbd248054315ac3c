"""Curve fits for emergence over training: the five-parameter emergence law and a logistic step.

Emergence law (Gallego-Feliciano et al. 2025, "Hidden dynamics of massive activations in
transformer training", arXiv 2508.03616, eq. 9), fitted to a measure ``y`` at training step ``t``:

    f(t) = A · exp(−λ · x_t) · log(x_t) + K,     x_t = γ · t + t0

- ``A`` amplitude (units of ``y``; its sign says whether the curve rises or falls),
- ``lam`` λ ≥ 0 decay (per unit of x, dimensionless): λ = 0 is a pure logarithmic climb, λ > 0
  an extremum at x* with λ · x* · log x* = 1, i.e. x* = exp(W(1/λ)) (W the Lambert function),
  followed by a decay back to K,
- ``gamma`` γ > 0 time scale (per step), ``t0`` offset, ``K`` baseline (units of ``y``).

Here t0 ≥ 1 and steps t ≥ 0, so x_t ≥ 1 and log x_t ≥ 0 at every step: the law is defined
everywhere, f − K has the sign of A, and K is the level at x = 1 and the level the curve returns
to as x → ∞. For λ = 0 the bound loses nothing (a curve with t0 < 1 is the same as one with
t0 = 1 after rescaling γ and shifting K).

Identifiability. When λ = 0, log(γt + t0) = log t0 + log(1 + (γ/t0)·t), so the direction
(γ, t0, K) → (cγ, c·t0, K − A·log c) leaves the curve unchanged: only A, the bend t0/γ (in steps)
and K + A·log t0 = f(0) are determined, not γ, t0 and K one by one. A fit that keeps λ = 0
(see below) reports the representative with t0 = 1, where K = f(0) and γ = 1/bend, but their
standard errors are NaN. Standard errors come from the Gauss–Newton covariance s²·(JᵀJ)⁻¹ (J the
Jacobian of the fitted curve with respect to the parameters in the caller's units, s² the
residual variance); a parameter with a component along a numerically null direction of J gets a
NaN standard error, a nearly degenerate one (λ small but positive) a large one. A parameter that
ends on a bound (λ = 0, t0 = 1) keeps the standard error of the unconstrained linearisation.

Model choice for λ. The law is fitted twice: in full, and with λ = 0 (three effective
parameters: A, γ/t0, f(0)). The λ = 0 fit is reported unless the full one lowers the residual sum
of squares significantly (F-test of the nested models, level ``LAMBDA_TEST_LEVEL`` = 1 %), so a
logarithmic climb is not reported as a tiny, meaningless decay.

Kind of an emergence-law fit, read off the fitted curve over the observed steps [t_min, t_max]:

- ``"early peak"``: A > 0, λ > 0, the maximum t* = (x* − t0)/γ lies strictly inside the
  observed range, and the curve then falls, from f(t*) to f(t_max), by at least
  ``PEAK_MIN_FALL`` (10 %) of its range over the observed steps and by at least
  ``PEAK_MIN_NOISE`` (2) residual RMS;
- ``"early dip"``: the mirror image (A < 0: an interior minimum followed by a recovery);
- ``"log increase"`` / ``"log decrease"``: otherwise, by the sign of f(t_max) − f(t_min);
- ``"insufficient data"``: fewer than ``MIN_POINTS_LAW`` (6) finite points, fewer than 5
  distinct steps, or a constant curve. No fit is attempted; parameters, R² and ``peak_step`` are
  NaN and ``message`` says why. Fits therefore never raise on short, flat or NaN-laden curves
  (a dashboard refits on every update); they raise ``ValueError`` only on caller errors
  (steps and values of different lengths, negative steps for the law).

Logistic step, for abrupt transitions (in-context accuracy, grokking test accuracy, induction
score):

    y = lo + (hi − lo) / (1 + exp(−(t − t_mid) / w)),   w > 0

- onset: the step where the curve first covers 10 % of the way from lo to hi,
  t_mid − w · ln 9 (the 90 % point is t_mid + w · ln 9, so the 10–90 % width is 2 · w · ln 9);
- sharpness: 1 / w (per step);
- ``abrupt``: the whole 10–90 % transition lies inside the observed steps, it is at most
  ``ABRUPT_MAX_WIDTH`` (20 %) of the observed range long, and the change |hi − lo| is at least
  ``ABRUPT_MIN_SNR`` (5) residual RMS. A slow ramp fails the width test (a straight rise has a
  10–90 % width of about 0.9 times its duration, so it counts as abrupt when it takes less than
  about a fifth of the observed range); a step that has not happened yet (or happened before the
  first probe) fails the inside test; a change buried in noise fails the size test.
- a fit with ``message`` set (everything NaN, ``abrupt`` false): fewer than
  ``MIN_POINTS_LOGISTIC`` (5) finite points, fewer than 4 distinct steps, or a constant curve.

Method. Both models are linear in two parameters (A·exp(−λ·t0) and K; hi − lo and lo) once the
others are fixed, so the fit eliminates those two in closed form (variable projection; Golub &
Pereyra 1973, with Kaufman's 1975 Jacobian) and searches the others, with the values
standardised and the time rescaled (t / t_max for the law, (t − t_min) / range for the
logistic). The search starts from the best local minima of the residual over a fixed grid
(deterministic, spanning decay rates from 0 to a fast early peak, time scales from a
near-linear to a sharply bent log, widths from 1/20 of the smallest step spacing to several
times the range), refines each with bounded least squares (``scipy.optimize.least_squares``)
and polishes the best. The law is searched in the well-conditioned coordinates
μ = λ·γ·t_max (decay over the observed steps), r = γ·t_max / t0 (bend of the log over the
observed steps) and log t0, where f − K = A·exp(−λ·t0) · exp(−μ·s) · (log t0 + log(1 + r·s)),
s = t / t_max; the bounds 0 ≤ μ ≤ 200, 0.5 ≤ r ≤ 10⁶ (10⁻³ ≤ r for λ = 0), 1 ≤ t0 ≤ 10⁴ keep
λ·t0 = μ / r ≤ 400, so A stays finite. A curve that decays faster than exp(−200·t / t_max)
(gone within the first probe or two) is outside the search. No randomness: the same input gives
the same output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import minimum_filter
from scipy.optimize import least_squares
from scipy.special import expit, lambertw
from scipy.stats import f as f_dist

__all__ = [
    "ABRUPT_MAX_WIDTH",
    "ABRUPT_MIN_SNR",
    "LAMBDA_TEST_LEVEL",
    "LAW_KINDS",
    "LAW_PARAMS",
    "LOGISTIC_PARAMS",
    "MIN_POINTS_LAW",
    "MIN_POINTS_LOGISTIC",
    "PEAK_MIN_FALL",
    "PEAK_MIN_NOISE",
    "LawFit",
    "LogisticFit",
    "emergence_law",
    "fit_emergence_law",
    "fit_logistic",
    "logistic",
]

LAW_PARAMS = ("A", "lam", "gamma", "t0", "K")
LOGISTIC_PARAMS = ("lo", "hi", "midpoint", "width")
LAW_KINDS = ("early peak", "early dip", "log increase", "log decrease", "insufficient data")
MIN_POINTS_LAW = 6  # five parameters and one degree of freedom
MIN_POINTS_LOGISTIC = 5  # four parameters and one degree of freedom
PEAK_MIN_FALL = 0.1  # fall after an interior peak, as a share of the fitted curve's range
PEAK_MIN_NOISE = 2.0  # ... and in units of the residual RMS
LAMBDA_TEST_LEVEL = 0.01  # a positive decay λ is kept only if it lowers the residual at this level
ABRUPT_MAX_WIDTH = 0.2  # 10–90 % width, as a share of the observed step range
ABRUPT_MIN_SNR = 5.0  # |hi − lo| in units of the residual RMS
LN9 = float(np.log(9.0))

# Search bounds of the law (coordinates in the module docstring).
_MU_MAX = 200.0
_R_BOUNDS = (0.5, 1e6)
_R_MIN_LOG = 1e-3  # lower bound of r for the λ = 0 fit (a nearly straight line)
_T0_MAX = 1e4
_NULL_RCOND = 1e-9  # singular value (of the column-normalised Jacobian) below which a direction is null
_NULL_LOADING = 1e-6  # a parameter with a larger component on a null direction is not identifiable
_FLAT_RTOL = 1e-9

Basis = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# -- models -----------------------------------------------------------------------------------


def emergence_law(t: Any, A: float, lam: float, gamma: float, t0: float, K: float) -> np.ndarray:
    """f(t) = A·exp(−λ·x)·log(x) + K with x = γ·t + t0 (NaN where x ≤ 0)."""
    t = np.asarray(t, dtype=float)
    x = gamma * t + t0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        # A·exp(−λ·x) = [A·exp(−λ·t0)]·exp(−λ·γ·t): the bracket stays finite when A is huge.
        out = A * np.exp(-lam * t0) * np.exp(-lam * gamma * t) * np.log(x) + K
    return np.where(x > 0, out, np.nan)


def logistic(t: Any, lo: float, hi: float, midpoint: float, width: float) -> np.ndarray:
    """lo + (hi − lo) / (1 + exp(−(t − midpoint) / width))."""
    t = np.asarray(t, dtype=float)
    return lo + (hi - lo) * expit((t - midpoint) / width)


# -- results ----------------------------------------------------------------------------------


def _nan_dict(names: tuple[str, ...]) -> dict[str, float]:
    return dict.fromkeys(names, float("nan"))


@dataclass(frozen=True)
class LawFit:
    """A fit of the emergence law; parameters in the caller's step units (module docstring)."""

    params: dict[str, float]  # A, lam, gamma (per step), t0, K
    stderr: dict[str, float]  # standard errors; NaN where not identifiable
    r2: float  # coefficient of determination over the points used
    kind: str  # one of LAW_KINDS
    peak_step: float  # step of the interior extremum of an "early peak" / "early dip", else NaN
    n: int  # finite points used
    message: str = ""  # why there is no fit ("" when there is one)
    rms: float = float("nan")  # residual RMS, sqrt(SSE / (n − 5))

    @property
    def ok(self) -> bool:
        return not self.message

    def predict(self, t: Any) -> np.ndarray:
        """The fitted curve at steps ``t`` (NaN everywhere without a fit)."""
        if not self.ok:
            return np.full(np.shape(t), np.nan)
        return emergence_law(t, **self.params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": "emergence law",
            "params": dict(self.params),
            "stderr": dict(self.stderr),
            "r2": self.r2,
            "rms": self.rms,
            "kind": self.kind,
            "peak_step": self.peak_step,
            "n": self.n,
            "message": self.message,
        }


@dataclass(frozen=True)
class LogisticFit:
    """A logistic-step fit (module docstring): levels, midpoint, width and derived onset."""

    lo: float  # level before the step
    hi: float  # level after the step
    midpoint: float  # step of the half-way point
    width: float  # w (steps); the 10–90 % width is 2·w·ln 9
    r2: float
    abrupt: bool
    n: int  # finite points used
    stderr: dict[str, float] = field(default_factory=dict)  # lo, hi, midpoint, width, onset, sharpness
    message: str = ""  # why there is no fit ("" when there is one)
    rms: float = float("nan")  # residual RMS, sqrt(SSE / (n − 4))

    @property
    def ok(self) -> bool:
        return not self.message

    @property
    def onset(self) -> float:
        """Step at 10 % of the way from lo to hi: midpoint − width·ln 9."""
        return self.midpoint - self.width * LN9

    @property
    def sharpness(self) -> float:
        """1 / width (per step)."""
        return 1.0 / self.width if self.width > 0 else float("nan")

    @property
    def params(self) -> dict[str, float]:
        return {"lo": self.lo, "hi": self.hi, "midpoint": self.midpoint, "width": self.width}

    def predict(self, t: Any) -> np.ndarray:
        """The fitted curve at steps ``t`` (NaN everywhere without a fit)."""
        if not self.ok:
            return np.full(np.shape(t), np.nan)
        return logistic(t, **self.params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": "logistic",
            **self.params,
            "onset": self.onset,
            "sharpness": self.sharpness,
            "stderr": dict(self.stderr),
            "r2": self.r2,
            "rms": self.rms,
            "abrupt": self.abrupt,
            "n": self.n,
            "message": self.message,
        }


# -- shared pieces ----------------------------------------------------------------------------


def _clean(t: Any, y: Any, min_points: int, min_steps: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Finite (t, y) pairs sorted by t, and "" or the reason there are too few to fit."""
    t = np.asarray(t, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if t.shape != y.shape:
        raise ValueError(f"steps and values differ in length: {t.size} steps, {y.size} values")
    keep = np.isfinite(t) & np.isfinite(y)
    t, y = t[keep], y[keep]
    order = np.argsort(t, kind="stable")
    t, y = t[order], y[order]
    if t.size < min_points:
        return t, y, f"too few points to fit: {t.size} finite, need at least {min_points}"
    steps = np.unique(t).size
    if steps < min_steps:
        return t, y, f"too few distinct steps to fit: {steps}, need at least {min_steps}"
    if np.ptp(y) <= _FLAT_RTOL * np.max(np.abs(y)):
        return t, y, f"constant curve (every value is {y[0]:.6g}): nothing to fit"
    return t, y, ""


def _project(phi: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of y on [phi, 1] along the last axis: slope, intercept and SSE.

    ``phi`` (..., n), ``y`` (n,) -> three arrays of shape (...). A (numerically) constant
    ``phi`` gets slope 0.
    """
    pm = phi.mean(-1, keepdims=True)
    pc = phi - pm  # (..., n)
    yc = y - y.mean()  # (n,)
    spp = (pc * pc).sum(-1)
    spy = (pc * yc).sum(-1)
    ok = np.isfinite(spp) & (spp > 1e-20 * ((phi * phi).sum(-1) + 1e-300))
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(ok, spy / np.where(ok, spp, 1.0), 0.0)
    sse = np.maximum(float(yc @ yc) - slope * spy, 0.0)
    return slope, y.mean() - slope * pm[..., 0], sse


class _Separable:
    """Residual b·φ(θ) + k − y and its Jacobian in θ, with b and k eliminated by least squares.

    ``basis(theta)`` returns φ (n,) and ∂φ/∂θ (p, n). The Jacobian is Kaufman's approximation
    of the variable-projection Jacobian, b·P⊥·∂φ/∂θ, with P⊥ the projection off span{φ, 1}.
    The last evaluation is cached: the solver asks for the residual and the Jacobian at the
    same point.
    """

    def __init__(self, basis: Basis, y: np.ndarray):
        self.basis, self.yc = basis, y - y.mean()
        self._key: bytes | None = None

    def _eval(self, theta: np.ndarray) -> None:
        key = np.asarray(theta, dtype=float).tobytes()
        if key == self._key:
            return
        phi, dphi = self.basis(theta)  # (n,), (p, n)
        pc = phi - phi.mean()
        spp = float(pc @ pc)
        if not np.isfinite(spp) or spp <= 1e-20 * (float(phi @ phi) + 1e-300):
            self._r, self._jac = -self.yc, np.zeros((phi.size, dphi.shape[0]))
        else:
            b = float(pc @ self.yc) / spp
            self._r = b * pc - self.yc  # b·φ + k − y with k = mean(y) − b·mean(φ)
            dc = dphi - dphi.mean(1, keepdims=True)  # (p, n)
            self._jac = b * (dc - np.outer(dc @ pc / spp, pc)).T  # (n, p)
        self._key = key

    def resid(self, theta: np.ndarray) -> np.ndarray:
        self._eval(theta)
        return self._r

    def jac(self, theta: np.ndarray) -> np.ndarray:
        self._eval(theta)
        return self._jac


def _grid_starts(grid: np.ndarray, sse: np.ndarray, starts: int) -> np.ndarray:
    """The ``starts`` best local minima of the SSE over a grid.

    ``grid`` (n1, ..., nk, k) parameter values, ``sse`` (n1, ..., nk) -> (starts, k). A grid point
    is a local minimum if no neighbour (in any of the 3^k − 1 directions) is lower.
    """
    local = sse <= minimum_filter(sse, size=3, mode="nearest")
    cand = np.flatnonzero(local.ravel())
    cand = cand[np.argsort(sse.ravel()[cand], kind="stable")][: max(starts, 1)]
    return grid.reshape(-1, grid.shape[-1])[cand]


def _refine(basis: Basis, y: np.ndarray, starts: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Bounded least squares from each start (loose tolerance), then the best one polished."""
    problem = _Separable(basis, y)

    def solve(x0: np.ndarray, tol: float, max_nfev: int):
        return least_squares(
            problem.resid,
            np.clip(x0, lower, upper),
            jac=problem.jac,
            bounds=(lower, upper),
            method="trf",
            x_scale="jac",
            ftol=tol,
            xtol=tol,
            gtol=tol,
            max_nfev=max_nfev,
        )

    best, best_cost = np.clip(starts[0], lower, upper), np.inf
    for x0 in starts:
        sol = solve(x0, 1e-5, 60)
        if np.isfinite(sol.cost) and sol.cost < best_cost:
            best, best_cost = sol.x, sol.cost
    sol = solve(best, 1e-10, 60)
    return sol.x if np.isfinite(sol.cost) and sol.cost <= best_cost else best


def _covariance(jac: np.ndarray, sse: float) -> np.ndarray:
    """Gauss–Newton covariance s²·(JᵀJ)⁻¹ with NaN rows and columns for non-identifiable parameters.

    ``jac`` (n, p). Columns are normalised before the SVD, so parameters of very different scales
    (γ per step next to K) are compared fairly; a parameter loading on a direction whose
    singular value is below ``_NULL_RCOND`` times the largest is not identifiable.
    """
    n, p = jac.shape
    s2 = sse / max(n - p, 1)
    norms = np.linalg.norm(jac, axis=0)  # (p,)
    good = np.isfinite(norms) & (norms > 0)
    cov = np.full((p, p), np.nan)
    if not good.any():
        return cov
    _, sv, vt = np.linalg.svd(jac[:, good] / norms[good], full_matrices=False)
    null = sv <= _NULL_RCOND * sv[0]
    ident = np.abs(vt[null]).max(0) <= _NULL_LOADING if null.any() else np.ones(good.sum(), dtype=bool)
    inner = (vt[~null].T / sv[~null] ** 2) @ vt[~null]  # pseudo-inverse of the normalised JᵀJ
    inner = inner / np.outer(norms[good], norms[good]) * s2
    inner[~ident, :] = np.nan
    inner[:, ~ident] = np.nan
    idx = np.flatnonzero(good)
    cov[np.ix_(idx, idx)] = inner
    return cov


def _stderr(cov: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diag(cov))
    return {name: float(v) for name, v in zip(names, se, strict=True)}


def _r2(sse: float, y: np.ndarray) -> float:
    return 1.0 - sse / float(((y - y.mean()) ** 2).sum())


def _standardise(y: np.ndarray) -> tuple[np.ndarray, float, float]:
    mean, std = float(y.mean()), float(y.std())
    return (y - mean) / std, mean, std


def _keep_simpler(sse_simple: float, sse_full: float, n: int, extra: int, p_full: int) -> bool:
    """F-test of nested least-squares fits: True unless the full one is better at LAMBDA_TEST_LEVEL."""
    if sse_simple <= sse_full * (1.0 + 1e-9):
        return True
    if sse_full <= 0.0 or n <= p_full:
        return False
    stat = (sse_simple - sse_full) / extra / (sse_full / (n - p_full))
    return bool(f_dist.sf(stat, extra, n - p_full) >= LAMBDA_TEST_LEVEL)


# -- emergence law ----------------------------------------------------------------------------


def _law_basis(theta: np.ndarray, s: np.ndarray) -> np.ndarray:
    """exp(−μ·s)·(log t0 + log(1 + r·s)) for θ = (μ, log r, log t0): ``theta`` (..., 3) -> (..., n).

    Equal to exp(−λ·γ·t)·log(x_t) with s = t / t_max, μ = λ·γ·t_max and r = γ·t_max / t0.
    """
    mu, r, q = theta[..., 0:1], np.exp(theta[..., 1:2]), theta[..., 2:3]
    return np.exp(-mu * s) * (q + np.log1p(r * s))


def _law_basis_grad(theta: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The basis (n,) and its derivatives in (μ, log r, log t0): (3, n)."""
    mu, r, q = float(theta[0]), float(np.exp(theta[1])), float(theta[2])
    e = np.exp(-mu * s)
    rs = r * s
    phi = e * (q + np.log1p(rs))
    return phi, np.stack([-s * phi, e * rs / (1.0 + rs), e])


def _log_basis_grad(theta: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """λ = 0, t0 = 1: log(1 + r·s) (n,) and its derivative in log r (1, n)."""
    rs = float(np.exp(theta[0])) * s
    return np.log1p(rs), (rs / (1.0 + rs))[None, :]


def _law_grid() -> np.ndarray:
    mus = np.concatenate([[0.0], np.geomspace(0.05, _MU_MAX, 15)])
    lrs = np.log(np.geomspace(_R_BOUNDS[0], 1e5, 16))
    qs = np.array([0.0, 0.5, 1.0, 2.0, 3.5, 5.5, np.log(_T0_MAX)])
    return np.stack(np.meshgrid(mus, lrs, qs, indexing="ij"), -1)  # (16, 16, 7, 3)


_LAW_GRID = _law_grid()
_LOG_GRID = np.log(np.geomspace(_R_MIN_LOG, 1e5, 25))[:, None]  # (25, 1): log r for λ = 0


def _law_jacobian(t: np.ndarray, A: float, lam: float, gamma: float, t0: float) -> np.ndarray:
    """∂f/∂(A, λ, γ, t0, K) at steps ``t`` (n,) -> (n, 5)."""
    x = gamma * t + t0
    with np.errstate(under="ignore"):
        e = np.exp(-lam * t0) * np.exp(-lam * gamma * t)  # exp(−λ·x)
    ae, L = A * e, np.log(x)
    dx = ae * (1.0 / x - lam * L)  # ∂f/∂x
    return np.stack([e * L, -x * ae * L, dx * t, dx, np.ones_like(t)], axis=1)


def _law_kind(t: np.ndarray, p: dict[str, float], rms: float) -> tuple[str, float]:
    """Classify the fitted curve over the observed steps (rule in the module docstring)."""
    t_min, t_max = float(t[0]), float(t[-1])
    A, lam, gamma, t0 = p["A"], p["lam"], p["gamma"], p["t0"]
    curve = emergence_law(np.linspace(t_min, t_max, 513), **p)
    spread = float(curve.max() - curve.min())
    if lam > 0 and A != 0 and spread > 0:
        x_star = float(np.exp(lambertw(1.0 / lam).real))  # λ·x·log x = 1
        t_star = (x_star - t0) / gamma
        if t_min < t_star < t_max:
            f_star, f_end = emergence_law(np.array([t_star, t_max]), **p)
            change = (f_star - f_end) * np.sign(A)  # fall after a peak (A > 0), rise after a dip (A < 0)
            if change >= PEAK_MIN_FALL * spread and change >= PEAK_MIN_NOISE * rms:
                return ("early peak" if A > 0 else "early dip"), t_star
    return ("log increase" if curve[-1] >= curve[0] else "log decrease"), float("nan")


def fit_emergence_law(t: Any, y: Any, *, starts: int = 3) -> LawFit:
    """Fit f(t) = A·exp(−λ·x_t)·log(x_t) + K, x_t = γ·t + t0, to ``y`` at steps ``t`` (module docstring).

    ``t`` (n,) training steps (≥ 0) and ``y`` (n,) the measure; pairs with a non-finite entry
    are dropped. ``starts``: how many local minima of the grid search are refined. Returns a
    :class:`LawFit`; with too few points or a constant curve, one with
    ``kind="insufficient data"`` and a ``message``.
    """
    t, y, why = _clean(t, y, MIN_POINTS_LAW, 5)
    if t.size and t[0] < 0:
        raise ValueError(f"steps must be >= 0 for the emergence law (x = gamma*t + t0 >= 1); got {t[0]:g}")
    if why:
        nan = float("nan")
        return LawFit(_nan_dict(LAW_PARAMS), _nan_dict(LAW_PARAMS), nan, "insufficient data", nan, int(t.size), why)
    n, t_max = t.size, float(t[-1])
    s = t / t_max  # (n,) in [0, 1]
    z, y_mean, y_std = _standardise(y)

    # the full law
    _, _, sse = _project(_law_basis(_LAW_GRID, s), z)  # (16, 16, 7)
    lower = np.array([0.0, np.log(_R_BOUNDS[0]), 0.0])
    upper = np.array([_MU_MAX, np.log(_R_BOUNDS[1]), np.log(_T0_MAX)])
    theta = _refine(lambda th: _law_basis_grad(th, s), z, _grid_starts(_LAW_GRID, sse, starts), lower, upper)
    b, k, sse_full = (float(v) for v in _project(_law_basis(theta, s), z))
    mu, r, t0 = float(theta[0]), float(np.exp(theta[1])), float(np.exp(theta[2]))

    # λ = 0 (and t0 = 1): kept unless the decay lowers the residual significantly
    _, _, sse = _project(np.log1p(np.exp(_LOG_GRID) * s), z)  # (25,)
    lower0, upper0 = np.array([np.log(_R_MIN_LOG)]), np.array([np.log(_R_BOUNDS[1])])
    theta0 = _refine(lambda th: _log_basis_grad(th, s), z, _grid_starts(_LOG_GRID, sse, 1), lower0, upper0)
    b0, k0, sse_log = (float(v) for v in _project(_log_basis_grad(theta0, s)[0], z))
    if _keep_simpler(sse_log, sse_full, n, 2, 5):
        mu, r, t0, b, k, sse_full = 0.0, float(np.exp(theta0[0])), 1.0, b0, k0, sse_log

    g = r * t0  # γ·t_max
    lam, gamma = mu / g, g / t_max
    A = b * y_std * float(np.exp(mu / r))  # A·exp(−λ·t0) = b·std(y), and λ·t0 = μ / r
    params = {"A": A, "lam": lam, "gamma": gamma, "t0": t0, "K": k * y_std + y_mean}
    sse_y = sse_full * y_std**2
    cov = _covariance(_law_jacobian(t, A, lam, gamma, t0), sse_y)
    rms = float(np.sqrt(sse_y / max(n - 5, 1)))
    kind, peak = _law_kind(t, params, rms)
    return LawFit(params, _stderr(cov, LAW_PARAMS), _r2(sse_y, y), kind, peak, int(n), "", rms)


# -- logistic ---------------------------------------------------------------------------------


def fit_logistic(t: Any, y: Any, *, starts: int = 3) -> LogisticFit:
    """Fit y = lo + (hi − lo) / (1 + exp(−(t − midpoint)/width)) (module docstring).

    ``t`` (n,) steps, ``y`` (n,) values; pairs with a non-finite entry are dropped. The midpoint
    is searched within half the observed range either side of it, the width from 1/20 of the
    smallest step spacing to 10 times the range. ``starts``: how many local minima of the grid
    search are refined. With too few points or a constant curve, returns a fit with a
    ``message`` (module docstring).
    """
    t, y, why = _clean(t, y, MIN_POINTS_LOGISTIC, 4)
    if why:
        nan = float("nan")
        stderr = _nan_dict((*LOGISTIC_PARAMS, "onset", "sharpness"))
        return LogisticFit(nan, nan, nan, nan, nan, False, int(t.size), stderr, why)
    n, t_min, span = t.size, float(t[0]), float(t[-1] - t[0])
    u = (t - t_min) / span  # (n,) in [0, 1]
    z, y_mean, y_std = _standardise(y)
    w_lo = float(np.diff(np.unique(u)).min()) / 20.0

    def basis_grad(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # θ = (midpoint, log width) -> (n,), (2, n)
        w = float(np.exp(theta[1]))
        phi = expit((u - theta[0]) / w)
        slope = phi * (1.0 - phi) / w
        return phi, np.stack([-slope, -slope * (u - theta[0])])

    mids, log_ws = np.linspace(-0.25, 1.25, 31), np.log(np.geomspace(w_lo, 4.0, 16))
    grid = np.stack(np.meshgrid(mids, log_ws, indexing="ij"), -1)  # (31, 16, 2)
    _, _, sse = _project(expit((u - grid[..., 0:1]) / np.exp(grid[..., 1:2])), z)  # (31, 16)
    lower, upper = np.array([-0.5, np.log(w_lo)]), np.array([1.5, np.log(10.0)])
    theta = _refine(basis_grad, z, _grid_starts(grid, sse, starts), lower, upper)
    b, k, sse_z = (float(v) for v in _project(basis_grad(theta)[0], z))
    rise, lo = b * y_std, k * y_std + y_mean
    hi, mid, w = lo + rise, t_min + span * float(theta[0]), span * float(np.exp(theta[1]))

    sig = expit((t - mid) / w)  # (n,)
    slope = rise * sig * (1.0 - sig) / w  # ∂f/∂t
    jac = np.stack([1.0 - sig, sig, -slope, -slope * (t - mid) / w], axis=1)  # (n, 4): lo, hi, midpoint, width
    sse_y = sse_z * y_std**2
    cov = _covariance(jac, sse_y)
    stderr = _stderr(cov, LOGISTIC_PARAMS)
    with np.errstate(invalid="ignore"):
        stderr["onset"] = float(np.sqrt(cov[2, 2] + LN9**2 * cov[3, 3] - 2 * LN9 * cov[2, 3]))
    stderr["sharpness"] = stderr["width"] / w**2

    rms = float(np.sqrt(sse_y / max(n - 4, 1)))
    inside = mid - w * LN9 >= t[0] and mid + w * LN9 <= t[-1]
    abrupt = bool(inside and 2 * w * LN9 <= ABRUPT_MAX_WIDTH * span and abs(rise) >= ABRUPT_MIN_SNR * rms)
    return LogisticFit(lo, hi, mid, w, _r2(sse_y, y), abrupt, int(n), stderr, "", rms)
