"""Batched ensemble training is exactly K independent trainings; the stopping rule holds."""

import numpy as np
import pytest
import torch

from engine.rnn import FlipFlop, TrainConfig, train_ensemble
from engine.rnn.ensemble import penalty
from engine.rnn.metrics import kernel_alignment, weight_change


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"clip": 0.05, "lr_half_life": 10.0},
        {"parameterisation": "mup", "gamma": 3.0, "alpha": 0.5, "nuclear": 1e-3, "l1": 1e-4},
    ],
)
def test_ensemble_equals_separate_trainings(extra):
    torch.set_num_threads(1)
    task = FlipFlop(channels=2, steps=20)
    cfg = TrainConfig(hidden=16, networks=3, seed=10, batch=8, max_steps=40, epoch_steps=10, **extra)
    together = train_ensemble(task, cfg)
    for j, seed in enumerate((10, 11, 12)):
        alone = train_ensemble(task, cfg.replace(networks=1), seeds=[seed])
        for name, p in together.model.named_parameters():
            np.testing.assert_allclose(
                p.detach()[j].numpy(), getattr(alone.model, name).detach()[0].numpy(), rtol=1e-4, atol=1e-6
            )
        np.testing.assert_allclose(together.losses[:, j], alone.losses[:, 0], rtol=1e-4, atol=1e-7)


def test_training_lowers_the_loss_and_freezes_converged_networks():
    torch.set_num_threads(1)
    task = FlipFlop(channels=1, steps=30, threshold=0.08)
    cfg = TrainConfig(hidden=32, networks=4, seed=0, batch=32, lr=1e-2, max_steps=1500, epoch_steps=25, patience=2)
    snapshots = {}

    def watch(step, losses, converged, diverged, model):
        for j in np.flatnonzero(converged):
            snapshots.setdefault(int(j), (step, {n: p.detach()[j].clone() for n, p in model.named_parameters()}))

    res = train_ensemble(task, cfg, callback=watch)
    first, last = res.losses[:25].mean(0), res.losses[-25:].mean(0)
    assert (last < first).all()
    assert res.converged.sum() >= 2 and not res.diverged.any()
    for j, (step, params) in snapshots.items():  # nothing moved after convergence
        for name, p in res.model.named_parameters():
            torch.testing.assert_close(p.detach()[j], params[name], rtol=0, atol=0)
        assert res.steps_done[j] == step + 1


def test_a_blow_up_freezes_the_network_at_its_last_finite_parameters():
    torch.set_num_threads(1)
    task = FlipFlop(channels=1, steps=20)
    cfg = TrainConfig(hidden=16, networks=2, seed=3, batch=8, max_steps=5, epoch_steps=5, diverge_at=1e-9)
    res = train_ensemble(task, cfg)
    assert res.diverged.all() and not res.converged.any()  # every loss exceeds 1e-9 at once
    for name, p in res.model.named_parameters():
        np.testing.assert_array_equal(p.detach().numpy(), res.init[name])
    assert (res.steps_done == 0).all()


def _train(task, **kw):
    return train_ensemble(task, TrainConfig(hidden=32, networks=3, seed=0, batch=32, lr=1e-3, **kw))


def test_larger_gamma_means_richer_learning():
    """Feature-learning strength: weights move more and the tangent kernel moves further (mup)."""
    torch.set_num_threads(1)
    task = FlipFlop(channels=2, steps=30)
    x = torch.from_numpy(np.repeat(task.generate(8, np.random.default_rng(1)).inputs[None], 3, 0))
    out = {}
    for gamma in (0.1, 10.0):
        res = _train(task, max_steps=300, parameterisation="mup", gamma=gamma)
        w = res.model.w_h.detach().numpy()
        init = {n: torch.from_numpy(v) for n, v in res.init.items()}
        final = {n: p.detach() for n, p in res.model.named_parameters()}
        change = np.mean([weight_change(w[j], res.init["w_h"][j]) for j in range(3)])
        align = np.mean([kernel_alignment(res.model, init, final, x, j) for j in range(3)])
        out[gamma] = (change, align)
    assert out[10.0][0] > 3 * out[0.1][0]
    assert out[10.0][1] < out[0.1][1] - 0.1


def test_penalties_shrink_their_norms():
    torch.set_num_threads(1)
    task = FlipFlop(channels=1, steps=20)
    plain = _train(task, max_steps=150)
    nuclear = _train(task, max_steps=150, nuclear=3e-3)
    l1 = _train(task, max_steps=150, l1=3e-4)

    def norms(res):
        w = res.model.w_h.detach()
        return torch.linalg.svdvals(w).sum(-1).numpy(), w.abs().sum((1, 2)).numpy()

    assert (norms(nuclear)[0] < norms(plain)[0]).all()
    assert (norms(l1)[1] < norms(plain)[1]).all()
    assert penalty(plain.model, TrainConfig()) is None


def test_gamma_needs_the_mup_parameterisation():
    with pytest.raises(ValueError, match="gamma=2.0"):
        TrainConfig(gamma=2.0)
    with pytest.raises(ValueError, match="parameterisation='lazy'"):
        TrainConfig(parameterisation="lazy")
