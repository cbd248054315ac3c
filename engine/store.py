"""Run stores: every chunk of a stream appended to one Zarr store, durable chunk by chunk.

Layout: an ordinary Zarr (format 2) group that ``xr.open_zarr`` reads, whose attribute
``dynascope_run`` is the commit record. After all arrays of a chunk are written, the record is
rewritten with the new extent of every append dim. Zarr writes each file atomically (a
temporary file, then a rename), so a writer killed at any moment (even ``kill -9``) leaves:

- arrays at least as long as the committed extents (the last chunk may be half written), and
- a record whose ``status`` is still ``"running"``.

:func:`open_run` reads exactly the committed extents, so every completed chunk opens and a
half-written one is ignored.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

__all__ = ["RunStore", "StoreError", "open_run", "read_record", "check_out_path", "RECORD"]

RECORD = "dynascope_run"  # the group attribute holding the commit record
FORMAT = "dynascope-run/1"
FINAL_STATUSES = ("complete", "diverged", "stopped", "failed")


class StoreError(ValueError):
    """A path that is not a run store, or cannot become one."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _read_attrs(path: Path) -> dict | None:
    """The group attributes of a Zarr v2 store, or None when ``path`` is not one."""
    try:
        return json.loads((path / ".zattrs").read_text())
    except (OSError, ValueError):
        return None


def is_store(path: str | os.PathLike) -> bool:
    attrs = _read_attrs(Path(path))
    return isinstance(attrs, dict) and RECORD in attrs


def check_out_path(path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Validate a path a new store will be written to; raise :class:`StoreError` if unusable.

    An existing run store is replaced only when ``overwrite``; anything else that exists there
    (a file, a directory that is not a store) is never touched.
    """
    p = Path(path).expanduser()
    if p.exists():
        if not is_store(p):
            kind = "a directory" if p.is_dir() else "a file"
            raise StoreError(f"{p} exists and is {kind} that is not a run store; refusing to overwrite it")
        if not overwrite:
            raise StoreError(f"{p} is already a run store; choose another path")
    parent = p.absolute().parent
    if not parent.is_dir():
        raise StoreError(f"cannot write {p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write {p}: directory {parent} is not writable")
    return p


def _chunk_len(n: int) -> int:
    """Zarr chunk length along an append dim: a power of two, at least 1024."""
    return max(1024, 1 << max(0, int(n - 1).bit_length()))


class RunStore:
    """Appends the chunks of one run to a Zarr store.

    Use as a context manager; leaving it normally marks the run ``complete``, an exception marks
    it ``failed`` (``stopped`` for ``KeyboardInterrupt``), and :meth:`finish` sets any status.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        engine: str,
        append_dims: tuple[str, ...],
        overwrite: bool = True,
    ) -> None:
        self.path = check_out_path(path, overwrite=overwrite)
        self.engine = engine
        self.append_dims = tuple(append_dims)
        self.extents = {d: 0 for d in self.append_dims}
        self.chunks = 0
        self.status = "running"
        self._started = _now()
        if self.path.exists():
            shutil.rmtree(self.path)
        self._group = zarr.open_group(str(self.path), mode="w", zarr_format=2)
        self._arrays: dict[str, tuple[zarr.Array, int]] = {}
        self._commit(status="running")

    # -- writing --------------------------------------------------------------------------
    def append(self, chunk: xr.Dataset) -> None:
        """Write one chunk durably: arrays first, then the commit record."""
        if self.status != "running":
            raise RuntimeError(f"store {self.path} is closed ({self.status})")
        if self.chunks == 0:
            self._create(chunk)
        else:
            for name, (array, axis) in self._arrays.items():
                values = np.asarray(chunk[name].values)
                if values.shape[axis]:
                    array.append(values, axis=axis)
        for dim in self.append_dims:
            self.extents[dim] += chunk.sizes.get(dim, 0)
        self.chunks += 1
        self._commit(status="running")

    def _create(self, chunk: xr.Dataset) -> None:
        """First chunk: xarray writes every variable with its metadata; later chunks append."""
        encoding = {}
        for name, var in chunk.variables.items():
            dims = [d for d in var.dims if d in self.append_dims]
            if len(dims) > 1:
                raise ValueError(f"variable {name!r} has several append dims {dims}")
            if dims:
                encoding[name] = {
                    "chunks": tuple(
                        _chunk_len(var.sizes[d]) if d in self.append_dims else var.sizes[d] for d in var.dims
                    )
                }
        chunk = chunk.copy()
        chunk.attrs[RECORD] = self._group.attrs[RECORD]  # xarray replaces the group attributes
        chunk.to_zarr(self.path, mode="a", consolidated=False, zarr_format=2, encoding=encoding)
        self._group = zarr.open_group(str(self.path), mode="r+", zarr_format=2)
        for name in encoding:
            dim = next(d for d in chunk[name].dims if d in self.append_dims)
            self._arrays[name] = (self._group[name], chunk[name].dims.index(dim))

    def finish(self, status: str = "complete", reason: str = "") -> None:
        if status not in FINAL_STATUSES:
            raise ValueError(f"status={status!r} is not allowed: choose one of {', '.join(FINAL_STATUSES)}")
        if self.status == "running":
            self._commit(status=status, reason=reason)
            self.status = status

    def _commit(self, *, status: str, reason: str = "") -> None:
        self._group.attrs[RECORD] = {
            "format": FORMAT,
            "engine": self.engine,
            "status": status,
            "reason": reason,
            "chunks": self.chunks,
            "extents": dict(self.extents),
            "append_dims": list(self.append_dims),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": self._started,
            "updated": _now(),
        }

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finish("complete")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("stopped", "interrupted by the user")
        else:
            self.finish("failed", f"{exc_type.__name__}: {exc}")


