"""Grokking on modular addition: Fourier measures, data split, model, task run, and the delay itself."""

import numpy as np
import pytest
import torch

from engine.emergence.base import Probed
from engine.emergence.config import EmergenceConfig
from engine.emergence.grokking import (
    GrokkingRun,
    ModAddNet,
    ModularAddition,
    fourier_concentration,
    fourier_power,
    fourier_spectrum,
    neuron_frequencies,
)


def cosines(p: int, freqs, phases=None, amplitudes=None) -> np.ndarray:
    """``(p, n)``: column j is ``A_j cos(2π k_j a / p + φ_j)``."""
    freqs = np.asarray(freqs)
    phases = np.zeros(len(freqs)) if phases is None else np.asarray(phases)
    amplitudes = np.ones(len(freqs)) if amplitudes is None else np.asarray(amplitudes)
    a = np.arange(p)[:, None]  # (p, 1)
    return amplitudes * np.cos(2 * np.pi * freqs * a / p + phases)  # (p, n)


# -- Fourier measures ----------------------------------------------------------------------------
class TestFourier:
    @pytest.mark.parametrize("p", [23, 59])
    def test_cosines_give_their_frequency_with_purity_one(self, p):
        rng = np.random.default_rng(0)
        freqs = np.arange((p - 1) // 2 + 1)  # every frequency, 0 included
        W = cosines(p, freqs, rng.uniform(0, 2 * np.pi, freqs.size), rng.uniform(0.5, 2.0, freqs.size))
        dominant, purity = neuron_frequencies(W)
        np.testing.assert_array_equal(dominant, freqs)
        np.testing.assert_allclose(purity, 1.0, atol=1e-12)
        assert fourier_concentration(W) == pytest.approx(1.0, abs=1e-12)

    def test_spectrum_is_the_share_of_squared_amplitude(self):
        p = 31
        freqs, amps = [3, 3, 7, 12], np.array([1.0, 2.0, 1.0, 3.0])
        spec = fourier_spectrum(cosines(p, freqs, [0.3, 1.1, 2.0, -0.5], amps))
        want = np.zeros(16)
        for k, amp in zip(freqs, amps, strict=True):
            want[k] += amp**2
        np.testing.assert_allclose(spec, want / want.sum(), atol=1e-12)

    def test_power_obeys_parseval_and_has_one_row_per_frequency(self):
        W = np.random.default_rng(1).normal(size=(59, 7))
        power = fourier_power(W)
        assert power.shape == (30, 7)
        np.testing.assert_allclose(power.sum(axis=0), 59 * (W**2).sum(axis=0), rtol=1e-12)

    def test_even_length_keeps_the_nyquist_frequency(self):
        p = 8
        W = np.stack([(-1.0) ** np.arange(p), np.cos(2 * np.pi * 3 * np.arange(p) / p)], axis=1)
        dominant, purity = neuron_frequencies(W)
        np.testing.assert_array_equal(dominant, [4, 3])
        np.testing.assert_allclose(purity, 1.0, atol=1e-12)

    def test_second_matrix_adds_its_power_per_unit(self):
        p = 23
        Wa = cosines(p, [5, 2], amplitudes=[2.0, 1.0])
        Wb = cosines(p, [5, 9], phases=[np.pi / 2, 0.0], amplitudes=[1.0, 1.0])
        dominant, purity = neuron_frequencies(Wa, Wb)
        np.testing.assert_array_equal(dominant[0], 5)
        assert purity[0] == pytest.approx(1.0, abs=1e-12)  # cos and sin at one frequency
        assert purity[1] == pytest.approx(0.5, abs=1e-12)  # two equal powers at 2 and 9
        spec = fourier_spectrum(Wa, Wb)
        np.testing.assert_allclose(spec[[2, 5, 9]], np.array([1.0, 5.0, 1.0]) / 7.0, atol=1e-12)

    def test_random_matrix_is_far_from_concentrated(self):
        W = np.random.default_rng(2).normal(size=(59, 256))
        _, purity = neuron_frequencies(W)
        assert 0.05 < fourier_concentration(W) < 0.3
        assert purity.max() < 0.5

    def test_zero_matrix_gives_zeros(self):
        W = np.zeros((23, 3))
        np.testing.assert_array_equal(fourier_spectrum(W), 0.0)
        dominant, purity = neuron_frequencies(W)
        np.testing.assert_array_equal(purity, 0.0)
        np.testing.assert_array_equal(dominant, 0)
        assert fourier_concentration(W) == 0.0

    def test_bad_shapes_raise(self):
        with pytest.raises(ValueError, match="tokens, units"):
            fourier_power(np.zeros(23))
        with pytest.raises(ValueError, match="one shape"):
            fourier_spectrum(np.zeros((23, 4)), np.zeros((23, 5)))


# -- data ----------------------------------------------------------------------------------------
class TestModularAddition:
    def test_sizes_disjointness_and_cover(self):
        d = ModularAddition(23, 0.4, seed=0)
        assert d.train.size == round(0.4 * 23**2) and d.test.size == 23**2 - d.train.size
        assert np.intersect1d(d.train, d.test).size == 0
        np.testing.assert_array_equal(np.union1d(d.train, d.test), np.arange(23**2))

    def test_labels_are_the_sum_mod_p_and_every_pair_appears_once(self):
        p = 29
        d = ModularAddition(p, 0.5, seed=3)
        np.testing.assert_array_equal(d.labels, (d.a + d.b) % p)
        assert len(set(zip(d.a.tolist(), d.b.tolist(), strict=True))) == p * p
        assert d.labels.min() == 0 and d.labels.max() == p - 1

    def test_seeded_split(self):
        one, two = ModularAddition(23, 0.3, seed=5), ModularAddition(23, 0.3, seed=5)
        np.testing.assert_array_equal(one.train, two.train)
        assert not np.array_equal(one.train, ModularAddition(23, 0.3, seed=6).train)

    def test_tiny_fraction_keeps_one_pair_each_side(self):
        d = ModularAddition(3, 0.01, seed=0)
        assert d.train.size == 1 and d.test.size == 8

    @pytest.mark.parametrize("fraction", [0.0, 1.0])
    def test_fraction_out_of_range(self, fraction):
        with pytest.raises(ValueError, match="train_fraction"):
            ModularAddition(23, fraction, seed=0)


# -- config --------------------------------------------------------------------------------------
class TestConfig:
    def test_defaults_are_valid(self):
        cfg = EmergenceConfig.for_task("grokking")
        assert cfg.modulus == 59 and cfg.activation == "quadratic" and cfg.weight_decay > 0

    @pytest.mark.parametrize("p", [57, 91, 100])
    def test_composite_modulus_rejected(self, p):
        with pytest.raises(ValueError, match=f"modulus={p}"):
            EmergenceConfig.for_task("grokking", modulus=p)

    @pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
    def test_train_fraction_must_be_inside_zero_one(self, fraction):
        with pytest.raises(ValueError, match="train_fraction"):
            EmergenceConfig.for_task("grokking", train_fraction=fraction)

    def test_activation_choice(self):
        with pytest.raises(ValueError, match="activation"):
            EmergenceConfig.for_task("grokking", activation="tanh")


# -- model ---------------------------------------------------------------------------------------
class TestModel:
    @pytest.mark.parametrize("activation", ["quadratic", "relu"])
    def test_forward_is_sigma_of_summed_embeddings_times_readout(self, activation):
        net = ModAddNet(7, 16, activation, seed=0)
        a, b = torch.tensor([0, 3, 6]), torch.tensor([1, 1, 5])
        x = net.embed_a[a] + net.embed_b[b]
        h = x**2 if activation == "quadratic" else torch.relu(x)
        torch.testing.assert_close(net(a, b), h @ net.readout)
        assert net(a, b).shape == (3, 7)

    def test_seeded_init_leaves_global_rng_alone(self):
        torch.manual_seed(123)
        before = torch.rand(1)
        torch.manual_seed(123)
        one = ModAddNet(11, 32, seed=4)
        assert torch.equal(torch.rand(1), before)
        two = ModAddNet(11, 32, seed=4)
        for p1, p2 in zip(one.parameters(), two.parameters(), strict=True):
            assert torch.equal(p1, p2)
        assert not torch.equal(one.embed_a, ModAddNet(11, 32, seed=5).embed_a)

    def test_init_scales(self):
        net = ModAddNet(59, 512, seed=0)
        assert net.embed_a.std().item() == pytest.approx(1.0, rel=0.05)
        assert net.readout.std().item() == pytest.approx(512**-0.5, rel=0.05)

    def test_bad_activation(self):
        with pytest.raises(ValueError, match="activation"):
            ModAddNet(7, 8, "tanh", seed=0)


# -- task run ------------------------------------------------------------------------------------
def small_config(**overrides) -> EmergenceConfig:
    return EmergenceConfig.for_task("grokking", **{"modulus": 23, "hidden": 32, **overrides})


class TestGrokkingRun:
    def test_probe_names_dims_and_attrs(self):
        run = GrokkingRun(small_config())
        probed = run.probe()
        dims = {
            "train_acc": (),
            "test_acc": (),
            "train_loss": (),
            "test_loss": (),
            "fourier_concentration": (),
            "spectrum": ("frequency",),
            "neuron_freq": ("neuron",),
            "neuron_purity": ("neuron",),
        }
        assert {k: v.dims for k, v in probed.items()} == dims
        for name, value in probed.items():
            assert isinstance(value, Probed) and value.long_name and value.units is not None, name
            assert np.all(np.isfinite(value.values)), name
        assert probed["spectrum"].values.shape == (12,)
        assert probed["spectrum"].values.sum() == pytest.approx(1.0)
        assert probed["neuron_purity"].values.shape == (32,)
        assert probed["train_acc"].units == "1" and probed["train_loss"].units == "nats"

    def test_static_coordinates(self):
        static = GrokkingRun(small_config()).static()
        freq, is_coord = static["frequency"]
        assert is_coord and freq.dims == ("frequency",) and freq.units
        np.testing.assert_array_equal(freq.values, np.arange(12))
        np.testing.assert_array_equal(static["neuron"][0].values, np.arange(32))

    def test_same_seed_same_run(self):
        def go():
            run = GrokkingRun(small_config(seed=7))
            losses = [run.train_step(s) for s in range(5)]
            return losses, run.probe()

        (l1, p1), (l2, p2) = go(), go()
        assert l1 == l2
        for name in p1:
            np.testing.assert_array_equal(p1[name].values, p2[name].values)

    def test_training_lowers_the_loss_and_returns_it(self):
        run = GrokkingRun(small_config(lr=1e-2))
        losses = [run.train_step(s) for s in range(30)]
        assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0]
        assert run.probe()["train_loss"].values == pytest.approx(run.train_step(30), rel=1e-5)

    def test_optimizer_follows_config(self):
        run = GrokkingRun(small_config(optimizer="sgd", weight_decay=0.5))
        assert isinstance(run.optimizer, torch.optim.SGD)
        assert run.optimizer.param_groups[0]["weight_decay"] == 0.5


