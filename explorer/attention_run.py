"""Live attention training: one or two runs trained in a background thread, and single-sequence attention.

:class:`TrainingRun` trains its streams (:class:`engine.transformer.training.AttentionStream` by
default; any :class:`~engine.stream.ChunkStream` of a torch model through ``make_stream`` and
``model_of``, e.g. the emergence dashboard's :class:`engine.emergence.training.EmergenceStream`) in
one producer thread, a chunk of each in turn, so a comparison of two variants stays step for
step in line and leaves the other core to the server. Like :class:`explorer.live.LiveRun`, the
thread only trains, stores and queues; it never touches Bokeh or Panel objects. Each stream has its
own run store; chunks are written at most every ``store_every`` wall seconds and on pause and end.

At every probe the thread also keeps a copy of the model's weights (between training steps, so a
copy is never half updated), within a memory budget; :class:`SequenceAttention` runs a private copy
of the model at those weights on one probe sequence, in the display's thread, to show the
attention of that sequence rather than the probe-batch mean the chunks carry.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.chunk import Chunk, concat
from engine.store import RunStore
from engine.stream import ChunkStream, RunStopped
from engine.transformer.model import Transformer
from engine.transformer.training import AttentionConfig, AttentionStream

__all__ = ["TrainingRun", "RunEvent", "Slot", "SequenceAttention", "SNAPSHOT_BYTES"]

SNAPSHOT_BYTES = 256 * 2**20  # weight copies kept per run; older ones are thinned beyond this
ENDED = ("finished", "diverged", "failed", "stopped")


@dataclass
class RunEvent:
    """New chunks of run ``index`` (merged)."""

    index: int
    chunk: Chunk


@dataclass
class Slot:
    """One stream, its store, its state and its weight copies."""

    stream: ChunkStream
    store: RunStore | None
    state: str = "idle"  # idle | running | paused | finished | diverged | failed | stopped
    error: str = ""
    weights: OrderedDict = field(default_factory=OrderedDict)  # step -> state dict
    unstored: list = field(default_factory=list)

    @property
    def step(self) -> int:
        return self.stream.step


def _model(stream: Any) -> torch.nn.Module:
    return stream.model


class TrainingRun:
    """One or two runs trained together: Start / Pause / Stop, updates, queued chunks.

    ``make_stream(config)`` builds each stream (default: an attention run) and ``model_of(stream)``
    reaches the torch model whose weights are copied at every chunk.
    """

    def __init__(
        self,
        configs: list[Any],
        store_paths: list[str | Path | None],
        *,
        max_queue: int = 64,
        store_every: float = 0.25,
        snapshot_bytes: int = SNAPSHOT_BYTES,
        make_stream: Callable[[Any], ChunkStream] = AttentionStream,
        model_of: Callable[[Any], torch.nn.Module] = _model,
        name: str = "dynascope-attention",
    ) -> None:
        streams = [make_stream(cfg) for cfg in configs]  # validated configs: cannot fail on shape
        self.model_of = model_of
        self.name = name
        self.append_dims = tuple(streams[0].append_dims)
        self.slots = [
            Slot(s, RunStore(p, engine=s.engine, append_dims=s.append_dims) if p is not None else None)
            for s, p in zip(streams, store_paths, strict=True)
        ]
        self.state = "idle"  # idle | running | paused | finished | stopped | failed
        self.error = ""
        self.store_every = store_every
        self.snapshot_bytes = snapshot_bytes
        self.train_seconds = 0.0  # wall seconds inside next_chunk, all streams
        self._queue: queue.Queue[RunEvent] = queue.Queue(maxsize=max_queue)
        self._go = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stored_at = time.perf_counter()

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        """Start, or resume after :meth:`pause`."""
        if self.state in ENDED:
            return
        self.state = "running"
        for slot in self.slots:
            if slot.state in ("idle", "paused"):
                slot.state = "running"
        self._go.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name=self.name, daemon=True)
            self._thread.start()

    def pause(self) -> None:
        """Stop after the chunk being trained (its chunks are stored)."""
        if self.state == "running":
            self.state = "paused"
            self._go.clear()
            for slot in self.slots:
                if slot.state == "running":
                    slot.state = "paused"

    def stop(self, timeout: float = 10.0) -> None:
        """End for good (reset or tab closed); unfinished stores are marked ``stopped``."""
        self._stop.set()
        self._go.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for slot in self.slots:
            if slot.state not in ENDED:
                self._end(slot, "stopped", "stopped by the user")
        if self.state not in ENDED:
            self.state = "stopped"

    def update(self, **changes: Any) -> None:
        """Apply ``lr`` / ``probe_every`` to every unfinished stream at its next chunk (``ValueError`` if bad)."""
        live = [slot.stream for slot in self.slots if slot.state not in ENDED]
        for stream in live:
            stream._validate_updates(changes)  # all or none
        for stream in live:
            stream.update(**changes)

    @property
    def steps(self) -> list[int]:
        return [slot.step for slot in self.slots]

    @property
    def total_steps(self) -> int:
        return max(slot.stream.config.steps for slot in self.slots)

    def steps_per_second(self) -> float:
        """Training steps per wall second inside the streams, summed over runs."""
        return sum(self.steps) / self.train_seconds if self.train_seconds > 0 else 0.0

    # -- consumer side --------------------------------------------------------------------
    def drain(self) -> list[RunEvent]:
        """Everything queued since the last call, one merged event per run."""
        merged: dict[int, list[Chunk]] = {}
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                break
            merged.setdefault(event.index, []).append(event.chunk)
        return [
            RunEvent(i, chunks[0] if len(chunks) == 1 else concat(chunks, self.append_dims))
            for i, chunks in sorted(merged.items())
        ]

    @property
    def pending(self) -> bool:
        return not self._queue.empty()

    def weights(self, index: int, step: int) -> dict | None:
        """The weights of run ``index`` at ``step`` if a copy is kept."""
        with self._lock:
            return self.slots[index].weights.get(step)

    def latest_weights(self, index: int) -> tuple[int, dict] | None:
        """``(step, weights)`` of the newest copy of run ``index`` (None before the first)."""
        with self._lock:
            weights = self.slots[index].weights
            if not weights:
                return None
            step = next(reversed(weights))
            return step, weights[step]

    # -- producer thread ------------------------------------------------------------------
    def _produce(self) -> None:
        torch.set_num_threads(1)  # one intra-op thread: two on two cores ran 3-4x slower (OpenMP spinning)
        try:
            for slot in self.slots:
                self._snapshot(slot)  # step 0 (or where a run stands)
            turn = 0
            while not self._stop.is_set():
                if not self._go.wait(0.1):
                    self._store_pending(force=True)
                    continue
                if self._stop.is_set():
                    break
                live = [k for k, slot in enumerate(self.slots) if slot.state == "running"]
                if not live:
                    break
                index = live[turn % len(live)]
                turn += 1
                self._advance(index)
            self._store_pending(force=True)
            if not self._stop.is_set():
                self.state = "failed" if all(s.state == "failed" for s in self.slots) else "finished"
        except Exception as err:  # a failure ends the runs; the display reports it
            self.error = f"{type(err).__name__}: {err}"
            for slot in self.slots:
                if slot.state not in ENDED:
                    self._end(slot, "failed", self.error)
            self.state = "failed"

    def _advance(self, index: int) -> None:
        slot = self.slots[index]
        stream = slot.stream
        if stream.done:
            self._end(slot, "finished")
            return
        t0 = time.perf_counter()
        try:
            chunk = stream.next_chunk()
        except RunStopped as err:
            self._end(slot, err.status, str(err))
            return
        except Exception as err:  # this run fails; another may go on
            self._end(slot, "failed", f"{type(err).__name__}: {err}")
            return
        self.train_seconds += time.perf_counter() - t0
        self._snapshot(slot)
        slot.unstored.append(chunk)
        self._store_pending()
        self._put(RunEvent(index, chunk))
        if stream.done:
            self._end(slot, "finished")

    def _snapshot(self, slot: Slot) -> None:
        """Keep a copy of the weights at the current step; thin old copies beyond the budget."""
        state = {k: v.detach().clone() for k, v in self.model_of(slot.stream).state_dict().items()}
        size = sum(v.numel() * v.element_size() for v in state.values())
        with self._lock:
            slot.weights[slot.step] = state
            keep = max(2, self.snapshot_bytes // max(1, size))
            while len(slot.weights) > keep:  # drop every other copy but the first and the last
                steps = list(slot.weights)
                for step in steps[1:-1:2]:
                    del slot.weights[step]

    def _store_pending(self, force: bool = False) -> None:
        if not force and time.perf_counter() - self._stored_at < self.store_every:
            return
        for slot in self.slots:
            self._store_slot(slot)
        self._stored_at = time.perf_counter()

    @staticmethod
    def _store_slot(slot: Slot) -> None:
        if slot.store is not None and slot.unstored and slot.store.status == "running":
            chunks, slot.unstored = slot.unstored, []
            slot.store.append(chunks[0] if len(chunks) == 1 else concat(chunks, slot.stream.append_dims))

    def _put(self, event: RunEvent) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(event, timeout=0.1)
                return
            except queue.Full:
                continue

    def _end(self, slot: Slot, state: str, reason: str = "") -> None:
        self._store_slot(slot)
        slot.state, slot.error = state, reason
        if slot.store is not None and slot.store.status == "running":
            slot.store.finish("complete" if state == "finished" else state, reason)


class SequenceAttention:
    """The attention of single probe sequences at kept weights, on a private copy of the model.

    ``tokens`` (sample, position) is the probe batch; :meth:`pattern` returns ``(layer, head,
    query, key)`` for one sequence (its last position is only a target, as in the probe).
    """

    def __init__(self, config: AttentionConfig, tokens: np.ndarray, *, cache: int = 64) -> None:
        self.model = Transformer(config.model_config(), seed=config.seed)  # private: never the training model
        self.model.eval()
        self.tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.int64)
        self.names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(config.layers)]
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._size = cache
        self._loaded: int | None = None

    @property
    def samples(self) -> int:
        return int(self.tokens.shape[0])

    @torch.no_grad()
    def pattern(self, weights: dict, step: int, sample: int) -> np.ndarray:
        key = (step, sample)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if torch.get_num_threads() != 1:  # the setting is per thread; two OpenMP threads spin against training
            torch.set_num_threads(1)
        if self._loaded != step:
            self.model.load_state_dict(weights)
            self._loaded = step
        _, cache = self.model.run_with_cache(self.tokens[sample : sample + 1, :-1], names=self.names)
        out = np.stack([cache[name][0].numpy() for name in self.names]).astype(np.float32)  # (layer, head, T, T)
        self._cache[key] = out
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return out
