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

from engine.config import Config, bounded, choice, integer

PARAMETERISATIONS = ("standard", "mup")

__all__ = ["TrainConfig", "EnsembleRNN", "EnsembleResult", "EnsembleTrainer", "train_ensemble", "penalty"]


@dataclass(frozen=True)
class TrainConfig(Config):
    hidden: int = integer(64, 2, 4096, doc="units per network")
    networks: int = integer(8, 1, 4096, doc="networks in the ensemble (K)")
    seed: int = integer(0, 0, 2**31 - 1, doc="network k uses seed + k for its weights and trials")
    lr: float = bounded(1e-3, 0.0, 1.0, lo_open=True, doc="Adam learning rate (times gamma under mup)")
    batch: int = integer(32, 1, 100_000, doc="trials per step")
    epoch_steps: int = integer(50, 1, 100_000, doc="steps per epoch (the stopping rule averages over one)")
    patience: int = integer(3, 0, 1000, doc="epochs below threshold before a network counts as converged")
    max_steps: int = integer(3000, 1, 10_000_000, doc="cap on training steps")
    diverge_at: float = bounded(1e3, 0.0, 1e12, lo_open=True, doc="a loss above this is a blow-up")
    clip: float = bounded(0.0, 0.0, 1e6, doc="largest gradient norm of each network (0: no clipping)")
    lr_half_life: float = bounded(0.0, 0.0, 1e9, doc="steps over which the learning rate halves (0: constant)")
    parameterisation: str = choice(
        "standard", PARAMETERISATIONS, doc="standard: the vanilla tanh RNN; mup: leaky mean-field RNN with gamma"
    )
    gamma: float = bounded(1.0, 0.0, 1e4, lo_open=True, doc="feature-learning strength (mup): readout/(gamma n)")
    alpha: float = bounded(1.0, 0.0, 1.0, lo_open=True, doc="leak of the mup update h <- h + alpha(-h + ...)")
    nuclear: float = bounded(0.0, 0.0, 1e3, doc="lambda of the nuclear-norm penalty lambda * sum_i sigma_i(W_h)")
    l1: float = bounded(0.0, 0.0, 1e3, doc="lambda of the L1 penalty lambda * sum |W_h|")

    def check(self) -> None:
        if self.parameterisation == "standard" and (self.gamma != 1.0 or self.alpha != 1.0):
            raise ValueError(
                f"gamma={self.gamma}, alpha={self.alpha} are not allowed with parameterisation=standard: "
                "they apply to parameterisation=mup (leave them at 1)"
            )

    @property
    def effective_lr(self) -> float:
        """Adam's learning rate: gamma * lr under mup (the paper's eta = gamma eta_0), else lr."""
        return self.lr * (self.gamma if self.parameterisation == "mup" else 1.0)


