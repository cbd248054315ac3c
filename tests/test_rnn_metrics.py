"""Degeneracy metrics: known answers on constructed inputs."""

import numpy as np
import pytest
import torch

from engine.rnn import FlipFlop, TrainConfig, train_ensemble
from engine.rnn.metrics import dsa_matrix, kernel_alignment, linear_cka, mds, pif_distance, sigma_ood, weight_change


def test_pif_distance_is_zero_for_a_permuted_copy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(24, 24))
    perm = rng.permutation(24)
    copy = w[np.ix_(perm, perm)]
    assert pif_distance(w, copy) == pytest.approx(0.0, abs=1e-12)
    other = rng.normal(size=(24, 24))
    assert pif_distance(w, other) > 0.01


def _trajectories(a, rng, trials=8, steps=60):
    x = rng.normal(size=(trials, a.shape[0]))
    out = np.zeros((trials, steps, a.shape[0]))
    for t in range(steps):
        x = np.tanh(x @ a.T) + 0.01 * rng.normal(size=x.shape)
        out[:, t] = x
    return out


@pytest.mark.slow
def test_dsa_of_a_network_with_itself_is_below_that_between_networks():
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    a = rng.normal(size=(16, 16)) * 1.2 / 4
    b = rng.normal(size=(16, 16)) * 1.2 / 4
    m = dsa_matrix([_trajectories(a, rng), _trajectories(a, rng), _trajectories(b, rng)], n_delays=5, rank=15)
    assert m[0, 1] < m[0, 2] and m[0, 1] < m[1, 2]
    np.testing.assert_allclose(m, m.T)


def test_cka_and_mds_and_sigma():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 10))
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert linear_cka(x, 3 * x @ q) == pytest.approx(1.0)  # invariant to rotation and scale
    assert linear_cka(x, rng.normal(size=(200, 10))) < 0.2
    pts = rng.normal(size=(6, 2))
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    emb = mds(d)
    np.testing.assert_allclose(np.linalg.norm(emb[:, None] - emb[None], axis=-1), d, atol=1e-8)
    assert sigma_ood([1.0, 1.0, 1.0]) == 0.0 and sigma_ood([1.0, 3.0]) == pytest.approx(np.sqrt(2))
    w0 = rng.normal(size=(5, 5))
    assert weight_change(w0, w0) == 0.0 and weight_change(2 * w0, w0) == pytest.approx(1.0)


def test_kernel_alignment_is_one_without_training_and_drops_with_it():
    torch.set_num_threads(1)
    task = FlipFlop(channels=2, steps=20)
    res = train_ensemble(task, TrainConfig(hidden=16, networks=1, seed=0, batch=16, lr=2e-2, max_steps=200))
    params = {n: p.detach() for n, p in res.model.named_parameters()}
    init = {n: torch.from_numpy(v) for n, v in res.init.items()}
    x = torch.from_numpy(task.generate(6, np.random.default_rng(5)).inputs[None])
    assert kernel_alignment(res.model, init, init, x, 0) == pytest.approx(1.0, abs=1e-6)
    assert kernel_alignment(res.model, init, params, x, 0) < 0.99
