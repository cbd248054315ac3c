"""Each task's trial generator against its definition."""

import numpy as np
import pytest

from engine.rnn import DelayedDiscrimination, FlipFlop, PathIntegration, SineGeneration, make_task


def test_flipflop_outputs_hold_the_last_pulse():
    task = FlipFlop(channels=3, steps=80, pulse_prob=0.1)
    tr = task.generate(16, np.random.default_rng(0))
    assert tr.inputs.shape == tr.targets.shape == (16, 80, 3)
    assert set(np.unique(tr.inputs)) <= {-1.0, 0.0, 1.0}
    for b in range(16):
        for c in range(3):
            last = 0.0
            for t in range(80):
                if tr.inputs[b, t, c] != 0:
                    last = tr.inputs[b, t, c]
                assert tr.targets[b, t, c] == last
    assert (tr.inputs != 0).mean() == pytest.approx(0.1, abs=0.02)
    assert task.generate(2, np.random.default_rng(0), ood=True).inputs.shape[1] == 160


def test_discrimination_answers_the_sign_of_the_difference():
    task = DelayedDiscrimination(aux_output=True)
    tr = task.generate(64, np.random.default_rng(1))
    for b in range(64):
        pulses = np.flatnonzero(tr.inputs[b, :, 0])
        assert len(pulses) == 2
        f1, f2 = tr.inputs[b, pulses, 0] * 10
        assert 2 <= f1 <= 10 and 2 <= f2 <= 10
        assert task.delay_min <= pulses[1] - pulses[0] - 1 <= task.delay_max
        answer = np.flatnonzero(tr.mask[b, :, 0])
        assert answer[0] == pulses[1] + 1 and len(answer) == task.response
        np.testing.assert_allclose(tr.targets[b, answer, 0], np.sign(f2 - f1))
        np.testing.assert_allclose(tr.targets[b, answer, 1], abs(f2 - f1) / 8, rtol=1e-5)
        assert tr.targets[b, : pulses[1] + 1].sum() == 0
    ood = task.generate(64, np.random.default_rng(1), ood=True)
    gaps = [np.diff(np.flatnonzero(ood.inputs[b, :, 0]))[0] - 1 for b in range(64)]
    assert min(gaps) >= 2 * task.delay_min and max(gaps) <= 2 * task.delay_max


def test_sine_follows_its_frequency():
    task = SineGeneration(frequencies=4, steps=200)
    tr = task.generate(8, np.random.default_rng(2))
    for b in range(8):
        f = tr.inputs[b, 0, 0] * 30
        assert np.isclose(f, task.training_frequencies).any()
        t = np.arange(1, 201) * task.dt
        np.testing.assert_allclose(tr.targets[b, :, 0], np.sin(2 * np.pi * f * t), atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_path_integration_sums_steps_within_walls(dims):
    task = PathIntegration(dims=dims, steps=100)
    tr = task.generate(8, np.random.default_rng(3))
    assert tr.inputs.shape == (8, 100, task.n_in) and tr.targets.shape == (8, 100, dims)
    assert np.abs(tr.targets).max() <= 5.0
    speed = tr.inputs[..., -1]
    moved = np.linalg.norm(np.diff(tr.targets, axis=1), axis=-1)
    # away from the walls each step moves exactly by the input speed
    inside = (np.abs(tr.targets[:, 1:]) < 5 - task.speed_max).all(-1) & (np.abs(tr.targets[:, :-1]) < 5).all(-1)
    np.testing.assert_allclose(moved[inside], speed[:, 1:][inside], rtol=1e-4, atol=1e-5)


def test_bad_task_knobs_are_rejected():
    with pytest.raises(ValueError, match="channels=0"):
        FlipFlop(channels=0)
    with pytest.raises(ValueError, match="task='nope'"):
        make_task("nope")
    with pytest.raises(ValueError, match="delay_max=3"):
        DelayedDiscrimination(delay_min=5, delay_max=3)
