"""Fixed points of a trained RNN's autonomous map, found by minimising the speed.

Method (Sussillo & Barak 2013, "Opening the black box: low-dimensional dynamics in
high-dimensional recurrent neural networks", Neural Computation 25(3); the batched recipe of
Golub & Sussillo's FixedPointFinder, 2018). Hold the input constant at ``x`` and look at the map
``F(h) = step(h, x)``, e.g. ``F(h) = tanh(W_h h + W_x x + b)`` for the vanilla RNN. A fixed point
solves ``F(h) = h``; it is a global minimum (zero) of the speed

    q(h) = 1/2 ||F(h) - h||^2.

1. Starts: states the network visits on test trials plus a little Gaussian noise
   (``sample_starts``), so the search covers the region the dynamics actually use.
2. Descent: every start at once as one (B, n) float64 tensor, Adam on sum_b q(h_b). The points do
   not interact: q_b depends only on h_b and Adam's update is elementwise. Each start keeps its
   lowest-q state so far; the search stops when all of those are below ``tol`` or after ``iters`` steps.
3. Merge and polish: points closer than ``unique_tol`` (Euclidean) are one point, the lowest q
   kept; then a few Newton steps on F(h) - h = 0, ``h <- h - (J - I)^-1 (F(h) - h)``, each
   accepted point by point only where it lowers q. Adam leaves a point with q ~ tol, i.e. about
   sqrt(2 tol) / |1 - eig| away from the true one; Newton takes it to machine precision.
4. Keep: points with q < ``keep_tol`` (default ``tol``). Local minima of q with q > 0 are "slow
   points" (Sussillo & Barak's ghosts of fixed points); raise ``keep_tol`` to keep them too.
5. Merge again (polished points may meet), the lowest q kept.
6. Linearise: the Jacobian J = dF/dh at each point (reverse mode, vmapped over output units), its
   eigenvalues sorted by decreasing modulus. A point is stable when every |eig| < 1 (a discrete
   map); each |eig| > 1 is one unstable dimension, so a saddle has some but not all.

``step`` is a black box: any batch-independent torch callable (row b of the output depends only
on row b of the input). ``network_step`` wraps one network of an ``EnsembleRNN``-like model.
``project_pca`` gives the low-dimensional view in which trajectories and fixed points are drawn.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["FixedPoints", "PCAProjection", "find_fixed_points", "network_step", "project_pca", "sample_starts"]

Step = Callable[..., torch.Tensor]  # step(h) or step(h, x): h (B, n), x (B, in) -> (B, n)

_JACOBIAN_CHUNK = 2**22  # float64 entries per chunk of Jacobians (32 MiB)


@dataclass
class FixedPoints:
    """Unique fixed points of one network under one constant input, sorted by increasing speed."""

    points: np.ndarray  # (m, n) float64 states with F(h) = h
    speed: np.ndarray  # (m,) q = 1/2 ||F(h) - h||^2 at each point
    eigenvalues: np.ndarray  # (m, n) complex128 eigenvalues of dF/dh, by decreasing modulus
    stable: np.ndarray  # (m,) bool: every |eigenvalue| < 1
    n_starts: int  # starts the search began from
    iters_done: int  # Adam steps taken (< iters when every start met tol early)

    @property
    def n_unstable(self) -> np.ndarray:
        """(m,) int: unstable dimensions per point (|eigenvalue| > 1); 0 stable, >0 saddle or repeller."""
        return (np.abs(self.eigenvalues) > 1.0).sum(axis=1)

    def __len__(self) -> int:
        return self.points.shape[0]


@dataclass
class PCAProjection:
    """PCA of hidden trajectories, with trajectories and (optionally) fixed points projected."""

    components: np.ndarray  # (k, n) orthonormal principal axes, largest variance first
    mean: np.ndarray  # (n,) mean state the axes are centred on
    explained: np.ndarray  # (k,) fraction of total variance along each axis
    trajectories: np.ndarray  # (trial, time, k) projected hidden states
    points: np.ndarray | None  # (m, k) projected points, None when none were given

    def transform(self, states: np.ndarray) -> np.ndarray:
        """Project any (..., n) states onto the axes: (..., k)."""
        return (np.asarray(states, float) - self.mean) @ self.components.T


def sample_starts(hidden: np.ndarray, n: int, *, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """``n`` states drawn (uniformly, with replacement only if needed) from hidden (trial, time, units), plus noise.

    The noise is isotropic Gaussian with standard deviation ``noise``; returns (n, units) float64.
    """
    hidden = np.asarray(hidden, float)
    if hidden.ndim != 3 or hidden.shape[0] * hidden.shape[1] == 0:
        raise ValueError(f"hidden must be a non-empty (trial, time, unit) array, got shape {hidden.shape}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    states = hidden.reshape(-1, hidden.shape[2])  # (trial * time, units)
    rng = np.random.default_rng(seed)
    idx = rng.choice(states.shape[0], size=n, replace=n > states.shape[0])
    return states[idx] + noise * rng.standard_normal((n, states.shape[1]))  # (n, units)


def _speed(f: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """q = 1/2 ||F(h) - h||^2 per row: (B,)."""
    return 0.5 * (f(h) - h).pow(2).sum(1)


def _jacobians(f: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """dF/dh at each row of h (B, n): (B, n, n), J[b, i, j] = dF_i/dh_j.

    F is batch-independent, so the Jacobian of sum_b F(h)_b with respect to h (n, B, n) holds
    every row's Jacobian; jacrev vmaps the n backward passes. Chunked over rows to bound memory.
    """
    b, n = h.shape
    chunk = max(1, _JACOBIAN_CHUNK // (n * n))
    out = []
    for part in h.detach().split(chunk):
        jac = torch.func.jacrev(lambda z: f(z).sum(0))(part)  # (n, chunk, n)
        out.append(jac.permute(1, 0, 2))
    return torch.cat(out) if out else h.new_zeros(0, n, n)


def _unique(points: np.ndarray, speed: np.ndarray, tol: float) -> np.ndarray:
    """Indices of points kept after greedy de-duplication, lowest speed first."""
    kept: list[int] = []
    for i in np.argsort(speed, kind="stable"):
        if not kept or np.min(np.linalg.norm(points[kept] - points[i], axis=1)) >= tol:
            kept.append(int(i))
    return np.array(kept, dtype=int)


def _newton(f: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor, steps: int) -> torch.Tensor:
    """Newton on F(h) - h = 0, each step accepted per row only where it lowers q and stays finite."""
    eye = torch.eye(h.shape[1], dtype=h.dtype)
    for _ in range(steps):
        with torch.no_grad():
            residual = f(h) - h  # (B, n)
            q = 0.5 * residual.pow(2).sum(1)
        jac = _jacobians(f, h) - eye  # (B, n, n)
        delta, _ = torch.linalg.solve_ex(jac, residual)  # (B, n); singular rows give junk, rejected below
        with torch.no_grad():
            trial = h - delta
            q_new = _speed(f, trial)
            better = torch.isfinite(q_new) & (q_new < q) & torch.isfinite(trial).all(1)
            h = torch.where(better[:, None], trial, h)
    return h


def find_fixed_points(
    step: Step,
    starts: np.ndarray | torch.Tensor,
    *,
    x: np.ndarray | torch.Tensor | None = None,
    iters: int = 2000,
    lr: float = 1e-2,
    tol: float = 1e-8,
    unique_tol: float = 1e-3,
    keep_tol: float | None = None,
    newton: int = 5,
) -> FixedPoints:
    """Fixed points of ``h -> step(h)`` (or ``step(h, x)``) found from every row of ``starts`` (B, n).

    step: one network's map on a batch, h (B, n) float64 -> (B, n); must be batch-independent and
        differentiable in h. With ``x`` given it is called as ``step(h, x_batch)``, x_batch (B, in).
    x: constant input (in,); None calls ``step(h)`` (input closed over, or none).
    iters, lr: Adam steps and learning rate. tol: stop once every q < tol.
    unique_tol: points closer than this (Euclidean) are merged, the lowest q kept.
    keep_tol: keep points with q < keep_tol (default ``tol``); larger values keep slow points too.
    newton: Newton polishing steps after Adam (0: none).
    See the module docstring for the method.
    """
    for name, value, ok, allowed in (
        ("iters", iters, isinstance(iters, int) and iters >= 0, "an int >= 0"),
        ("lr", lr, lr > 0, "> 0"),
        ("tol", tol, tol > 0, "> 0"),
        ("unique_tol", unique_tol, unique_tol >= 0, ">= 0"),
        ("keep_tol", keep_tol, keep_tol is None or keep_tol > 0, "None or > 0"),
        ("newton", newton, isinstance(newton, int) and newton >= 0, "an int >= 0"),
    ):
        if not ok:
            raise ValueError(f"{name} must be {allowed}, got {value!r}")
    keep_tol = tol if keep_tol is None else keep_tol
    h0 = torch.as_tensor(starts, dtype=torch.float64).detach().clone()  # (B, n)
    if h0.dim() != 2 or h0.shape[0] == 0:
        raise ValueError(f"starts must be a non-empty (B, n) array, got shape {tuple(h0.shape)}")
    n_starts, n = h0.shape

    if x is None:
        f = step
    else:
        x_t = torch.as_tensor(x, dtype=torch.float64)
        if x_t.dim() != 1:
            raise ValueError(f"x must be one constant input vector (in,), got shape {tuple(x_t.shape)}")

        def f(h: torch.Tensor) -> torch.Tensor:
            return step(h, x_t.expand(h.shape[0], -1))  # x (B, in)

    with torch.no_grad():
        probe = f(h0)
    if probe.shape != h0.shape:
        raise ValueError(f"step must map (B, n) = {tuple(h0.shape)} to the same shape, got {tuple(probe.shape)}")

    # 2. Adam on every start at once.
    # 2. Adam on every start at once, keeping each start's best (lowest q) state: near a minimum
    # Adam's normalised steps can kick a converged point back out, so the last state is not the best.
    best = h0.clone()  # (B, n)
    best_q = torch.full((n_starts,), torch.inf, dtype=torch.float64)  # (B,)
    h = h0.requires_grad_(True)
    opt = torch.optim.Adam([h], lr=lr)
    done = 0
    for done in range(iters + 1):
        q = _speed(f, h)  # (B,)
        with torch.no_grad():
            better = q < best_q
            best = torch.where(better[:, None], h, best)
            best_q = torch.where(better, q, best_q)
        if done == iters or bool((best_q < tol).all()):
            break
        opt.zero_grad()
        q.sum().backward()
        opt.step()
    h = best  # (B, n)

    # 3. Merge near-duplicates, polish, keep the fixed points, merge again (polished points may meet).
    with torch.no_grad():
        q = _speed(f, h)
    finite = (torch.isfinite(q) & torch.isfinite(h).all(1)).numpy()
    pts, spd = h.numpy()[finite], q.numpy()[finite]
    idx = _unique(pts, spd, unique_tol)
    h = torch.from_numpy(pts[idx].copy())  # (m', n)
    if newton and h.shape[0]:
        h = _newton(f, h, newton)
    with torch.no_grad():
        q = _speed(f, h)
    good = (torch.isfinite(q) & (q < keep_tol)).numpy()
    pts, spd = h.numpy()[good], q.numpy()[good]
    idx = _unique(pts, spd, unique_tol)
    pts, spd = pts[idx], spd[idx]  # (m, n), (m,) by increasing speed

    # 4. Linearise.
    jac = _jacobians(f, torch.from_numpy(pts.copy())).detach().numpy()  # (m, n, n)
    eig = np.linalg.eigvals(jac).astype(complex) if len(pts) else np.zeros((0, n), complex)  # (m, n)
    eig = np.take_along_axis(eig, np.argsort(-np.abs(eig), axis=1, kind="stable"), axis=1)
    stable = np.abs(eig).max(axis=1, initial=0.0) < 1.0
    return FixedPoints(pts, spd, eig, stable, n_starts, done)


def network_step(model: torch.nn.Module, k: int, x: np.ndarray | torch.Tensor | None = None) -> Step:
    """Network ``k`` of an ensemble model as a one-network float64 step: ``step(h, x=None)``, h (B, n).

    ``model.step(h, x)`` maps h (K, B, n) and x (K, B, in) to (K, B, n); ``model.w_h`` (K, n, n)
    and ``model.w_x`` (K, n, in) give K, n and in. The returned callable uses its own float64
    copy of the model (the original is untouched; later training does not reach it), reduced to
    network k by slicing every parameter and buffer with leading dimension K, after checking the
    slice reproduces the full model's network k (else it runs all K networks and keeps row k).
    ``x`` (in,) is the constant input, zeros when None; a call's own ``x`` (B, in) overrides it.
    """
    n_net, n = model.w_h.shape[0], model.w_h.shape[1]
    n_in = model.w_x.shape[2]
    if not 0 <= k < n_net:
        raise ValueError(f"k must be in [0, {n_net}), got {k}")
    x0 = torch.zeros(n_in, dtype=torch.float64) if x is None else torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    if x0.shape[0] != n_in:
        raise ValueError(f"x must have {n_in} entries (the model's inputs), got {x0.shape[0]}")

    full = copy.deepcopy(model).double().requires_grad_(False)

    def run_full(h: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        hk = h.new_zeros(n_net, *h.shape).index_copy(0, torch.tensor([k]), h[None])  # (K, B, n)
        xk = xb.new_zeros(n_net, *xb.shape).index_copy(0, torch.tensor([k]), xb[None])  # (K, B, in)
        return full.step(hk, xk)[k]

    one = copy.deepcopy(full)
    for _, tensor in [*one.named_parameters(), *one.named_buffers()]:
        if tensor.dim() and tensor.shape[0] == n_net:
            tensor.data = tensor.data[k : k + 1].clone()

    def run_one(h: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        return one.step(h[None], xb[None])[0]

    gen = torch.Generator().manual_seed(0)
    h_probe = torch.rand(3, n, generator=gen, dtype=torch.float64) * 2 - 1  # (3, n)
    x_probe = torch.rand(3, n_in, generator=gen, dtype=torch.float64)  # (3, in)
    try:
        with torch.no_grad():
            sliced_ok = torch.allclose(run_one(h_probe, x_probe), run_full(h_probe, x_probe), rtol=1e-10, atol=1e-12)
    except (RuntimeError, ValueError, IndexError):
        sliced_ok = False
    run = run_one if sliced_ok else run_full

    def step(h: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.as_tensor(h, dtype=torch.float64)  # (B, n)
        xb = x0.expand(h.shape[0], -1) if x is None else torch.as_tensor(x, dtype=torch.float64)  # (B, in)
        return run(h, xb)

    return step


def project_pca(hidden: np.ndarray, points: np.ndarray | None = None, k: int = 3) -> PCAProjection:
    """PCA (SVD of the centred states) fitted on hidden (trial, time, n); projects hidden and ``points`` (m, n).

    k is capped at the number of axes the data has (min of n and trial * time). Each axis is signed
    so that its largest-magnitude loading is positive, which makes the result deterministic.
    """
    hidden = np.asarray(hidden, float)
    if hidden.ndim != 3 or hidden.shape[0] * hidden.shape[1] == 0:
        raise ValueError(f"hidden must be a non-empty (trial, time, unit) array, got shape {hidden.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    states = hidden.reshape(-1, hidden.shape[2])  # (samples, n)
    mean = states.mean(0)  # (n,)
    _, s, vt = np.linalg.svd(states - mean, full_matrices=False)  # s (r,), vt (r, n)
    k = min(k, vt.shape[0])
    comps = vt[:k]  # (k, n)
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    var = s**2
    explained = var[:k] / var.sum() if var.sum() > 0 else np.zeros(k)  # (k,)
    traj = (hidden - mean) @ comps.T  # (trial, time, k)
    proj = None if points is None else (np.asarray(points, float).reshape(-1, hidden.shape[2]) - mean) @ comps.T
    return PCAProjection(comps, mean, explained, traj, proj)
