"""Extreme-token measures on hand-built attention patterns and states (exact values)."""

import numpy as np
import pytest

from engine.transformer.sinks import residual_peak, sink_alpha, sink_rate, sink_scores, value_drain


def _uniform_causal(b: int, h: int, t: int) -> np.ndarray:
    """Each query attends equally to itself and every earlier key: A[i, j] = 1/(i + 1), j <= i."""
    a = np.tril(np.ones((t, t))) / np.arange(1, t + 1)[:, None]
    return np.broadcast_to(a, (b, h, t, t)).copy()


def test_sink_scores_average_attention_to_bos_over_the_chosen_queries():
    pattern = _uniform_causal(2, 3, 5)
    pattern[:, 1, :, :] = 0.0
    pattern[:, 1, :, 0] = 1.0  # head 1 is a perfect sink
    queries = np.zeros((2, 5), bool)
    queries[:, [2, 4]] = True
    scores = sink_scores(pattern, queries)
    np.testing.assert_allclose(scores, [(1 / 3 + 1 / 5) / 2, 1.0, (1 / 3 + 1 / 5) / 2])
    assert np.isnan(sink_scores(pattern, np.zeros((2, 5), bool))).all()


def test_sink_alpha_and_rate_follow_gu_et_al():
    t = 8
    alpha = sink_alpha(_uniform_causal(1, 1, t))  # sum_i 1/(i+1) / T: the harmonic number over T
    np.testing.assert_allclose(alpha, [[sum(1 / k for k in range(1, t + 1)) / t]])
    alphas = np.array([[0.1, 0.31], [0.5, 0.29]])
    assert sink_rate(alphas) == pytest.approx(0.5)
    assert sink_rate(alphas, epsilon=0.05) == 1.0


def test_value_drain_and_residual_peak_are_norm_ratios_at_bos():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 2, 6, 8))
    values /= np.linalg.norm(values, axis=-1, keepdims=True)  # every value vector has norm 1
    values[:, 0, 0] *= 0.1  # head 0 drains BOS's value
    np.testing.assert_allclose(value_drain(values), [0.1, 1.0])
    resid = np.ones((3, 5, 4))
    resid[:, 0] *= 13.0
    assert residual_peak(resid) == pytest.approx(13.0)
