"""Activation measures recorded over training, from one forward pass over a fixed probe set.

Every function takes numpy arrays from a recorded forward pass (``Transformer.run_with_cache``):

- ``hidden`` (B, T, d): the post-residual hidden state h_ℓ of one block (``hook_resid_post``);
- ``post`` (B, T, m): the MLP activations after the ReLU (``mlp.hook_post``);
- ``pattern`` (B, H, T, T): attention of query i to key j.

Definitions:

- Top/median ratio (Sun et al. 2024, "Massive activations in large language models";
  Gallego-Feliciano et al. 2025): per input sequence, r = max |h| / median |h| over all its
  (token, dimension) entries; the reported ratio is the mean of r over the probe sequences. The
  location of the top activation is the (token position, dimension) of the largest batch-mean
  |h|, with its value.
- Sun's massive-activation rule: an activation is massive if |a| > 100 and |a| / median |h| >=
  1000 (the median over the same sequence's hidden state). Small models rarely pass the absolute
  threshold, which is why the ratio is tracked.
- Activation sparsity (Li et al. 2022, "The lazy neuron phenomenon"): the share of nonzero MLP
  activations after the ReLU, over every (sequence, token, unit). At initialisation a ReLU
  passes about half of its inputs; training lowers the share.
- Induction (prefix-matching) score (Olsson et al. 2022): on a sequence ``BOS, r_1..r_n,
  r_1..r_n`` of random tokens, the mean attention from each query in the second copy (position
  i >= n + 1) to the key just after the same token's first occurrence (position i - n + 1).
- Previous-token score: the mean attention from each query i >= 2 to key i - 1, on the same
  sequences.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MASSIVE_ABS",
    "MASSIVE_REL",
    "top_median_ratio",
    "top_location",
    "massive_share",
    "nonzero_share",
    "induction_score",
    "previous_token_score",
]

MASSIVE_ABS = 100.0  # Sun et al.: |a| above this ...
MASSIVE_REL = 1000.0  # ... and at least this many times the median |h|


def _per_sequence(hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max |h|, median |h|) of each sequence: two (B,) arrays from hidden (B, T, d)."""
    mag = np.abs(np.asarray(hidden, dtype=np.float64)).reshape(hidden.shape[0], -1)  # (B, T d)
    return mag.max(axis=1), np.median(mag, axis=1)


def top_median_ratio(hidden: np.ndarray) -> float:
    """Mean over sequences of max |h| / median |h| (hidden (B, T, d)); inf where a median is 0."""
    top, med = _per_sequence(hidden)
    with np.errstate(divide="ignore"):
        return float(np.mean(np.where(med > 0, top / np.where(med > 0, med, 1.0), np.inf)))


def top_location(hidden: np.ndarray) -> tuple[int, int, float]:
    """(token position, dimension, value) of the largest batch-mean |h| (hidden (B, T, d))."""
    mean_mag = np.abs(np.asarray(hidden, dtype=np.float64)).mean(axis=0)  # (T, d)
    position, dim = np.unravel_index(int(np.argmax(mean_mag)), mean_mag.shape)
    return int(position), int(dim), float(mean_mag[position, dim])


def massive_share(hidden: np.ndarray, *, absolute: float = MASSIVE_ABS, relative: float = MASSIVE_REL) -> float:
    """Share of sequences holding at least one massive activation by Sun's rule (hidden (B, T, d))."""
    top, med = _per_sequence(hidden)
    return float(np.mean((top > absolute) & (top >= relative * med)))


def nonzero_share(post: np.ndarray) -> float:
    """Share of nonzero entries of the MLP's ReLU output (post (B, T, m))."""
    return float(np.count_nonzero(post) / post.size)


def induction_score(pattern: np.ndarray, n: int) -> np.ndarray:
    """Prefix-matching score per head, (H,), on ``BOS, r_1..r_n, r_1..r_n`` (pattern (B, H, 2n+1, 2n+1))."""
    t = pattern.shape[-1]
    if t < 2 * n + 1:
        raise ValueError(f"pattern has {t} positions: a repeated sequence of n={n} needs 2n+1={2 * n + 1}")
    queries = np.arange(n + 1, 2 * n + 1)  # second copy
    return pattern[:, :, queries, queries - n + 1].mean(axis=(0, 2))


def previous_token_score(pattern: np.ndarray) -> np.ndarray:
    """Mean attention from query i to key i - 1 over i >= 2, per head: (H,) (pattern (B, H, T, T))."""
    queries = np.arange(2, pattern.shape[-1])
    return pattern[:, :, queries, queries - 1].mean(axis=(0, 2))
