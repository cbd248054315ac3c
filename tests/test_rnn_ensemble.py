"""Batched ensemble training is exactly K independent trainings; the stopping rule holds."""

import numpy as np
import pytest
import torch

from engine.rnn import FlipFlop, TrainConfig, train_ensemble


@pytest.mark.parametrize(("clip", "half_life"), [(0.0, 0.0), (0.05, 10.0)])
def test_ensemble_equals_separate_trainings(clip, half_life):
    torch.set_num_threads(1)
    task = FlipFlop(channels=2, steps=20)
    cfg = TrainConfig(
        hidden=16, networks=3, seed=10, batch=8, max_steps=40, epoch_steps=10, clip=clip, lr_half_life=half_life
    )
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
