"""An emergence run as a stream of probe chunks.

:class:`EmergenceStream` trains the task's model (:func:`task_run`) ``probe_every`` steps at a
time, then probes it on the task's fixed probe set. Each chunk carries, along its append dims:

- ``step``: ``loss (step,)`` the training loss, ``lr (step,)``, ``clamped (step,)`` whether the
  intervention was on at that step;
- ``probe`` (coordinate: the training step the probe was taken after; the first chunk also holds
  the probe at step 0): every measure the task returns (:mod:`engine.emergence.lm`,
  :mod:`engine.emergence.icl`, :mod:`engine.emergence.grokking`), e.g. ``top_ratio (probe,
  layer)``, ``nonzero_share (probe, layer)``, ``induction (probe, layer, head)``, ``icl_acc
  (probe,)``, ``test_acc (probe,)``, ``spectrum (probe, frequency)``;

and, in every chunk, the task's static coordinates (``layer``, ``head``, ``frequency``, …).

The intervention (Singh et al. 2024): the heads named by ``config.clamp`` have their output
``z = A v`` (hook ``blocks.{l}.attn.hook_z``) replaced by zero, or by its batch mean (detached,
so the clamped head receives no gradient through it), during training steps ``clamp_start <=
step < clamp_end``, and in the probes taken at those steps. Running the same config and seed
with and without the clamp gives the curves to compare.

A non-finite loss stops the run (:class:`~engine.stream.RunStopped`) before the chunk that shows
it; the chunks already emitted stand. Mid-run, ``update(lr=..., probe_every=...)`` takes effect
at the next chunk.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import torch

import engine
from engine.chunk import Chunk, concat
from engine.emergence.base import Probed, TaskRun
from engine.emergence.config import EmergenceConfig
from engine.stream import TrainingStream

__all__ = ["APPEND_DIMS", "UPDATABLE", "EmergenceStream", "clamp_hook", "task_run", "train_run"]

APPEND_DIMS = ("step", "probe")
UPDATABLE = TrainingStream.updatable


def task_run(cfg: EmergenceConfig) -> TaskRun:
    """The model, data and probes of ``cfg.task``."""
    if cfg.task in ("massive", "sparsity"):
        from engine.emergence.lm import BigramRun

        return BigramRun(cfg)
    if cfg.task == "induction":
        from engine.emergence.lm import InductionRun

        return InductionRun(cfg)
    if cfg.task == "icl-bursty":
        from engine.emergence.icl import ICLRun

        return ICLRun(cfg)
    from engine.emergence.grokking import GrokkingRun

    return GrokkingRun(cfg)


def clamp_hook(heads: tuple[tuple[int, int], ...], n_heads: int, mode: str):
    """An intervention on ``blocks.{l}.attn.hook_z`` (B, H, T, d_h) clamping the named (layer, head)s."""
    by_layer: dict[int, torch.Tensor] = {}
    for layer, head in heads:
        mask = by_layer.setdefault(layer, torch.zeros(n_heads))
        mask[head] = 1.0

    def fn(z: torch.Tensor, name: str) -> torch.Tensor | None:
        mask = by_layer.get(int(name.split(".")[1]))
        if mask is None:
            return None
        m = mask.to(z.dtype)[None, :, None, None]  # (1, H, 1, 1)
        if mode == "zero":
            return z * (1.0 - m)
        return z * (1.0 - m) + z.detach().mean(0, keepdim=True) * m  # the batch mean, no gradient

    names = sorted({f"blocks.{layer}.attn.hook_z" for layer, _ in heads})
    return names, fn


class EmergenceStream(TrainingStream):
    engine = "emergence"
    append_dims = APPEND_DIMS

    def __init__(self, config: EmergenceConfig) -> None:
        super().__init__(config)
        torch.manual_seed(config.seed)  # anything a task leaves to the global generator
        self.run = task_run(config)
        self.lr = config.lr
        self.probe_every = config.probe_every
        self.step = 0
        self.train_seconds = 0.0
        self.probe_seconds = 0.0
        self._clamp = None
        if config.clamped_heads:
            self._clamp = clamp_hook(config.clamped_heads, config.heads, config.clamp_mode)
        self._static = self._static_chunk()

    @property
    def optimizer(self):
        return self.run.optimizer

    # -- the intervention -----------------------------------------------------------------
    def clamped(self, step: int) -> bool:
        cfg = self.config
        return self._clamp is not None and cfg.clamp_start <= step < cfg.clamp_end

    def _maybe_clamped(self, step: int):
        if not self.clamped(step):
            return nullcontext()
        names, fn = self._clamp
        return self.run.model.hooks([(names, fn)])

    # -- training and probing ---------------------------------------------------------------
    def probe(self) -> dict[str, Probed]:
        t0 = time.perf_counter()
        with self._maybe_clamped(self.step), torch.no_grad():
            out = self.run.probe()
        self.probe_seconds += time.perf_counter() - t0
        return out

    def _next_chunk(self) -> Chunk:
        probes = [(0, self.probe())] if self.step == 0 else []
        first = self.step
        n = min(self.probe_every, self.config.steps - self.step)
        clamped: list[bool] = []

        def step() -> float:
            clamped.append(self.clamped(self.step))
            with self._maybe_clamped(self.step):
                loss = self.run.train_step(self.step)
            self.step += 1
            return loss

        losses, lrs = self._train_steps(n, step)
        probes.append((self.step, self.probe()))
        self.done = self.step >= self.config.steps
        return self._make_chunk(first, losses, lrs, clamped, probes)

    # -- chunks -----------------------------------------------------------------------------
    def _static_chunk(self) -> Chunk:
        c = Chunk(attrs=self._attrs())
        for name, (p, coord) in self.run.static().items():
            c.add(name, p.dims, p.values, p.long_name, p.units, coord=coord)
        return c

    def _attrs(self) -> dict:
        cfg = self.config
        if cfg.uses_transformer:
            shape = f"{cfg.layers} layers × {cfg.heads} heads, d {cfg.width}" + (
                ", attention-only" if cfg.mlp_ratio == 0 else ""
            )
        else:
            shape = f"two-layer network, {cfg.hidden} {cfg.activation} units, p {cfg.modulus}"
        clamp = (
            f", clamp {cfg.clamp} ({cfg.clamp_mode}) at steps [{cfg.clamp_start}, {cfg.clamp_end})" if cfg.clamp else ""
        )
        return {
            "engine": "emergence",
            "version": engine.__version__,
            "config": cfg.to_json(),
            "seed": cfg.seed,
            "task": cfg.task,
            "title": f"{cfg.task}: {shape}, {cfg.optimizer} lr {cfg.lr:g}, seed {cfg.seed}{clamp}",
        }

    def _make_chunk(self, first: int, losses: list, lrs: list, clamped: list, probes: list) -> Chunk:
        c = Chunk(dict(self._static.columns), self._static.coords, dict(self._static.attrs))
        c.add("step", "step", np.arange(first + 1, first + 1 + len(losses)), "training step", "", coord=True)
        c.add("loss", "step", np.asarray(losses, dtype=np.float64), "training loss", "nats")
        c.add("lr", "step", np.asarray(lrs, dtype=np.float64), "learning rate", "")
        c.add("clamped", "step", np.asarray(clamped, dtype=bool), "intervention on", "")
        c.add("probe", "probe", np.asarray([s for s, _ in probes]), "training step of the probe", "", coord=True)
        for name, first_value in probes[0][1].items():
            values = np.stack([np.asarray(p[name].values) for _, p in probes])
            c.add(name, ("probe", *first_value.dims), values, first_value.long_name, first_value.units)
        return c


def train_run(config: EmergenceConfig):
    """The whole run in memory: (the concatenated ``xr.Dataset``, the trained stream)."""
    stream = EmergenceStream(config)
    ds = concat(list(stream.chunks()), APPEND_DIMS).to_dataset()
    return ds, stream
