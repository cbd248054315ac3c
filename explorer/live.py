"""The live bridge: a stream runs in a background thread; the display drains its chunks.

The producer thread only computes chunks, stores them, and queues them; it never touches
Bokeh or Panel objects. A display (one per browser session) calls :meth:`LiveRun.drain` on a
timer, merges what is queued and pushes it to its views in one go. Pacing holds the run at a
chosen real-time factor (``speed``; ``None`` runs as fast as the machine allows), and a bounded
queue stops a run from racing ahead of a display that cannot keep up.

Chunks reach the run store at most every ``store_every`` wall seconds (those produced in between
are merged into one stored chunk), and on pause, stop and end: a fast run does not spend its
time in file renames, and a killed server loses at most that much wall time of the run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.chunk import Chunk, concat
from engine.store import RunStore
from engine.stream import ChunkStream, RunStopped

__all__ = ["LiveRun"]


class LiveRun:
    """One running stream with Start / Pause / Stop, parameter updates and a status."""

    def __init__(
        self,
        stream: ChunkStream,
        *,
        store_path: str | Path | None = None,
        speed: float | None = 1.0,
        max_queue: int = 256,
        store_every: float = 0.25,
    ) -> None:
        self.stream = stream
        self.store = (
            RunStore(store_path, engine=stream.engine, append_dims=stream.append_dims)
            if store_path is not None
            else None
        )
        self.speed = speed
        self.state = "idle"  # idle | running | paused | finished | diverged | failed | stopped
        self.error = ""
        self.sim_ms = 0.0
        self.spikes = 0
        self._running_wall = 0.0  # wall seconds spent in the running state
        self._queue: queue.Queue[Chunk] = queue.Queue(maxsize=max_queue)
        self._go = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_end: Callable[[str], Any] | None = None
        self.store_every = store_every
        self._unstored: list[Chunk] = []
        self._stored_at = time.perf_counter()

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        """Start, or resume after :meth:`pause`."""
        if self.state in ("finished", "diverged", "failed", "stopped"):
            return
        self.state = "running"
        self._go.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name="dynascope-live", daemon=True)
            self._thread.start()

    def pause(self) -> None:
        if self.state == "running":
            self.state = "paused"
            self._go.clear()

    def stop(self, timeout: float = 5.0) -> None:
        """End the run for good (session closed or reset); the store is marked ``stopped``."""
        self._stop.set()
        self._go.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.state in ("idle", "running", "paused"):
            self._finish("stopped", "stopped by the user")

    def update(self, **changes: Any) -> None:
        """Validated now (``ValueError`` if bad), applied at the next chunk."""
        self.stream.update(**changes)

    @property
    def rtf(self) -> float:
        """Real-time factor so far: biological seconds per wall second while running."""
        return self.sim_ms / 1000.0 / self._running_wall if self._running_wall > 0 else 0.0

    # -- consumer side --------------------------------------------------------------------
    def drain(self, max_chunks: int = 10_000) -> Chunk | None:
        """Everything queued since the last call, merged into one chunk (or None)."""
        chunks = []
        while len(chunks) < max_chunks:
            try:
                chunks.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not chunks:
            return None
        return chunks[0] if len(chunks) == 1 else concat(chunks, self.stream.append_dims)

    # -- producer thread ------------------------------------------------------------------
    def _produce(self) -> None:
        last = time.perf_counter()
        try:
            while not self._stop.is_set():
                if not self._go.wait(0.1):
                    self._store_pending()
                    last = time.perf_counter()
                    continue
                if self._stop.is_set():
                    break
                if self.stream.done:
                    self._store_pending()
                    self._finish("finished")
                    return
                try:
                    chunk = self.stream.next_chunk()
                except RunStopped as err:
                    self._store_pending()
                    self._finish(err.status, str(err))
                    return
                self._unstored.append(chunk)
                if time.perf_counter() - self._stored_at >= self.store_every:
                    self._store_pending()
                self._put(chunk)
                chunk_ms = float(chunk["chunk_end"].values[-1]) - self.sim_ms
                self.sim_ms += chunk_ms
                self.spikes += chunk.sizes.get("spike", 0)
                if self.speed:
                    spare = chunk_ms / 1000.0 / self.speed - (time.perf_counter() - last)
                    if spare > 0:
                        self._stop.wait(spare)
                now = time.perf_counter()
                self._running_wall += now - last
                last = now
            self._store_pending()
        except Exception as err:  # a failure ends this run only; the display reports it
            self._finish("failed", f"{type(err).__name__}: {err}")

    def _store_pending(self) -> None:
        if self.store is not None and self._unstored and self.store.status == "running":
            chunks, self._unstored = self._unstored, []
            self.store.append(chunks[0] if len(chunks) == 1 else concat(chunks, self.stream.append_dims))
        self._stored_at = time.perf_counter()

    def _put(self, chunk: Chunk) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue

    def _finish(self, state: str, reason: str = "") -> None:
        self.state = state
        self.error = reason
        if self.store is not None and self.store.status == "running":
            self.store.finish("complete" if state == "finished" else state, reason)
        if self.on_end is not None:
            self.on_end(state)