# -- science -------------------------------------------------------------------------------------
def trace(cfg: EmergenceConfig, steps: int, every: int = 25) -> tuple[np.ndarray, float]:
    """Rows (step, train acc, test acc, Fourier concentration) every ``every`` steps; the concentration at init."""
    torch.set_num_threads(1)
    run = GrokkingRun(cfg)
    start = float(run.probe()["fourier_concentration"].values)
    rows = []
    for step in range(steps):
        run.train_step(step)
        if (step + 1) % every == 0:
            p = run.probe()
            rows.append([step + 1, *(float(p[k].values) for k in ("train_acc", "test_acc", "fourier_concentration"))])
    return np.array(rows), start


def first_step(rows: np.ndarray, column: int, threshold: float) -> float:
    hit = rows[:, column] >= threshold
    return rows[np.argmax(hit), 0] if hit.any() else np.inf


@pytest.mark.slow
def test_test_accuracy_rises_long_after_train_accuracy():
    rows, start = trace(EmergenceConfig.for_task("grokking", seed=0), 1300)
    train90, test50 = first_step(rows, 1, 0.9), first_step(rows, 2, 0.5)
    assert train90 <= 300
    assert rows[rows[:, 0] == train90, 2][0] < 0.1  # memorised, not generalised
    assert test50 >= 3 * train90
    assert rows[-1, 1] == 1.0 and rows[-1, 2] > 0.9
    assert start < 0.15 and rows[-1, 3] > start + 0.4


@pytest.mark.slow
def test_without_weight_decay_no_features_emerge():
    rows, start = trace(EmergenceConfig.for_task("grokking", seed=0, weight_decay=0.0), 1000, every=100)
    assert rows[-1, 1] == 1.0
    assert rows[:, 2].max() < 0.1
    assert rows[-1, 3] < start + 0.15
