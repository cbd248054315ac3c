"""Ensemble training as a stream of chunks: losses step by step, then the trained networks.

:class:`TrainingStream` drives an :class:`~engine.rnn.ensemble.EnsembleTrainer` ``chunk_steps``
steps at a time. Every chunk carries, along the append dims:

- ``step``: ``loss (step, net)`` the training MSE of each network at each step, ``lr (step,)``;
- ``chunk``: ``converged``, ``diverged`` ``(chunk, net)`` and ``n_converged``, ``n_diverged``
  at the end of the chunk;
- ``snapshot``: the trained networks, present (length 1) in the last chunk only:
  ``w_h (snapshot, net, unit, unit2)`` and ``w_h_init``, ``hidden (snapshot, net, trial, time,
  unit)`` and ``output (snapshot, net, trial, time, out)`` on a fixed test batch, and
  ``steps_done (snapshot, net)``.

and, unchanged in every chunk, the fixed test batch ``inputs``, ``targets``, ``mask`` (trial,
time, …). If every network blows up, the stream emits the chunk that shows it (with the
snapshot) and raises :class:`~engine.stream.RunStopped` at the next call, so a store keeps
every step up to the blow-up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import engine
from engine.chunk import Chunk, concat
from engine.config import Config, integer
from engine.rnn.ensemble import EnsembleResult, EnsembleTrainer, TrainConfig
from engine.stream import ChunkStream, RunStopped

__all__ = ["StreamConfig", "TrainingStream", "APPEND_DIMS", "train_run"]

APPEND_DIMS = ("step", "chunk", "snapshot")
UPDATABLE = ("lr_scale",)


@dataclass(frozen=True)
class StreamConfig(Config):
    chunk_steps: int = integer(50, 1, 1_000_000, doc="training steps per chunk")
    test_trials: int = integer(16, 1, 10_000, doc="fixed test trials whose hidden trajectories are recorded")
    test_seed: int = integer(7, 0, 2**31 - 1, doc="seed of the fixed test batch")


class TrainingStream(ChunkStream):
    engine = "rnn"
    append_dims = APPEND_DIMS

    def __init__(
        self, task, config: TrainConfig, stream: StreamConfig | None = None, *, seeds: list[int] | None = None
    ) -> None:
        super().__init__(config)
        self.task = task
        self.stream_config = stream or StreamConfig()
        self.trainer = EnsembleTrainer(task, config, seeds=seeds)
        self.test = task.generate(self.stream_config.test_trials, np.random.default_rng(self.stream_config.test_seed))
        self._static = self._static_chunk()
        self._stop = ""

    # -- control --------------------------------------------------------------------------
    def _validate_updates(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            if name not in UPDATABLE:
                raise ValueError(f"{name!r} cannot change during training: updatable are {', '.join(UPDATABLE)}")
            if not (isinstance(value, int | float) and 0 < value <= 100):
                raise ValueError(f"lr_scale={value!r} is out of range: allowed (0, 100]")

    def _apply_updates(self, changes: dict[str, Any]) -> None:
        self.trainer.lr_scale = float(changes.get("lr_scale", self.trainer.lr_scale))

    # -- chunks ---------------------------------------------------------------------------
    def _static_chunk(self) -> Chunk:
        k = len(self.trainer.seeds)
        c = Chunk(attrs=self._attrs())
        c.add("net", "net", np.arange(k), "network", "", coord=True)
        c.add("network_seed", "net", np.asarray(self.trainer.seeds), "network seed", "", coord=True)
        c.add("inputs", ("trial", "time", "in"), self.test.inputs, "test input", "")
        c.add("targets", ("trial", "time", "out"), self.test.targets, "test target", "")
        c.add("mask", ("trial", "time", "out"), self.test.mask, "loss mask", "")
        return c

    def _attrs(self) -> dict:
        cfg = self.config
        return {
            "engine": "rnn",
            "version": engine.__version__,
            "config": cfg.to_json(),
            "task": json.dumps({"name": type(self.task).__name__, **self.task.to_dict()}),
            "stream": self.stream_config.to_json(),
            "seed": cfg.seed,
            "threshold": float(self.task.threshold),
            "title": f"{type(self.task).__name__}: K={len(self.trainer.seeds)} networks, n={cfg.hidden}, "
            f"{cfg.parameterisation}, seed={cfg.seed}",
        }

    def _next_chunk(self) -> Chunk:
        if self._stop:
            self.done = True
            raise RunStopped(self._stop, status="diverged")
        tr = self.trainer
        first = tr.step_count
        losses, lrs = [], []
        for _ in range(self.stream_config.chunk_steps):
            if tr.done:
                break
            lrs.append(tr.lr)
            losses.append(tr.step())
        k = len(tr.seeds)
        c = Chunk(dict(self._static.columns), self._static.coords, dict(self._static.attrs))
        c.add("step", "step", np.arange(first, first + len(losses)), "training step", "", coord=True)
        c.add("loss", ("step", "net"), np.asarray(losses, np.float64).reshape(-1, k), "training MSE", "MSE")
        c.add("lr", "step", np.asarray(lrs, np.float64), "learning rate", "")
        c.add("chunk", "chunk", np.array([self.chunks_emitted]), "chunk index", "", coord=True)
        c.add("converged", ("chunk", "net"), tr.converged[None].copy(), "reached the loss threshold", "")
        c.add("diverged", ("chunk", "net"), tr.diverged[None].copy(), "loss blew up", "")
        c.add("n_converged", "chunk", np.array([tr.converged.sum()]), "converged networks", "")
        c.add("n_diverged", "chunk", np.array([tr.diverged.sum()]), "diverged networks", "")
        self.done = tr.done
        self._add_snapshot(c, final=self.done)
        if tr.diverged.all():  # emit this chunk (it shows the blow-up), stop at the next call
            self._stop = f"every network's loss blew up by step {tr.step_count}"
            self.done = False
        return c

    def _add_snapshot(self, c: Chunk, *, final: bool) -> None:
        """The trained networks on the test batch (length 1 along ``snapshot`` in the last chunk)."""
        tr, k = self.trainer, len(self.trainer.seeds)
        n, (trials, t, n_out) = self.config.hidden, self.test.targets.shape
        if final:
            x = torch.from_numpy(np.repeat(self.test.inputs[None], k, 0))
            with torch.no_grad():
                out, hidden = tr.model(x, return_hidden=True)
            w_h = tr.model.w_h.detach().numpy()[None]
            w_init = tr.init["w_h"][None]
            hidden, out = hidden.numpy()[None], out.numpy()[None]
            done = tr.steps_done[None]
        else:
            w_h = w_init = np.zeros((0, k, n, n), np.float32)
            hidden = np.zeros((0, k, trials, t, n), np.float32)
            out = np.zeros((0, k, trials, t, n_out), np.float32)
            done = np.zeros((0, k), np.int64)
        c.add("snapshot", "snapshot", np.arange(len(w_h)), "snapshot", "", coord=True)
        c.add("w_h", ("snapshot", "net", "unit", "unit2"), w_h, "recurrent weights", "")
        c.add("w_h_init", ("snapshot", "net", "unit", "unit2"), w_init, "recurrent weights at step 0", "")
        c.add("hidden", ("snapshot", "net", "trial", "time", "unit"), hidden, "hidden state on test trials", "")
        c.add("output", ("snapshot", "net", "trial", "time", "out"), out, "output on test trials", "")
        c.add("steps_done", ("snapshot", "net"), np.asarray(done, np.int64), "steps each network trained", "")

    def result(self) -> EnsembleResult:
        return self.trainer.result()


def train_run(task, config: TrainConfig, stream: StreamConfig | None = None, *, seeds=None):
    """Train to the end in memory: (the concatenated ``xr.Dataset``, the :class:`EnsembleResult`)."""
    s = TrainingStream(task, config, stream, seeds=seeds)
    chunks = list(s.chunks())
    return concat(chunks, APPEND_DIMS).to_dataset(), s.result()
