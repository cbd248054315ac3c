"""Chunks: the columnar form of a stream's output, before it becomes an ``xr.Dataset``.

A :class:`Chunk` holds named numpy arrays with their dims and attrs, which variables are
coordinates, and dataset attrs: exactly what an ``xr.Dataset`` holds, without importing xarray
(and pandas), so a command-line run starts fast. ``chunk.to_dataset()`` gives the dataset;
analysis functions accept either form, since a chunk answers ``c[name].values``, ``c[name].dims``,
``c[name].attrs``, ``c.sizes``, ``c.attrs`` and ``name in c`` like a dataset does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["Chunk", "Column", "concat"]


@dataclass
class Column:
    """One variable: its dims, values and attrs (``units``, ``long_name``)."""

    dims: tuple[str, ...]
    values: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    columns: dict[str, Column] = field(default_factory=dict)
    coords: tuple[str, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)

    def add(
        self, name: str, dims: str | tuple[str, ...], values: Any, long_name: str, units: str, *, coord: bool = False
    ) -> None:
        dims = (dims,) if isinstance(dims, str) else tuple(dims)
        values = np.asarray(values)
        if values.ndim != len(dims):
            raise ValueError(f"{name}: {values.ndim}-d values for dims {dims}")
        self.columns[name] = Column(dims, values, {"long_name": long_name, "units": units})
        if coord and name not in self.coords:
            self.coords = (*self.coords, name)

    # -- the dataset-like surface analysis functions use ----------------------------------
    def __getitem__(self, name: str) -> Column:
        return self.columns[name]

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    @property
    def sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for col in self.columns.values():
            for dim, n in zip(col.dims, col.values.shape, strict=True):
                out[dim] = n
        return out

    # -- conversions ----------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        import xarray as xr

        data = {n: (c.dims, c.values, c.attrs) for n, c in self.columns.items() if n not in self.coords}
        coords = {n: (c.dims, c.values, c.attrs) for n, c in self.columns.items() if n in self.coords}
        return xr.Dataset(data, coords=coords, attrs=dict(self.attrs))

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> Chunk:
        columns = {n: Column(tuple(v.dims), np.asarray(v.values), dict(v.attrs)) for n, v in ds.variables.items()}
        return cls(columns, tuple(ds.coords), dict(ds.attrs))


def concat(chunks: list[Chunk], append_dims: tuple[str, ...]) -> Chunk:
    """Join chunks of one run: each variable along its append dim; others from the first chunk."""
    if not chunks:
        raise ValueError("no chunks to concatenate")
    first = chunks[0]
    out = Chunk({}, first.coords, dict(first.attrs))
    for name, col in first.columns.items():
        dims = [d for d in col.dims if d in append_dims]
        if dims:
            axis = col.dims.index(dims[0])
            values = np.concatenate([c.columns[name].values for c in chunks], axis=axis)
        else:
            values = col.values
        out.columns[name] = Column(col.dims, values, col.attrs)
    return out
