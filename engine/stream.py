"""The stream protocol: a run is an iterator of self-describing ``xr.Dataset`` chunks.

Every engine implements :class:`ChunkStream`. A consumer (the run store, a live dashboard, a
notebook) pulls chunks one by one; between chunks it may call :meth:`ChunkStream.update` from
any thread, and the change takes effect at the next chunk boundary. Each chunk records the
parameter values it ran with, so a stored run says what changed when.

Iterating gives ``xr.Dataset`` chunks; :meth:`ChunkStream.next_chunk` gives the same chunk in
its columnar form (:class:`engine.chunk.Chunk`), which needs no xarray import.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from engine.chunk import Chunk

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["ChunkStream", "RunStopped", "TrainingStream"]


class RunStopped(RuntimeError):
    """Raised by a stream when the run cannot go on (e.g. a numerical blow-up).

    ``status`` is a short word for the store ("diverged"); the message says why.
    """

    def __init__(self, message: str, status: str = "diverged") -> None:
        super().__init__(message)
        self.status = status


class ChunkStream:
    """Base of every engine's stream.

    Subclasses set :attr:`append_dims` (the dims that grow from chunk to chunk, e.g.
    ``("spike", "time", "chunk")``) and implement :meth:`_next_chunk` and
    :meth:`_apply_updates`. :attr:`done` becomes true after the last chunk.
    """

    engine: str = ""
    append_dims: tuple[str, ...] = ()

    def __init__(self, config: Any) -> None:
        self.config = config
        self.done = False
        self.chunks_emitted = 0
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- control (thread-safe) ------------------------------------------------------------
    def update(self, **changes: Any) -> None:
        """Queue parameter changes for the next chunk; validated now (``ValueError`` if bad)."""
        self._validate_updates(changes)
        with self._lock:
            self._pending.update(changes)

    def _take_pending(self) -> dict[str, Any]:
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    # -- iteration ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[xr.Dataset]:
        return self

    def __next__(self) -> xr.Dataset:
        if self.done:
            raise StopIteration
        return self.next_chunk().to_dataset()

    def next_chunk(self) -> Chunk:
        """The next chunk in columnar form; ``StopIteration`` after the last."""
        if self.done:
            raise StopIteration
        pending = self._take_pending()
        if pending:
            self._apply_updates(pending)
        chunk = self._next_chunk()
        self.chunks_emitted += 1
        return chunk

    def chunks(self) -> Iterator[Chunk]:
        """Iterate in columnar form."""
        while not self.done:
            yield self.next_chunk()

    # -- to implement ---------------------------------------------------------------------
    def _validate_updates(self, changes: dict[str, Any]) -> None:
        raise NotImplementedError

    def _apply_updates(self, changes: dict[str, Any]) -> None:
        raise NotImplementedError

    def _next_chunk(self) -> Chunk:
        raise NotImplementedError


class TrainingStream(ChunkStream):
    """A stream that trains a model with a torch optimiser and probes it every ``probe_every`` steps.

    Its learning rate and probe interval may change mid-run (:attr:`updatable`); any other field
    of the config may not. Subclasses set ``self.lr``, ``self.probe_every``, ``self.step``,
    ``self.train_seconds`` and give :attr:`optimizer`.
    """

    updatable: tuple[str, ...] = ("lr", "probe_every")
    optimizer: Any = None  # a torch.optim.Optimizer

    def _train_steps(self, n: int, step: Callable[[], float]) -> tuple[list[float], list[float]]:
        """``n`` calls of ``step()`` (one optimiser step that advances ``self.step``; its loss).

        Returns the losses and the learning rate of each step. A non-finite loss ends the run
        (:class:`RunStopped`) before the chunk that would show it.
        """
        losses: list[float] = []
        lrs: list[float] = []
        t0 = time.perf_counter()
        for _ in range(n):
            lrs.append(self.lr)
            losses.append(step())
            if not math.isfinite(losses[-1]):
                self.done = True
                raise RunStopped(f"the training loss became non-finite at step {self.step}")
        self.train_seconds += time.perf_counter() - t0
        return losses, lrs

    def _validate_updates(self, changes: dict[str, Any]) -> None:
        unknown = sorted(set(changes) - set(self.updatable))
        if unknown:
            raise ValueError(f"{unknown[0]!r} cannot change during training: updatable are {', '.join(self.updatable)}")
        self.config.replace(**changes)  # validates the values

    def _apply_updates(self, changes: dict[str, Any]) -> None:
        if "lr" in changes:
            self.lr = float(changes["lr"])
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
        if "probe_every" in changes:
            self.probe_every = int(changes["probe_every"])
