"""Ensembles of vanilla tanh RNNs trained as one batched tensor program.

The model of Huang et al.: ``h_t = tanh(W_h h_{t-1} + W_x x_t + b)``, ``y_t = W_o h_t + b_o``,
``h_0 = 0``, every weight initialised U(-1/sqrt(n), 1/sqrt(n)), BPTT on the masked MSE, Adam
without weight decay. K networks live in (K, ...) tensors and train under one Adam on the sum
of their losses. Adam's update is elementwise, each network sees only its own gradient, and
each network draws its own initialisation and trial batches from its own seed, so the
ensemble is exactly K independent trainings (a test checks it); it is just cheaper per
network on a CPU.

Stopping rule (the paper's): a network has converged when its epoch-mean training MSE stays
below the task's threshold for ``patience`` consecutive epochs; from then on its parameters are
frozen. A network whose loss becomes non-finite or exceeds ``diverge_at`` is frozen at its last
finite parameters and marked diverged. Training stops when no network is still learning or
at ``max_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from engine.config import Config, bounded, integer

__all__ = ["TrainConfig", "EnsembleRNN", "EnsembleResult", "train_ensemble"]


@dataclass(frozen=True)
class TrainConfig(Config):
    hidden: int = integer(64, 2, 4096, doc="units per network")
    networks: int = integer(8, 1, 4096, doc="networks in the ensemble (K)")
    seed: int = integer(0, 0, 2**31 - 1, doc="network k uses seed + k for its weights and trials")
    lr: float = bounded(1e-3, 0.0, 1.0, lo_open=True, doc="Adam learning rate")
    batch: int = integer(32, 1, 100_000, doc="trials per step")
    epoch_steps: int = integer(50, 1, 100_000, doc="steps per epoch (the stopping rule averages over one)")
    patience: int = integer(3, 0, 1000, doc="epochs below threshold before a network counts as converged")
    max_steps: int = integer(3000, 1, 10_000_000, doc="cap on training steps")
    diverge_at: float = bounded(1e3, 0.0, 1e12, lo_open=True, doc="a loss above this is a blow-up")
    clip: float = bounded(0.0, 0.0, 1e6, doc="largest gradient norm of each network (0: no clipping)")
    lr_half_life: float = bounded(0.0, 0.0, 1e9, doc="steps over which the learning rate halves (0: constant)")


class EnsembleRNN(torch.nn.Module):
    """K vanilla tanh RNNs as (K, ...) parameters."""

    def __init__(self, k: int, n_in: int, n_hidden: int, n_out: int, seeds: list[int]) -> None:
        super().__init__()
        bound = 1.0 / np.sqrt(n_hidden)
        shapes = {
            "w_h": (n_hidden, n_hidden),
            "w_x": (n_hidden, n_in),
            "b": (n_hidden,),
            "w_o": (n_out, n_hidden),
            "b_o": (n_out,),
        }
        tensors = {name: torch.empty(k, *shape) for name, shape in shapes.items()}
        for j, seed in enumerate(seeds):  # each network from its own generator, in a fixed order
            gen = torch.Generator().manual_seed(int(seed))
            for name, shape in shapes.items():
                tensors[name][j] = (torch.rand(shape, generator=gen) * 2 - 1) * bound
        for name, value in tensors.items():
            self.register_parameter(name, torch.nn.Parameter(value))

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """x: (K, trial, time, in) -> outputs (K, trial, time, out) [, hidden (K, trial, time, n)]."""
        k, b, _, _ = x.shape
        drive = torch.einsum("kbti,khi->kbth", x, self.w_x) + self.b[:, None, None, :]  # (K, B, T, n)
        h = x.new_zeros(k, b, self.w_h.shape[1])
        w_t = self.w_h.transpose(1, 2)
        states = []
        for u in drive.unbind(2):  # unbind, not x[:, :, t]: keeps backward O(T)
            h = torch.tanh(torch.baddbmm(u, h, w_t))
            states.append(h)
        hidden = torch.stack(states, 2)  # (K, B, T, n)
        out = torch.einsum("kbth,koh->kbto", hidden, self.w_o) + self.b_o[:, None, None, :]
        return (out, hidden) if return_hidden else out


@dataclass
class EnsembleResult:
    model: EnsembleRNN
    losses: np.ndarray  # (step, K) training MSE per step
    converged: np.ndarray  # (K,) bool
    diverged: np.ndarray  # (K,) bool
    steps_done: np.ndarray  # (K,) steps each network trained
    init: dict[str, np.ndarray] = field(default_factory=dict)  # parameters at step 0


def _clip_per_network(model: EnsembleRNN, max_norm: float) -> None:
    """Scale each network's gradient to norm <= max_norm (networks stay independent)."""
    grads = [p.grad for p in model.parameters()]
    sq = sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in grads)  # (K,)
    scale = (max_norm / (sq.sqrt() + 1e-12)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))