class EnsembleRNN(torch.nn.Module):
    """K tanh RNNs as (K, ...) parameters ``w_h (K, n, n)``, ``w_x (K, n, in)``, ``b``, ``w_o``, ``b_o``.

    ``standard``: ``h' = tanh(W_h h + W_x x + b)``, ``y = W_o h + b_o``, every weight
    U(-1/sqrt(n), 1/sqrt(n)). ``mup`` (mean-field / muP, for the feature-learning knob):
    ``h' = h + alpha (-h + W_h tanh(h) / sqrt(n) + W_x x + b)``, ``y = W_o tanh(h) / (gamma n) + b_o``,
    with W_h, W_o ~ N(0, 1), W_x ~ N(0, 1/in), biases 0; Adam runs at ``gamma * lr``. The readout
    shrinks as 1/(gamma n), so fitting the targets needs the hidden features to move: larger
    gamma means richer learning (weight change up, kernel alignment down; a test checks it).
    The reference writes the recurrent term as J phi(h)/n; with O(1) entries that term vanishes
    at initialisation, so the recurrent scaling here is the mean-field 1/sqrt(n) of Bordelon &
    Pehlevan (2022), which keeps the network at the edge of chaos for every width.
    """

    def __init__(
        self,
        k: int,
        n_in: int,
        n_hidden: int,
        n_out: int,
        seeds: list[int],
        *,
        parameterisation: str = "standard",
        gamma: float = 1.0,
        alpha: float = 1.0,
    ) -> None:
        super().__init__()
        if parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"parameterisation={parameterisation!r} is not allowed: choose one of {PARAMETERISATIONS}")
        self.parameterisation, self.gamma, self.alpha = parameterisation, float(gamma), float(alpha)
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
                tensors[name][j] = self._init(name, shape, gen, n_hidden, n_in)
        for name, value in tensors.items():
            self.register_parameter(name, torch.nn.Parameter(value))

    def _init(self, name: str, shape: tuple, gen: torch.Generator, n: int, n_in: int) -> torch.Tensor:
        if self.parameterisation == "standard":
            return (torch.rand(shape, generator=gen) * 2 - 1) / np.sqrt(n)
        if name in ("b", "b_o"):
            return torch.zeros(shape)
        scale = 1.0 / np.sqrt(n_in) if name == "w_x" else 1.0
        return torch.randn(shape, generator=gen) * scale

    def _cell(self, h: torch.Tensor, u: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
        """One step from state h (K, B, n) with input drive u = W_x x + b (K, B, n)."""
        if self.parameterisation == "standard":
            return torch.tanh(torch.baddbmm(u, h, w_t))
        n = w_t.shape[-1]
        return h + self.alpha * (torch.baddbmm(u, torch.tanh(h), w_t, alpha=1.0 / np.sqrt(n)) - h)

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """h (K, B, n), x (K, B, in) -> the next state (K, B, n)."""
        u = torch.einsum("kbi,khi->kbh", x, self.w_x) + self.b[:, None, :]
        return self._cell(h, u, self.w_h.transpose(1, 2))

    def readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (K, B, T, n) -> outputs (K, B, T, out)."""
        if self.parameterisation == "standard":
            return torch.einsum("kbth,koh->kbto", hidden, self.w_o) + self.b_o[:, None, None, :]
        n = hidden.shape[-1]
        out = torch.einsum("kbth,koh->kbto", torch.tanh(hidden), self.w_o) / (self.gamma * n)
        return out + self.b_o[:, None, None, :]

    def forward(self, x: torch.Tensor, return_hidden: bool = False):
        """x: (K, trial, time, in) -> outputs (K, trial, time, out) [, hidden (K, trial, time, n)]."""
        k, b, _, _ = x.shape
        drive = torch.einsum("kbti,khi->kbth", x, self.w_x) + self.b[:, None, None, :]  # (K, B, T, n)
        h = x.new_zeros(k, b, self.w_h.shape[1])
        w_t = self.w_h.transpose(1, 2)
        states = []
        for u in drive.unbind(2):  # unbind, not x[:, :, t]: keeps backward O(T)
            h = self._cell(h, u, w_t)
            states.append(h)
        hidden = torch.stack(states, 2)  # (K, B, T, n)
        out = self.readout(hidden)
        return (out, hidden) if return_hidden else out

    @classmethod
    def for_task(cls, task, cfg: TrainConfig, seeds: list[int]) -> EnsembleRNN:
        return cls(
            len(seeds),
            task.n_in,
            cfg.hidden,
            task.n_out,
            seeds,
            parameterisation=cfg.parameterisation,
            gamma=cfg.gamma,
            alpha=cfg.alpha,
        )


def penalty(model: EnsembleRNN, cfg: TrainConfig) -> torch.Tensor | None:
    """Per-network structural penalty on W_h: nuclear * sum of singular values + l1 * sum |w|, (K,)."""
    out = None
    if cfg.nuclear > 0:
        out = cfg.nuclear * torch.linalg.svdvals(model.w_h).sum(-1)
    if cfg.l1 > 0:
        l1 = cfg.l1 * model.w_h.abs().sum((1, 2))
        out = l1 if out is None else out + l1
    return out


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


class EnsembleTrainer:
    """The training loop, one step at a time (a stream or a dashboard drives it chunk by chunk).

    ``step()`` trains one step and returns the per-network MSE (K,); ``done`` turns true when no
    network is still learning or at ``max_steps``; ``result()`` gives the :class:`EnsembleResult`.
    ``lr_scale`` multiplies the learning rate from the next step on (a mid-run control).
    """

    def __init__(self, task, cfg: TrainConfig, *, seeds: list[int] | None = None) -> None:
        self.task, self.cfg = task, cfg
        self.seeds = list(seeds) if seeds is not None else [cfg.seed + j for j in range(cfg.networks)]
        k = len(self.seeds)
        self.model = EnsembleRNN.for_task(task, cfg, self.seeds)
        self.init = {n: p.detach().numpy().copy() for n, p in self.model.named_parameters()}
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.effective_lr)
        self.rngs = [np.random.default_rng(s) for s in self.seeds]
        self.active = torch.ones(k, dtype=torch.bool)
        self.converged = np.zeros(k, bool)
        self.diverged = np.zeros(k, bool)
        self.steps_done = np.zeros(k, int)
        self.losses: list[np.ndarray] = []
        self.lr_scale = 1.0
        self.step_count = 0
        self._below = np.zeros(k, int)
        self._epoch: list[np.ndarray] = []
        self._frozen = {n: p.detach().clone() for n, p in self.model.named_parameters()}

    @property
    def done(self) -> bool:
        return self.step_count >= self.cfg.max_steps or not bool(self.active.any())

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        decay = 0.5 ** (self.step_count / self.cfg.lr_half_life) if self.cfg.lr_half_life > 0 else 1.0
        return self.cfg.effective_lr * self.lr_scale * decay

    def step(self) -> np.ndarray:
        cfg, model, active = self.cfg, self.model, self.active
        x, y, m = batches(self.task, cfg, self.rngs)
        loss = masked_mse(model(x), y, m)  # (K,) the task loss: the stopping rule reads this
        bad = ~torch.isfinite(loss) | (loss > cfg.diverge_at)
        newly_bad = (bad & active).numpy()
        if newly_bad.any():
            self.diverged |= newly_bad
            active &= ~torch.from_numpy(newly_bad)
        objective = loss
        extra = penalty(model, cfg)
        if extra is not None:
            objective = loss + extra
        self.opt.zero_grad(set_to_none=False)
        objective.masked_fill(~active, 0.0).sum().backward()
        if cfg.clip > 0:
            _clip_per_network(model, cfg.clip)
        for group in self.opt.param_groups:  # one schedule for every network: they stay independent
            group["lr"] = self.lr
        self.opt.step()
        with torch.no_grad():  # frozen networks keep their parameters (Adam's momentum would move them)
            for name, p in model.named_parameters():
                p[~active] = self._frozen[name][~active]
                self._frozen[name][active] = p[active]
        self.steps_done += active.numpy()
        value = loss.detach().numpy().copy()
        self.losses.append(value)
        self._epoch.append(value)
        if len(self._epoch) == cfg.epoch_steps:
            mean = np.mean(self._epoch, axis=0)
            self._epoch.clear()
            self._below = np.where(mean < self.task.threshold, self._below + 1, 0)
            done = (self._below > cfg.patience) & active.numpy()
            if done.any():
                self.converged |= done
                active &= ~torch.from_numpy(done)
        self.step_count += 1
        return value

    def result(self) -> EnsembleResult:
        losses = np.array(self.losses) if self.losses else np.zeros((0, len(self.seeds)))
        return EnsembleResult(self.model, losses, self.converged, self.diverged, self.steps_done, self.init)


def train_ensemble(task, cfg: TrainConfig, *, seeds: list[int] | None = None, callback=None) -> EnsembleResult:
    """Train ``cfg.networks`` RNNs on ``task`` (see the module docstring for the rules).

    ``callback(step, losses, converged, diverged, model)`` runs after every step.
    """
    trainer = EnsembleTrainer(task, cfg, seeds=seeds)
    while not trainer.done:
        value = trainer.step()
        if callback is not None:
            callback(trainer.step_count - 1, value, trainer.converged, trainer.diverged, trainer.model)
    return trainer.result()
