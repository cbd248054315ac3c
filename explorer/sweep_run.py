"""A degeneracy sweep running in a background thread; a display drains its events on a timer.

Conditions run one after another (:func:`engine.rnn.sweep.run_condition`); each finished one is
written into the sweep store (:func:`engine.rnn.sweep.write_condition`), so the store always
holds every finished condition and can be reopened. Like :class:`explorer.live.LiveRun`, the
producer thread only trains, stores and queues; it never touches Bokeh or Panel objects. A
display calls :meth:`SweepRun.drain` from a periodic callback and gets the queued events, the
training chunks of one condition merged into one.

Stop takes effect at the next training chunk (100 steps); a condition already being measured
(DSA and PIF take seconds) is finished and stored first. A sweep started on an unfinished store
of the same sweep resumes it: finished conditions are skipped.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from engine.chunk import Chunk, concat
from engine.rnn.sweep import SweepSpec, init_store, run_condition, write_condition
from engine.rnn.training import APPEND_DIMS

__all__ = ["SweepEvent", "SweepRun"]


@dataclass
class SweepEvent:
    """``chunk``: training steps of condition ``index``; ``condition``: that condition is stored."""

    kind: str  # "chunk" | "condition"
    index: int  # condition index
    chunk: Chunk | None = None


class SweepRun:
    """One sweep: Start / Stop, a state, and the events a display drains."""

    def __init__(self, spec: SweepSpec, path: str | Path, *, max_queue: int = 256) -> None:
        self.spec = spec
        self.path = Path(path)
        init_store(spec, self.path)  # raises StoreError / ValueError before anything starts
        self.done = np.asarray(xr.open_zarr(self.path, consolidated=False)["done"].values, bool)  # (condition,)
        self.state = "idle"  # idle | running | finished | stopped | failed
        self.error = ""
        self.current = -1  # condition being trained
        self.started = 0.0
        self.finished_at = 0.0
        self.max_queue = max_queue
        self._queue: queue.Queue[SweepEvent] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self.state = "running"
        self.started = time.perf_counter()
        self._thread = threading.Thread(target=self._produce, name="dynascope-sweep", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 0.0) -> None:
        """Ask the sweep to end at the next chunk; wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread is not None and timeout > 0:
            self._thread.join(timeout)
        if self._thread is None and self.state == "idle":
            self.state = "stopped"

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() and self.state == "running"

    @property
    def pending(self) -> bool:
        """Events wait in the queue."""
        return not self._queue.empty()

    @property
    def seconds(self) -> float:
        """Wall seconds since start (until the end)."""
        if not self.started:
            return 0.0
        return (self.finished_at or time.perf_counter()) - self.started

    # -- consumer side --------------------------------------------------------------------
    def drain(self) -> list[SweepEvent]:
        """Everything queued since the last call; consecutive chunks of one condition merged."""
        events: list[SweepEvent] = []
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                break
            last = events[-1] if events else None
            if event.kind == "chunk" and last is not None and last.kind == "chunk" and last.index == event.index:
                last.chunk = concat([last.chunk, event.chunk], APPEND_DIMS)
            else:
                events.append(event)
        return events

    # -- producer thread ------------------------------------------------------------------
    def _produce(self) -> None:
        import torch

        torch.set_num_threads(1)  # one intra-op thread: two on two cores ran 3-4x slower (OpenMP spinning)
        spec_json = self.spec.to_json()
        try:
            for index in range(len(self.spec.values)):
                if self._stop.is_set():
                    break
                if self.done[index]:  # resuming: stored already
                    continue
                self.current = index
                result = run_condition(
                    spec_json,
                    index,
                    on_chunk=lambda chunk, i=index: self._put_chunk(i, chunk),
                    should_stop=self._stop.is_set,
                )
                if result is None:  # stopped during training: the condition is not stored
                    break
                write_condition(self.path, result)
                self._queue.put(SweepEvent("condition", index))
            self._finish("stopped" if self._stop.is_set() else "finished")
        except Exception as err:  # a failure ends this sweep only; the display reports it
            self._finish("failed", f"{type(err).__name__}: {err}")

    def _put_chunk(self, index: int, chunk: Chunk) -> None:
        """Queue a chunk; wait while the display is behind (dropped once stopping)."""
        while self._queue.qsize() >= self.max_queue and not self._stop.is_set():
            time.sleep(0.05)
        if not self._stop.is_set():
            self._queue.put(SweepEvent("chunk", index, chunk))

    def _finish(self, state: str, reason: str = "") -> None:
        self.error = reason
        self.finished_at = time.perf_counter()
        self.state = state
