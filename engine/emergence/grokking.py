"""Grokking on modular addition: a two-layer network whose embeddings turn into Fourier modes.

Task (Power et al. 2022; Gromov 2023; Tian 2025): the ``p²`` pairs ``(a, b)`` of residues modulo a
prime ``p``, each labelled ``(a + b) mod p``. A seeded permutation puts ``round(train_fraction p²)``
pairs in the training set and the rest in the test set; training is full batch.

Model (the two-layer network of Gromov 2023 and of Tian's Li₂ analysis): with one-hot inputs the
first layer on the concatenation ``[e_a, e_b]`` is two embedding matrices ``W_a, W_b`` of shape
``(p, hidden)``, so ::

    h = σ(W_a[a] + W_b[b])          # (batch, hidden)
    logits = h V                    # (batch, p),  V: (hidden, p)

with ``σ(x) = x²`` (quadratic, the solvable case) or ``σ(x) = max(x, 0)``. There are no biases.
Initialisation: ``W_a, W_b ~ N(0, 1)`` and ``V ~ N(0, 1/hidden)`` (:data:`EMBED_STD`,
:data:`READOUT_GAIN`), each matrix from its own ``torch.Generator`` seeded from ``seed`` and the
matrix's name. Training minimises the cross-entropy of the logits, full batch, with the
configured optimiser (AdamW by default; weight decay on every matrix,
:func:`engine.transformer.model.make_optimizer`). Cross-entropy, not Gromov's MSE: with MSE on
one-hot targets at the same settings, train and test accuracy rise together (no delay), while
cross-entropy first memorises the training pairs and generalises six to seven times later. ReLU
groks too, more slowly (at ``lr = 1e-2`` test accuracy crosses 90% after about 2000 steps,
against about 1000 for the quadratic network at the task defaults).

Fourier features. For a matrix ``W`` of shape ``(p, n)`` (tokens × units), the DFT along the
token axis is ``F_k = Σ_a W[a] exp(-2πi k a / p)``. Frequencies ``k`` and ``p - k`` describe the
same real mode, so the power at frequency ``k = 0 .. (p-1)/2`` is ::

    P_0 = |F_0|²,    P_k = |F_k|² + |F_{p-k}|²   (k ≥ 1)

per unit (column), and ``Σ_k P_k = p Σ_a W[a]²`` (Parseval). For the network, a hidden unit's
power is the sum of its power in ``W_a`` and in ``W_b``. The measures:

- ``spectrum``: ``Σ_units P_k / Σ_units Σ_k P_k``, the share of the embedding power at each
  frequency (:func:`fourier_spectrum`).
- ``neuron_freq``, ``neuron_purity``: each unit's dominant frequency ``argmax_k P_k`` and the
  share ``max_k P_k / Σ_k P_k`` of its power there (:func:`neuron_frequencies`). A column
  ``cos(2π k a / p + φ)`` has dominant frequency ``k`` and purity 1.
- ``fourier_concentration``: ``Σ_units max_k P_k / Σ_units Σ_k P_k``, the share of all embedding
  power that lies at its own unit's dominant frequency (the power-weighted mean purity). At a
  Gaussian initialisation it is the mean largest share among ``(p+1)/2`` random powers (about
  0.10 at ``p = 59``); when every unit has become one Fourier mode — the generalising solution
  of Gromov (2023), whose units each carry a single frequency, spread over frequencies — it is
  1. The global ``spectrum`` need not sharpen (the units share the frequencies out), so the
  concentration is taken per unit.

Tian (2025) shows that weight decay is what lets these features emerge after the network has
memorised the training pairs; test accuracy rises long after train accuracy (grokking).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engine.emergence.base import Probed, TaskRun
from engine.emergence.config import EmergenceConfig
from engine.transformer.model import make_optimizer

__all__ = [
    "GrokkingRun",
    "ModAddNet",
    "ModularAddition",
    "fourier_power",
    "fourier_spectrum",
    "fourier_concentration",
    "neuron_frequencies",
    "EMBED_STD",
    "READOUT_GAIN",
]


# ---------------------------------------------------------------------------------------------
# Fourier measures (numpy)


def fourier_power(W: np.ndarray) -> np.ndarray:
    """``(p, n)`` -> ``(p//2 + 1, n)``: each column's power ``P_k`` at frequency ``k = 0 .. p//2``.

    ``P_0 = |F_0|²`` and ``P_k = |F_k|² + |F_{p-k}|²`` with ``F`` the DFT along the token axis (for
    even ``p`` the last row, ``k = p/2``, is ``|F_{p/2}|²`` alone); the rows sum to ``p Σ_a W[a]²``.
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W has shape {W.shape}: expected (tokens, units)")
    p = W.shape[0]
    spec = np.abs(np.fft.fft(W, axis=0)) ** 2  # (p, n)
    half = (p - 1) // 2
    power = spec[: half + 1].copy()  # (freq, n)
    power[1:] += spec[p - 1 : p - half - 1 : -1]  # |F_{p-k}|², k = 1 .. half
    if p % 2 == 0:  # the Nyquist frequency p/2 pairs with itself
        power = np.vstack([power, spec[p // 2][None]])
    return power


def _summed_power(W: np.ndarray, more: tuple[np.ndarray, ...]) -> np.ndarray:
    power = fourier_power(W)
    for M in more:
        if np.shape(M) != np.shape(W):
            raise ValueError(f"matrices of shapes {np.shape(W)} and {np.shape(M)}: expected one shape")
        power = power + fourier_power(M)
    return power  # (freq, n)


def fourier_spectrum(W: np.ndarray, *more: np.ndarray) -> np.ndarray:
    """``(p, n)`` -> ``(freq,)``: the share of the total power of ``W`` at each frequency.

    With further matrices of the same shape (``W_b`` beside ``W_a``), their power is added before
    taking shares. An all-zero input gives all zeros.
    """
    power = _summed_power(W, more).sum(axis=1)  # (freq,)
    total = power.sum()
    return power / total if total > 0 else np.zeros_like(power)


def neuron_frequencies(W: np.ndarray, *more: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p, n)`` -> ``(dominant, purity)``, each ``(n,)``: every column's dominant frequency and the
    share of its power there. Further matrices of the same shape add their power per column (a
    hidden unit's power in ``W_a`` and ``W_b``). A column with no power has frequency 0, purity 0.
    """
    power = _summed_power(W, more)  # (freq, n)
    dominant = power.argmax(axis=0)  # (n,)
    total = power.sum(axis=0)  # (n,)
    top = power[dominant, np.arange(power.shape[1])]  # (n,)
    purity = np.divide(top, total, out=np.zeros_like(top), where=total > 0)
    return dominant.astype(np.int64), purity


def fourier_concentration(W: np.ndarray, *more: np.ndarray) -> float:
    """The share of all power lying at its own column's dominant frequency (power-weighted purity)."""
    power = _summed_power(W, more)  # (freq, n)
    total = power.sum()
    return float(power.max(axis=0).sum() / total) if total > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Data


class ModularAddition:
    """All ``p²`` pairs ``(a, b)`` labelled ``(a + b) mod p``, split by a seeded permutation.

    ``a``, ``b``, ``labels``: ``(p²,)`` int64 in row-major order (pair ``i`` is ``(i // p, i % p)``);
    ``train``, ``test``: sorted, disjoint index arrays into them, of sizes
    ``round(train_fraction p²)`` (at least 1, at most ``p² - 1``) and the rest. The permutation is
    ``numpy.random.default_rng(seed).permutation(p²)``.
    """

    def __init__(self, p: int, train_fraction: float, *, seed: int) -> None:
        if not (isinstance(p, int) and p >= 2):
            raise ValueError(f"modulus={p!r} is out of range: allowed integers >= 2")
        if not 0.0 < train_fraction < 1.0:
            raise ValueError(f"train_fraction={train_fraction} is out of range: allowed (0, 1)")
        self.p = p
        self.train_fraction = float(train_fraction)
        self.seed = seed
        idx = np.arange(p * p)
        self.a = idx // p  # (p²,)
        self.b = idx % p  # (p²,)
        self.labels = (self.a + self.b) % p  # (p²,)
        n_train = min(max(round(train_fraction * p * p), 1), p * p - 1)
        perm = np.random.default_rng(seed).permutation(p * p)
        self.train = np.sort(perm[:n_train])
        self.test = np.sort(perm[n_train:])


# ---------------------------------------------------------------------------------------------
# Model

# Initialisation: W_a, W_b ~ N(0, EMBED_STD²), V ~ N(0, READOUT_GAIN² / hidden). The pre-activation
# W_a[a] + W_b[b] then has variance 2, and each logit a standard deviation of about sqrt(E[σ(x)²]):
# sqrt(12) ≈ 3.5 for x² and 1 for ReLU, whatever the width. Halving or doubling EMBED_STD still
# groks at the task defaults (test accuracy crosses 50% at step 625 and 1000 instead of 775).
EMBED_STD = 1.0
READOUT_GAIN = 1.0


class ModAddNet(nn.Module):
    """``logits = σ(W_a[a] + W_b[b]) V`` (see the module docstring); seeded, bias-free."""

    def __init__(self, p: int, hidden: int, activation: str = "quadratic", *, seed: int) -> None:
        super().__init__()
        if activation not in ("quadratic", "relu"):
            raise ValueError(f"activation={activation!r} is not allowed: choose one of quadratic, relu")
        self.p, self.hidden, self.activation = p, hidden, activation
        self.embed_a = nn.Parameter(_normal((p, hidden), EMBED_STD, seed, "embed_a"))  # (p, hidden)
        self.embed_b = nn.Parameter(_normal((p, hidden), EMBED_STD, seed, "embed_b"))  # (p, hidden)
        self.readout = nn.Parameter(_normal((hidden, p), READOUT_GAIN / hidden**0.5, seed, "readout"))  # (hidden, p)

    def hidden_of(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = self.embed_a[a] + self.embed_b[b]  # (batch, hidden)
        return x * x if self.activation == "quadratic" else torch.relu(x)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.hidden_of(a, b) @ self.readout  # (batch, p)


def _normal(shape: tuple[int, ...], std: float, seed: int, name: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    return torch.randn(shape, generator=gen) * std


# ---------------------------------------------------------------------------------------------
# The task run


class GrokkingRun(TaskRun):
    """Full-batch training on the training pairs; probes accuracy, loss and the Fourier features.

    Reads ``modulus``, ``train_fraction``, ``hidden``, ``activation``, ``optimizer``, ``lr``,
    ``weight_decay`` and ``seed`` from the config.
    """

    def __init__(self, cfg: EmergenceConfig) -> None:
        self.cfg = cfg
        self.data = ModularAddition(cfg.modulus, cfg.train_fraction, seed=cfg.seed)
        self.model = ModAddNet(cfg.modulus, cfg.hidden, cfg.activation, seed=cfg.seed)
        self.optimizer = make_optimizer(self.model, cfg.optimizer, cfg.lr, weight_decay=cfg.weight_decay)
        d = self.data
        self._a, self._b, self._y = (torch.from_numpy(x) for x in (d.a, d.b, d.labels))  # (p²,) each
        self._train, self._test = torch.from_numpy(d.train), torch.from_numpy(d.test)
        tr = self._train
        self._train_a, self._train_b, self._train_y = self._a[tr], self._b[tr], self._y[tr]  # (n_train,) each

    @property
    def frequencies(self) -> np.ndarray:
        """The frequency coordinate ``0 .. (p-1)//2``."""
        return np.arange((self.cfg.modulus - 1) // 2 + 1)

    def train_step(self, step: int) -> float:
        logits = self.model(self._train_a, self._train_b)  # (n_train, p)
        loss = F.cross_entropy(logits, self._train_y)
        return self.descend(loss)

    def probe(self) -> dict[str, Probed]:
        out: dict[str, Probed] = {}
        with torch.no_grad():
            logits = self.model(self._a, self._b)  # (p², p)
            correct = (logits.argmax(dim=1) == self._y).double()  # (p²,)
            for part, idx in (("train", self._train), ("test", self._test)):
                acc = float(correct[idx].mean())
                loss = float(F.cross_entropy(logits[idx], self._y[idx]))
                out[f"{part}_acc"] = Probed((), np.float64(acc), f"{part} accuracy", "1")
                out[f"{part}_loss"] = Probed((), np.float64(loss), f"{part} loss (cross-entropy)", "nats")
        Wa = self.model.embed_a.detach().numpy()  # (p, hidden)
        Wb = self.model.embed_b.detach().numpy()  # (p, hidden)
        dominant, purity = neuron_frequencies(Wa, Wb)  # (hidden,) each
        out["spectrum"] = Probed(
            ("frequency",), fourier_spectrum(Wa, Wb), "share of the embedding power at each frequency", "1"
        )
        out["neuron_freq"] = Probed(("neuron",), dominant, "dominant embedding frequency of each unit", "cycles / p")
        out["neuron_purity"] = Probed(("neuron",), purity, "share of a unit's power at its dominant frequency", "1")
        out["fourier_concentration"] = Probed(
            (), np.float64(fourier_concentration(Wa, Wb)), "share of the power at each unit's dominant frequency", "1"
        )
        return out

    def static(self) -> dict[str, tuple[Probed, bool]]:
        frequency = Probed(("frequency",), self.frequencies, "Fourier frequency k of the token axis", "cycles / p")
        neuron = Probed(("neuron",), np.arange(self.cfg.hidden), "hidden unit", "")
        return {"frequency": (frequency, True), "neuron": (neuron, True)}
