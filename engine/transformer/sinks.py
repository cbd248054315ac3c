"""Extreme-token measures on a recorded forward pass (Guo et al. 2024; Gu et al. 2024).

Every function takes arrays from a cache of one forward pass over a probe batch of ``B``
sequences of ``T`` query positions (position 0 is BOS):

- ``pattern`` (B, H, T, T): attention of query i to key j (rows of a softmax head sum to 1);
- ``values`` (B, H, T, d_h): value vectors; ``resid`` (B, T, d): a residual-stream state;
- ``trigger_q``, ``bigram_q`` (B, T): which query positions are trigger queries (the next token
  is a back-copy) and which are ordinary bigram queries (t >= 1, not a trigger).

Definitions (reference "Extreme-token phenomena"):

- sink score: attention paid to position 0, averaged over the queries of one type;
- sink rate: alpha_0 = sum_i A[i, 0] / T per (sample, layer, head); the share of them above
  epsilon (0.3);
- value drain: ||v_BOS|| / mean_{t >= 1} ||v_t||; residual peak: the same ratio of residual norms.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SINK_EPSILON", "sink_scores", "sink_alpha", "sink_rate", "value_drain", "residual_peak", "token_ratio"]

SINK_EPSILON = 0.3


def sink_scores(pattern: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Mean attention to position 0 over the selected queries, per head: (H,) (NaN if none selected).

    ``pattern`` (B, H, T, T), ``queries`` (B, T) bool.
    """
    to_bos = pattern[..., 0]  # (B, H, T)
    sel = np.broadcast_to(queries[:, None, :], to_bos.shape)
    count = sel.sum(axis=(0, 2))  # (H,)
    total = np.where(sel, to_bos, 0.0).sum(axis=(0, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def sink_alpha(pattern: np.ndarray) -> np.ndarray:
    """alpha_0 = sum_i A[i, 0] / T for every (sample, head): (B, H) (Gu et al. 2024, k = 0)."""
    return pattern[..., 0].sum(-1) / pattern.shape[-2]


def sink_rate(alphas: np.ndarray, epsilon: float = SINK_EPSILON) -> float:
    """Share of (sample, layer, head) whose alpha_0 exceeds ``epsilon``."""
    return float(np.mean(np.asarray(alphas) > epsilon))


def token_ratio(x: np.ndarray) -> np.ndarray:
    """||x at position 0|| / mean_{t >= 1} ||x_t|| over the last axis, averaged over samples.

    ``x`` (B, ..., T, d) -> (...): e.g. values (B, H, T, d_h) -> (H,), residuals (B, T, d) -> ().
    """
    norms = np.linalg.norm(x, axis=-1)  # (B, ..., T)
    return (norms[..., 0] / norms[..., 1:].mean(-1)).mean(0)


def value_drain(values: np.ndarray) -> np.ndarray:
    """||v_BOS|| / mean ||v_other|| per head: (H,) from values (B, H, T, d_h). Below 1: a drained value."""
    return token_ratio(values)


def residual_peak(resid: np.ndarray) -> float:
    """||h_BOS|| / mean ||h_other|| of a residual state (B, T, d). Above 1: a residual peak at BOS."""
    return float(token_ratio(resid))
