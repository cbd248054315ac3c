"""The four tasks of Huang et al. (solution degeneracy across task-trained RNNs).

Every task generates trials as numpy arrays ``inputs (trial, time, in)``, ``targets (trial,
time, out)`` and ``mask (trial, time, out)`` (1 where the loss counts), from an explicit
``numpy.random.Generator``. ``ood=True`` gives the out-of-distribution variant used for
behavioural degeneracy: trials twice as long (for delayed discrimination, only the delay
doubles). The paper's trial lengths were not available; the defaults here are stated in each
config and documented in the field comments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.config import Config, bounded, choice, integer

__all__ = ["FlipFlop", "DelayedDiscrimination", "SineGeneration", "PathIntegration", "TASKS", "make_task", "Trials"]


@dataclass
class Trials:
    inputs: np.ndarray  # (trial, time, in) float32
    targets: np.ndarray  # (trial, time, out) float32
    mask: np.ndarray  # (trial, time, out) float32, 1 where the loss counts


@dataclass(frozen=True)
class FlipFlop(Config):
    """N-bit flip-flop: sparse +-1 pulses per channel; each output holds its last pulse's sign."""

    channels: int = integer(3, 1, 16, doc="independent bits N (2^N stable states)")
    steps: int = integer(60, 5, 10_000, doc="time steps per trial")
    pulse_prob: float = bounded(0.05, 0.0, 1.0, lo_open=True, doc="chance of a pulse per channel and step")
    threshold: float = bounded(1e-3, 0.0, 10.0, lo_open=True, doc="convergence MSE")

    @property
    def n_in(self) -> int:
        return self.channels

    @property
    def n_out(self) -> int:
        return self.channels

    def generate(self, n: int, rng: np.random.Generator, *, ood: bool = False) -> Trials:
        t = self.steps * (2 if ood else 1)
        pulses = rng.random((n, t, self.channels)) < self.pulse_prob
        signs = np.where(rng.random((n, t, self.channels)) < 0.5, -1.0, 1.0)
        inputs = (pulses * signs).astype(np.float32)
        targets = np.zeros_like(inputs)
        state = np.zeros((n, self.channels), np.float32)
        for k in range(t):  # the output holds the sign of the channel's last pulse (0 before any)
            state = np.where(pulses[:, k], signs[:, k], state)
            targets[:, k] = state
        return Trials(inputs, targets, np.ones_like(targets))


@dataclass(frozen=True)
class DelayedDiscrimination(Config):
    """Two pulses f1, f2 in [2, 10] separated by a delay; answer sign(f2 - f1) (and |f2 - f1|)."""

    delay_min: int = integer(5, 1, 1000, doc="shortest delay between the pulses (steps)")
    delay_max: int = integer(20, 1, 1000, doc="longest delay (steps)")
    aux_output: bool = choice(False, (False, True), doc="also output |f2 - f1| / 8")
    lead: int = integer(5, 0, 1000, doc="steps before the first pulse")
    response: int = integer(10, 1, 1000, doc="response steps after the second pulse (where the loss counts)")
    threshold: float = bounded(1e-2, 0.0, 10.0, lo_open=True, doc="convergence MSE")

    def check(self) -> None:
        if self.delay_max < self.delay_min:
            raise ValueError(f"delay_max={self.delay_max} is out of range: must be >= delay_min={self.delay_min}")

    @property
    def n_in(self) -> int:
        return 1

    @property
    def n_out(self) -> int:
        return 2 if self.aux_output else 1

    def generate(self, n: int, rng: np.random.Generator, *, ood: bool = False) -> Trials:
        scale = 2 if ood else 1
        d_lo, d_hi = self.delay_min * scale, self.delay_max * scale
        t = self.lead + 1 + d_hi + 1 + self.response
        f1 = rng.uniform(2.0, 10.0, n)
        f2 = rng.uniform(2.0, 10.0, n)
        delay = rng.integers(d_lo, d_hi + 1, n)
        inputs = np.zeros((n, t, 1), np.float32)
        targets = np.zeros((n, t, self.n_out), np.float32)
        mask = np.zeros_like(targets)
        trials = np.arange(n)
        second = self.lead + 1 + delay
        inputs[trials, self.lead, 0] = f1 / 10.0  # pulse amplitude encodes the frequency
        inputs[trials, second, 0] = f2 / 10.0
        for k in range(self.response):
            targets[trials, second + 1 + k, 0] = np.sign(f2 - f1)
            if self.aux_output:
                targets[trials, second + 1 + k, 1] = np.abs(f2 - f1) / 8.0
            mask[trials, second + 1 + k, :] = 1.0
        return Trials(inputs, targets, mask)


