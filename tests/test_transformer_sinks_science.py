"""Attention sinks on Bigram-Backcopy (Guo et al. 2024; Qiu et al. 2025), several seeds.

Default model (2 layers x 2 heads, d 64, sequences of 32), AdamW lr 3e-3, 600 steps. Measured
(README, "Attention sinks"): the softmax sink head goes from ~0.11 at step 0 to 0.6-0.65 on
non-trigger queries while its trigger-query score stays below 0.01 (the active-dormant split);
its BOS value vector shrinks to a quarter-third of the others' norm (value drain); the headwise
sigmoid gate roughly halves the sink; ReLU attention has none.
"""

import numpy as np
import pytest
import torch

from engine.transformer.training import AttentionConfig, train_run

pytestmark = pytest.mark.slow

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def runs():
    torch.set_num_threads(1)
    out = {}
    for seed in SEEDS:
        for attention in ("softmax", "gated-head", "relu"):
            cfg = AttentionConfig(attention=attention, lr=3e-3, steps=600, probe_every=100, seed=seed)
            out[attention, seed] = train_run(cfg)[0]
    return out


def _sink_head(ds) -> tuple[int, int]:
    """The (layer, head) with the largest final sink score on non-trigger queries."""
    final = np.nan_to_num(ds["sink_nontrigger"].values[-1], nan=-1.0)
    return np.unravel_index(np.argmax(final), final.shape)


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_forms_a_bos_sink_on_non_trigger_queries_only(runs, seed):
    ds = runs["softmax", seed]
    layer, head = _sink_head(ds)
    start, end = ds["sink_nontrigger"].values[[0, -1], layer, head]
    trigger = ds["sink_trigger"].values[-1, layer, head]
    assert end > 0.4 and end > 3 * start, (start, end)
    assert trigger < 0.1 < end  # dormant on bigram queries, active on triggers
    assert ds["icl_loss"].values[-1] < 0.1  # the back-copy was learned in context


@pytest.mark.parametrize("seed", SEEDS)
def test_value_drain_comes_with_the_sink(runs, seed):
    soft, relu = runs["softmax", seed], runs["relu", seed]
    layer, head = _sink_head(soft)
    drain = soft["value_drain"].values[-1, layer, head]
    assert drain < 0.6 and drain < np.mean(relu["value_drain"].values[-1])


@pytest.mark.parametrize("seed", SEEDS)
def test_relu_attention_has_no_sink_and_the_gate_weakens_it(runs, seed):
    assert np.nanmax(runs["relu", seed]["sink_nontrigger"].values[-1]) < 0.05
    soft = np.nanmax(runs["softmax", seed]["sink_nontrigger"].values[-1])
    gated = np.nanmax(runs["gated-head", seed]["sink_nontrigger"].values[-1])
    assert gated < 0.8 * soft, (gated, soft)