def masked_mse(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-network mean squared error over the masked entries: (K,)."""
    err = (out - target) ** 2 * mask
    return err.sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp(min=1)


def batches(task, cfg: TrainConfig, rngs: list[np.random.Generator]):
    """One stacked batch (K, B, T, ...) with each network's trials drawn from its own generator."""
    trials = [task.generate(cfg.batch, rng) for rng in rngs]
    return tuple(torch.from_numpy(np.stack([getattr(t, f) for t in trials])) for f in ("inputs", "targets", "mask"))


def train_ensemble(task, cfg: TrainConfig, *, seeds: list[int] | None = None, callback=None) -> EnsembleResult:
    """Train ``cfg.networks`` RNNs on ``task`` (see the module docstring for the rules).

    ``callback(step, losses, converged, diverged, model)`` runs after every step.
    """
    seeds = list(seeds) if seeds is not None else [cfg.seed + j for j in range(cfg.networks)]
    k = len(seeds)
    model = EnsembleRNN(k, task.n_in, cfg.hidden, task.n_out, seeds)
    init = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rngs = [np.random.default_rng(s) for s in seeds]
    active = torch.ones(k, dtype=torch.bool)
    converged = np.zeros(k, bool)
    diverged = np.zeros(k, bool)
    below = np.zeros(k, int)
    steps_done = np.zeros(k, int)
    losses, epoch = [], []
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    for step in range(cfg.max_steps):
        x, y, m = batches(task, cfg, rngs)
        loss = masked_mse(model(x), y, m)
        bad = ~torch.isfinite(loss) | (loss > cfg.diverge_at)
        newly_bad = (bad & active).numpy()
        if newly_bad.any():
            diverged |= newly_bad
            active &= ~torch.from_numpy(newly_bad)
        opt.zero_grad(set_to_none=False)
        loss.masked_fill(~active, 0.0).sum().backward()
        if cfg.clip > 0:
            _clip_per_network(model, cfg.clip)
        if cfg.lr_half_life > 0:  # one schedule for every network: they stay independent
            for group in opt.param_groups:
                group["lr"] = cfg.lr * 0.5 ** (step / cfg.lr_half_life)
        opt.step()
        with torch.no_grad():  # frozen networks keep their parameters (Adam's momentum would move them)
            for name, p in model.named_parameters():
                p[~active] = frozen[name][~active]
                frozen[name][active] = p[active]
        steps_done += active.numpy()
        value = loss.detach().numpy().copy()
        losses.append(value)
        epoch.append(value)
        if len(epoch) == cfg.epoch_steps:
            mean = np.mean(epoch, axis=0)
            epoch.clear()
            below = np.where(mean < task.threshold, below + 1, 0)
            done = (below > cfg.patience) & active.numpy()
            if done.any():
                converged |= done
                active &= ~torch.from_numpy(done)
        if callback is not None:
            callback(step, value, converged, diverged, model)
        if not active.any():
            break
    return EnsembleResult(model, np.array(losses), converged, diverged, steps_done, init)
