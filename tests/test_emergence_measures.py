"""Activation measures on hand-built arrays, and on a model at initialisation."""

import numpy as np
import pytest
import torch

from engine.emergence.lm import repeated_tokens
from engine.emergence.measures import (
    induction_score,
    massive_share,
    nonzero_share,
    previous_token_score,
    top_location,
    top_median_ratio,
)
from engine.transformer.model import Transformer, TransformerConfig


def hand_built_hidden():
    """Two sequences of 3 tokens x 4 dims with known max and median |h|."""
    h = np.ones((2, 3, 4))
    h[0] *= -2.0  # |h| = 2 everywhere: ratio 1 before the spike
    h[0, 0, 3] = 50.0  # max 50, median 2 -> 25
    h[1, 2, 1] = -8.0  # max 8, median 1 -> 8
    return h


def test_top_median_ratio_of_a_hand_built_state_is_exact():
    assert top_median_ratio(hand_built_hidden()) == (25.0 + 8.0) / 2


def test_top_location_is_the_largest_batch_mean():
    position, dim, value = top_location(hand_built_hidden())
    assert (position, dim) == (0, 3) and value == pytest.approx((50.0 + 1.0) / 2)


def test_sun_rule_needs_both_thresholds():
    h = np.full((3, 4, 5), 0.05)
    h[0, 1, 2] = 150.0  # > 100 and 3000x the median: massive
    h[1, 1, 2] = 40.0  # 800x the median but below 100: not massive
    h[2] *= 10  # median 0.5
    h[2, 0, 0] = 300.0  # > 100 but only 600x: not massive
    assert massive_share(h) == pytest.approx(1 / 3)


def test_nonzero_share_counts_entries():
    post = np.zeros((2, 2, 5))
    post[0, 0, :3] = 1.0
    assert nonzero_share(post) == pytest.approx(3 / 20)


def test_nonzero_share_of_a_relu_at_initialisation_is_about_half():
    model = Transformer(TransformerConfig(vocab=20, context=16, layers=2, heads=2, width=32), seed=3)
    tokens = torch.randint(0, 20, (16, 16), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(tokens, names=lambda n: n.endswith("mlp.hook_post"))
    shares = [nonzero_share(v.numpy()) for v in cache.values()]
    assert len(shares) == 2 and all(0.45 < s < 0.55 for s in shares)


def perfect_heads(n: int) -> np.ndarray:
    """(1, 2, 2n+1, 2n+1): head 0 an induction head, head 1 a previous-token head."""
    t = 2 * n + 1
    p = np.zeros((1, 2, t, t))
    p[0, 0, 0, 0] = 1.0
    for i in range(1, t):
        p[0, 0, i, i - n + 1 if i > n else 0] = 1.0  # second copy: the token after the first occurrence
        p[0, 1, i, i - 1] = 1.0
    p[0, 1, 0, 0] = 1.0
    return p


def test_induction_and_previous_token_scores_pick_their_heads():
    p = perfect_heads(5)
    np.testing.assert_allclose(induction_score(p, 5), [1.0, 0.0])
    prev = previous_token_score(p)
    assert prev[1] == 1.0 and prev[0] < 0.5


def test_induction_score_rejects_a_short_pattern():
    with pytest.raises(ValueError, match="needs 2n\\+1"):
        induction_score(np.zeros((1, 1, 5, 5)), 4)


def test_repeated_tokens_repeat_after_bos():
    toks = repeated_tokens(4, 6, 10, 10, np.random.default_rng(0))
    assert toks.shape == (4, 13) and (toks[:, 0] == 10).all()
    np.testing.assert_array_equal(toks[:, 1:7], toks[:, 7:])
    assert toks[:, 1:].max() < 10
