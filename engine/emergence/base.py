"""What every emergence task provides to the training stream.

A task run owns its model, its data, its optimiser and its fixed probe set. The stream
(:mod:`engine.emergence.training`) calls :meth:`TaskRun.train_step` ``probe_every`` times, then
:meth:`TaskRun.probe`, and turns what the probe returns into the chunk's ``probe``-dimensioned
variables. A :class:`Probed` value names its dims *without* the leading ``probe`` dim, which the
stream adds; :meth:`TaskRun.static` gives the variables that do not change over training
(coordinates such as ``layer`` or ``frequency``, the probe inputs), written into every chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Probed", "TaskRun"]


@dataclass(frozen=True)
class Probed:
    """One measured variable: dims (without ``probe``), values, long name and units."""

    dims: tuple[str, ...]
    values: np.ndarray
    long_name: str
    units: str = ""

    def __post_init__(self) -> None:
        values = np.asarray(self.values)
        object.__setattr__(self, "values", values)
        if values.ndim != len(self.dims):
            raise ValueError(f"{self.long_name}: {values.ndim}-d values for dims {self.dims}")


class TaskRun:
    """Base of a task's model, data and probes (see the module docstring)."""

    model = None  # the torch.nn.Module being trained
    optimizer = None  # its torch.optim.Optimizer

    def descend(self, loss) -> float:
        """One optimiser step on ``loss`` (a scalar tensor); its value."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def train_step(self, step: int) -> float:
        """One optimiser step at training step ``step`` (0-based, before the update); the training loss."""
        raise NotImplementedError

    def probe(self) -> dict[str, Probed]:
        """The measures at the current weights, on the fixed probe set."""
        raise NotImplementedError

    def static(self) -> dict[str, tuple[Probed, bool]]:
        """Variables that never change, each with whether it is a coordinate."""
        return {}