# -- reading ------------------------------------------------------------------------------
def read_record(path: str | os.PathLike) -> dict:
    """The commit record of a store, with ``complete`` and ``interrupted`` flags added."""
    p = Path(path).expanduser()
    if not p.exists():
        raise StoreError(f"{p} does not exist")
    attrs = _read_attrs(p)
    record = attrs.get(RECORD) if isinstance(attrs, dict) else None
    if not isinstance(record, dict):
        raise StoreError(f"{p} is not a run store")
    if record.get("format") != FORMAT:
        raise StoreError(f"{p} is not a run store of format {FORMAT}")
    record["complete"] = record["status"] == "complete"
    record["interrupted"] = record["status"] == "running" and not _writer_alive(record)
    return record


def _writer_alive(record: dict) -> bool:
    if record.get("host") != socket.gethostname():
        return True  # cannot tell; assume it may still run
    try:
        os.kill(int(record["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError):
        return False
    except PermissionError:
        return True
    return True


def _dims_of(array: zarr.Array) -> tuple[str, ...]:
    names = getattr(array.metadata, "dimension_names", None)
    if names:
        return tuple(names)
    return tuple(array.attrs.get("_ARRAY_DIMENSIONS", ()))


def open_run(path: str | os.PathLike) -> xr.Dataset:
    """Open the committed part of a run store as an in-memory ``xr.Dataset``.

    ``ds.attrs["run_status"]`` holds the store's status (``complete``, ``running``, …).
    """
    record = read_record(path)
    p = Path(path).expanduser()
    extents = record["extents"]
    if record["chunks"] == 0:
        raise StoreError(f"{p} holds no completed chunk yet")
    try:
        group = zarr.open_group(str(p), mode="r", zarr_format=2)
    except Exception as err:  # a damaged store: say so in one line
        raise StoreError(f"{p} cannot be opened as Zarr: {err}") from None
    variables, coord_names = {}, set()
    for name, array in group.arrays():
        dims = _dims_of(array)
        index = tuple(slice(0, extents[d]) if d in extents else slice(None) for d in dims)
        data = array[index] if dims else array[...]
        attrs = {k: v for k, v in array.attrs.items() if not k.startswith("_")}
        coords = attrs.pop("coordinates", None)
        if coords:
            coord_names.update(coords.split())
        variables[name] = xr.Variable(dims, np.asarray(data), attrs)
    index_names = [n for n, v in variables.items() if v.dims == (n,)]
    coord_names.update(index_names)
    ds = xr.Dataset(
        {n: v for n, v in variables.items() if n not in coord_names},
        coords={n: v for n, v in variables.items() if n in coord_names},
    )
    ds.attrs = {k: v for k, v in group.attrs.items() if not k.startswith("_") and k != RECORD}
    ds.attrs["run_status"] = record["status"]
    return ds
