"""Work off the display's thread: its outcome handed to the display's periodic callback.

A tab that computes for seconds (a real model's probe, a neuron's features) runs the work in a daemon
thread with :meth:`Outcomes.launch`; the work returns a ``(kind, payload)`` pair, which the periodic
callback collects with :meth:`Outcomes.take`. A failure becomes ``("error", line)``: a
``ValueError``'s message alone (it is meant for the user: a missing extra, a silent neuron), any other
exception with its type; the server keeps serving.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Outcomes"]


class Outcomes:
    """``(kind, payload)`` pairs from background work, collected by the display's thread."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()

    def launch(self, work: Callable[[], tuple[str, Any]], *, name: str) -> None:
        """Run ``work`` in a daemon thread called ``name``; its outcome is queued."""
        threading.Thread(target=self.run, args=(work,), name=name, daemon=True).start()

    def run(self, work: Callable[[], tuple[str, Any]]) -> None:
        """Run ``work`` here and queue its ``(kind, payload)``, or ``("error", line)`` if it raises."""
        try:
            self._queue.put(work())
        except ValueError as err:  # meant for the user: one line
            self._queue.put(("error", str(err)))
        except Exception as err:  # reported beside the controls; the server keeps serving
            self._queue.put(("error", f"{type(err).__name__}: {err}"))

    def take(self) -> tuple[str, Any]:
        """The oldest outcome not yet taken, or ``("", None)`` when none is waiting."""
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return "", None