@dataclass(frozen=True)
class SineGeneration(Config):
    """A static input encodes f; output sin(2 pi f t). Trained on N frequencies in [1, 30] Hz."""

    frequencies: int = integer(4, 1, 64, doc="number of training frequencies, evenly spaced in [1, 30] Hz")
    steps: int = integer(100, 5, 10_000, doc="time steps per trial")
    dt: float = bounded(0.005, 0.0, 0.1, lo_open=True, units="s", doc="time per step")
    threshold: float = bounded(5e-2, 0.0, 10.0, lo_open=True, doc="convergence MSE")

    @property
    def n_in(self) -> int:
        return 1

    @property
    def n_out(self) -> int:
        return 1

    @property
    def training_frequencies(self) -> np.ndarray:
        return np.linspace(1.0, 30.0, self.frequencies) if self.frequencies > 1 else np.array([15.0])

    def generate(self, n: int, rng: np.random.Generator, *, ood: bool = False) -> Trials:
        t = self.steps * (2 if ood else 1)
        f = rng.choice(self.training_frequencies, n)
        time = np.arange(1, t + 1) * self.dt
        inputs = np.repeat((f / 30.0)[:, None, None], t, axis=1).astype(np.float32)
        targets = np.sin(2 * np.pi * f[:, None] * time[None, :])[:, :, None].astype(np.float32)
        return Trials(inputs, targets, np.ones_like(targets))


@dataclass(frozen=True)
class PathIntegration(Config):
    """Integrate heading and speed into a position bounded in [-5, 5] (walls reflect), 2-D or 3-D."""

    dims: int = integer(2, 2, 3, doc="2-D (heading, speed) or 3-D (azimuth, elevation, speed)")
    steps: int = integer(50, 5, 10_000, doc="time steps per trial")
    speed_max: float = bounded(0.5, 0.0, 5.0, lo_open=True, doc="largest step length")
    threshold: float = bounded(5e-2, 0.0, 10.0, lo_open=True, doc="convergence MSE")

    @property
    def n_in(self) -> int:
        return 3 if self.dims == 2 else 5  # (cos, sin) per angle, then speed

    @property
    def n_out(self) -> int:
        return self.dims

    def generate(self, n: int, rng: np.random.Generator, *, ood: bool = False) -> Trials:
        t = self.steps * (2 if ood else 1)
        speed = rng.uniform(0.0, self.speed_max, (n, t))
        azimuth = rng.uniform(-np.pi, np.pi, (n, t))
        if self.dims == 2:
            step = np.stack([np.cos(azimuth), np.sin(azimuth)], -1)
            angles = [np.cos(azimuth), np.sin(azimuth)]
        else:
            elevation = np.arcsin(rng.uniform(-1.0, 1.0, (n, t)))  # uniform on the sphere
            step = np.stack(
                [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)], -1
            )
            angles = [np.cos(azimuth), np.sin(azimuth), np.cos(elevation), np.sin(elevation)]
        inputs = np.stack([*angles, speed], -1).astype(np.float32)
        pos = np.zeros((n, self.dims))
        targets = np.zeros((n, t, self.dims), np.float32)
        for k in range(t):
            pos = pos + speed[:, k, None] * step[:, k]
            pos = np.where(pos > 5.0, 10.0 - pos, pos)  # reflect at the walls
            pos = np.where(pos < -5.0, -10.0 - pos, pos)
            targets[:, k] = pos
        return Trials(inputs, targets, np.ones_like(targets))


TASKS = {"flipflop": FlipFlop, "discrimination": DelayedDiscrimination, "sine": SineGeneration, "path": PathIntegration}


def make_task(name: str, **knobs):
    """A task config by name (``flipflop``, ``discrimination``, ``sine``, ``path``)."""
    if name not in TASKS:
        raise ValueError(f"task={name!r} is not allowed: choose one of {', '.join(TASKS)}")
    return TASKS[name](**knobs)
