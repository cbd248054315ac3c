"""Degeneracy measures across an ensemble of trained networks, at three levels.

- Behaviour: ``sigma_ood`` = standard deviation across networks of their MSE on
  out-of-distribution trials.
- Dynamics: Dynamical Similarity Analysis (Ostrow et al. 2023) through the ``dsa-metric``
  package, with the paper's angular score set explicitly (the package's default compares
  spectra only). Defaults: 10 delays, rank 20, 500 optimisation steps.
- Weights: the permutation-invariant distance d_PIF = min_P ||W1 - P^T W2 P||_F / n^2 between
  recurrent matrices, a quadratic assignment problem solved with scipy's FAQ (several starts).
- Also: linear CKA between hidden-state matrices, relative weight change, kernel alignment of
  the empirical neural tangent kernel between two parameter sets, and classical MDS of any
  distance matrix.

The mean of the upper triangle of a pairwise matrix is the ensemble's degeneracy at that level.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "sigma_ood",
    "dsa_matrix",
    "principal_states",
    "pif_distance",
    "pif_matrix",
    "linear_cka",
    "weight_change",
    "kernel_alignment",
    "mds",
    "mean_offdiag",
]


def sigma_ood(ood_mse: np.ndarray) -> float:
    """Behavioural degeneracy: spread across networks of their out-of-distribution MSE."""
    ood_mse = np.asarray(ood_mse, float)
    return float(np.std(ood_mse, ddof=1)) if ood_mse.size > 1 else float("nan")


def mean_offdiag(matrix: np.ndarray) -> float:
    """Mean over distinct pairs of a symmetric distance matrix."""
    m = np.asarray(matrix, float)
    iu = np.triu_indices(m.shape[0], 1)
    return float(m[iu].mean()) if iu[0].size else float("nan")


def principal_states(states: np.ndarray, pcs: int) -> np.ndarray:
    """States (trial, time, unit) in the basis of their top ``pcs`` principal components.

    An orthogonal change of basis plus truncation: DSA is invariant to the first, and the
    second keeps the delay embedding smaller than the number of samples at any width.
    """
    flat = states.reshape(-1, states.shape[-1]).astype(np.float64)
    centred = flat - flat.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(pcs, vt.shape[0])
    return (centred @ vt[:k].T).reshape(*states.shape[:-1], k)


def dsa_matrix(
    trajectories: list[np.ndarray],
    *,
    n_delays: int = 10,
    rank: int = 20,
    pcs: int = 0,
    iters: int = 500,
    lr: float = 1e-2,
    seed: int = 0,
) -> np.ndarray:
    """Pairwise angular DSA distances between hidden trajectories, each (trial, time, unit).

    ``pcs > 0`` first projects each network's states onto its own top ``pcs`` principal components.
    """
    from DSA import DSA

    if len(trajectories) < 2:
        raise ValueError(f"DSA needs at least 2 networks, got {len(trajectories)}")
    if pcs > 0:
        trajectories = [principal_states(t, pcs) for t in trajectories]
    trials, steps, dim = min(t.shape for t in trajectories)
    samples = trials * (steps - n_delays + 1)
    if n_delays * dim > samples:
        raise ValueError(
            f"dsa delays={n_delays} x {dim} dimensions exceed the {samples} delay-embedded samples: "
            "project onto fewer principal components (pcs), use fewer delays or more test trials"
        )
    rank = min(rank, n_delays * dim)
    dsa = DSA(
        list(trajectories), n_delays=n_delays, rank=rank, score_method="angular", iters=iters, lr=lr, verbose=False
    )
    with torch.random.fork_rng():  # the alignment starts from a random rotation: seeded, caller's RNG untouched
        torch.manual_seed(seed)
        matrix = np.asarray(dsa.fit_score(), float)
    return 0.5 * (matrix + matrix.T)


def pif_distance(w1: np.ndarray, w2: np.ndarray, *, starts: int = 4, seed: int = 0) -> float:
    """min over permutations P of ||W1 - P^T W2 P||_F, divided by n^2."""
    from scipy.optimize import quadratic_assignment

    w1, w2 = np.asarray(w1, float), np.asarray(w2, float)
    n = w1.shape[0]
    best = np.inf
    rng = np.random.default_rng(seed)
    for k in range(starts):
        init = "barycenter" if k == 0 else "randomized"
        res = quadratic_assignment(w1, w2, method="faq", options={"maximize": True, "P0": init, "rng": rng})
        perm = res.col_ind
        best = min(best, float(np.linalg.norm(w1 - w2[np.ix_(perm, perm)])))
        if best == 0.0:
            break
    return best / n**2


def pif_matrix(weights: list[np.ndarray], **kw) -> np.ndarray:
    k = len(weights)
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            out[i, j] = out[j, i] = pif_distance(weights[i], weights[j], **kw)
    return out


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between two (sample, feature) matrices (Kornblith et al. 2019)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    hsic = np.linalg.norm(y.T @ x) ** 2
    return float(hsic / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def weight_change(w_final: np.ndarray, w_init: np.ndarray) -> float:
    """||W_T - W_0||_F / ||W_0||_F."""
    return float(np.linalg.norm(w_final - w_init) / np.linalg.norm(w_init))


def _ntk_features(model, params: dict[str, torch.Tensor], x: torch.Tensor, net: int, names) -> torch.Tensor:
    """Jacobian of network ``net``'s final outputs on probe trials with respect to its ``names`` parameters."""
    from torch.func import functional_call, jacrev

    fixed = {n: p for n, p in params.items() if n not in names}

    def outputs(p):
        return functional_call(model, {**fixed, **p}, (x,))[net, :, -1, :].reshape(-1)

    jac = jacrev(outputs)({n: params[n] for n in names})
    return torch.cat([j[:, net].reshape(j.shape[0], -1) for j in jac.values()], dim=1)


def kernel_alignment(
    model,
    params_a: dict[str, torch.Tensor],
    params_b: dict[str, torch.Tensor],
    x: torch.Tensor,
    net: int,
    names: tuple[str, ...] = ("w_h", "w_x", "w_o"),
) -> float:
    """Tr(K_a K_b) / (||K_a|| ||K_b||) of the empirical NTKs of one network at two parameter sets.

    ``x``: probe inputs (K, trial, time, in). 1 means the kernel did not move (lazy regime). The
    kernel is over the weight matrices (``names``): a readout bias adds the same constant to
    every entry, and under the mup readout scaling that constant would swamp the kernel.
    """
    ja = _ntk_features(model, params_a, x, net, names)
    jb = _ntk_features(model, params_b, x, net, names)
    ka, kb = ja @ ja.T, jb @ jb.T
    return float((ka * kb).sum() / (torch.linalg.norm(ka) * torch.linalg.norm(kb)))


def mds(distances: np.ndarray, dims: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS: points whose Euclidean distances best match ``distances``."""
    d = np.asarray(distances, float)
    n = d.shape[0]
    j = np.eye(n) - np.ones((n, n)) / n
    b = -0.5 * j @ (d**2) @ j
    vals, vecs = np.linalg.eigh(b)
    order = np.argsort(vals)[::-1][:dims]
    return vecs[:, order] * np.sqrt(np.maximum(vals[order], 0))
