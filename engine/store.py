"""Run stores: every chunk of a stream appended to one Zarr store, durable chunk by chunk.

A store is a plain Zarr v2 group (uncompressed, ``.``-separated chunk keys, xarray's
``_ARRAY_DIMENSIONS``), so ``xr.open_zarr(path)`` reads it. Its group attribute
``dynascope_run`` is the commit record: after all arrays of a chunk are written, the record is
rewritten with the new extent of every append dim. Every file is written atomically (a
temporary file, then a rename), so a writer killed at any moment, even by ``kill -9``, leaves

- arrays at least as long as the committed extents (a last chunk may be half written), and
- a record whose ``status`` is still ``"running"``.

:func:`open_run` reads exactly the committed extents: every completed chunk opens, a
half-written one is ignored. Writing needs only numpy (no zarr import), so a run starts fast.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.chunk import Chunk, Column

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "RunStore",
    "StoreError",
    "open_run",
    "read_record",
    "check_out_path",
    "is_store",
    "is_sweep_store",
    "RECORD",
    "SWEEP_ATTR",
]

RECORD = "dynascope_run"  # the group attribute holding the commit record
SWEEP_ATTR = "dynascope_sweep"  # the group attribute of a sweep store: its spec as JSON
FORMAT = "dynascope-run/1"
FINAL_STATUSES = ("complete", "diverged", "stopped", "failed")
CHUNK_BYTES = 1 << 18  # largest chunk file along an append dim


class StoreError(ValueError):
    """A path that is not a run store, or cannot become one."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_json(path: Path, obj: dict) -> None:
    _write_atomic(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default).encode())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store attribute value {value!r}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_store(path: str | os.PathLike) -> bool:
    attrs = _read_json(Path(path) / ".zattrs")
    return isinstance(attrs, dict) and RECORD in attrs


def is_sweep_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sweep store (its group attrs hold the sweep spec)."""
    attrs = _read_json(Path(path).expanduser() / ".zattrs")
    return isinstance(attrs, dict) and SWEEP_ATTR in attrs


def check_out_path(path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Validate a path a new store will be written to; raise :class:`StoreError` if unusable.

    An existing run store is replaced only when ``overwrite``; anything else that exists there
    (a file, a directory that is not a store) is never touched.
    """
    p = Path(path).expanduser()
    if p.exists() or p.is_symlink():
        if p.is_symlink() or not is_store(p):
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


class _Array:
    """One uncompressed Zarr v2 array, growing along at most one axis.

    While a run is written, the stored shape runs ahead of the data (it doubles when full, so
    metadata is rarely rewritten); :meth:`trim` sets the exact shape when the run ends, and
    readers of an unfinished store cut at the committed extents. Chunk files are created
    directly and replaced atomically when they already hold data.
    """

    def __init__(self, root: Path, name: str, col: Column, axis: int | None) -> None:
        self.dir = root / name
        self.dir.mkdir()
        self.axis = axis
        values = np.ascontiguousarray(col.values)
        self.dtype = values.dtype
        self.chunks = [max(1, n) for n in values.shape]
        self.length = 0  # filled length along the growing axis
        self.shape = list(values.shape)
        self._block: tuple[int, np.ndarray] | None = None  # the last, partly filled chunk file
        if axis is not None:
            # room for ~16 appends like the first, at most CHUNK_BYTES per file
            row_bytes = max(1, values.itemsize * (values.size // max(1, values.shape[axis])))
            cap = max(16, CHUNK_BYTES // row_bytes)
            want = 16 * max(1, values.shape[axis])
            self.chunks[axis] = min(1 << (want - 1).bit_length(), 1 << (cap.bit_length() - 1))
            self.shape[axis] = 0
        _write_json(self.dir / ".zattrs", {"_ARRAY_DIMENSIONS": list(col.dims), **col.attrs})
        self.write(values)

    def _write_meta(self) -> None:
        _write_json(
            self.dir / ".zarray",
            {
                "zarr_format": 2,
                "shape": self.shape,
                "chunks": self.chunks,
                "dtype": self.dtype.str,
                "compressor": None,
                "filters": None,
                "fill_value": None,
                "order": "C",
                "dimension_separator": ".",
            },
        )

    def write(self, values: np.ndarray) -> None:
        """Append ``values`` along the growing axis (or write the whole static array)."""
        values = np.ascontiguousarray(values, dtype=self.dtype)
        if self.axis is None:
            self.shape = list(values.shape)
            self._write_meta()
            if values.size:
                (self.dir / ".".join("0" * max(1, values.ndim))).write_bytes(values.tobytes())
            return
        a, start, n = self.axis, self.length, values.shape[self.axis]
        if start + n > self.shape[a] or start == 0:
            self.shape[a] = max(start + n, 2 * self.shape[a])
            self._write_meta()
        size = self.chunks[a]
        for k in range(start // size, (start + n - 1) // size + 1) if n else ():
            lo, hi = max(start, k * size), min(start + n, (k + 1) * size)
            path = self.dir / ".".join(str(k) if d == a else "0" for d in range(values.ndim))
            exists = lo > k * size  # the file already holds rows of this chunk
            if self._block is not None and self._block[0] == k:
                block = self._block[1]
            elif exists:
                block = np.fromfile(path, dtype=self.dtype).reshape(self.chunks)
            else:
                block = np.zeros(self.chunks, dtype=self.dtype)
            dst = [slice(None)] * values.ndim
            src = [slice(None)] * values.ndim
            dst[a] = slice(lo - k * size, hi - k * size)
            src[a] = slice(lo - start, hi - start)
            block[tuple(dst)] = values[tuple(src)]
            if exists:  # holds committed data: never leave it half written
                _write_atomic(path, block.tobytes())
            else:  # new: beyond every committed extent until the record says otherwise
                path.write_bytes(block.tobytes())
            self._block = (k, block)
        self.length = start + n

    def trim(self) -> None:
        """Store the exact shape (the run is over)."""
        if self.axis is not None and self.shape[self.axis] != self.length:
            self.shape[self.axis] = self.length
            self._write_meta()


class RunStore:
    """Appends the chunks of one run to a Zarr store.

    Use as a context manager; leaving it normally marks the run ``complete``, an exception marks
    it ``failed`` (``stopped`` for ``KeyboardInterrupt``), and :meth:`finish` sets any status.
    """

    def __init__(
        self, path: str | os.PathLike, *, engine: str, append_dims: tuple[str, ...], overwrite: bool = True
    ) -> None:
        self.path = check_out_path(path, overwrite=overwrite)
        self.engine = engine
        self.append_dims = tuple(append_dims)
        self.extents = {d: 0 for d in self.append_dims}
        self.chunks = 0
        self.status = "running"
        self.attrs: dict[str, Any] = {}
        self._arrays: dict[str, _Array] = {}
        self._started = _now()
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir()
        _write_json(self.path / ".zgroup", {"zarr_format": 2})
        self._commit("running")

    def append(self, chunk: Chunk | xr.Dataset) -> None:
        """Write one chunk durably: arrays first, then the commit record."""
        if self.status != "running":
            raise RuntimeError(f"store {self.path} is closed ({self.status})")
        if not isinstance(chunk, Chunk):
            chunk = Chunk.from_dataset(chunk)
        if self.chunks == 0:
            self._create(chunk)
        else:
            for name, array in self._arrays.items():
                if array.axis is not None:
                    array.write(chunk[name].values)
        sizes = chunk.sizes
        for dim in self.append_dims:
            self.extents[dim] += sizes.get(dim, 0)
        self.chunks += 1
        self._commit("running")

    def _create(self, chunk: Chunk) -> None:
        for name, col in chunk.columns.items():
            axes = [k for k, d in enumerate(col.dims) if d in self.append_dims]
            if len(axes) > 1:
                raise ValueError(f"variable {name!r} has several append dims {col.dims}")
            self._arrays[name] = _Array(self.path, name, col, axes[0] if axes else None)
        extra = [n for n in chunk.coords if chunk[n].dims != (n,)]
        self.attrs = dict(chunk.attrs)
        if extra:
            self.attrs["coordinates"] = " ".join(extra)

    def finish(self, status: str = "complete", reason: str = "") -> None:
        if status not in FINAL_STATUSES:
            raise ValueError(f"status={status!r} is not allowed: choose one of {', '.join(FINAL_STATUSES)}")
        if self.status == "running":
            for array in self._arrays.values():
                array.trim()
            self._commit(status, reason)
            self.status = status

    def _commit(self, status: str, reason: str = "") -> None:
        record = {
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
        _write_json(self.path / ".zattrs", {**self.attrs, RECORD: record})

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
    attrs = _read_json(p / ".zattrs")
    record = attrs.get(RECORD) if isinstance(attrs, dict) else None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise StoreError(f"{p} is not a run store")
    record = dict(record)
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


def _read_array(folder: Path, extents: dict[str, int]) -> Column:
    meta = _read_json(folder / ".zarray")
    attrs = _read_json(folder / ".zattrs")
    if not isinstance(meta, dict) or not isinstance(attrs, dict):
        raise StoreError(f"{folder} is not a readable array")
    if meta.get("compressor") or meta.get("filters"):
        raise StoreError(f"{folder}: compressed arrays are not written by run stores")
    dims = tuple(attrs.pop("_ARRAY_DIMENSIONS"))
    dtype = np.dtype(meta["dtype"])
    shape = [min(n, extents.get(d, n)) for n, d in zip(meta["shape"], dims, strict=True)]
    chunks = meta["chunks"]
    out = np.zeros(shape, dtype=dtype)
    grid = [range((n + c - 1) // c) for n, c in zip(shape, chunks, strict=True)]
    for index in np.ndindex(*[len(g) for g in grid]) if all(shape) else ():
        path = folder / ".".join(str(k) for k in index) if index else folder / "0"
        if not path.exists():
            continue
        block = np.fromfile(path, dtype=dtype).reshape(chunks)
        dst = tuple(slice(k * c, min((k + 1) * c, n)) for k, c, n in zip(index, chunks, shape, strict=True))
        out[dst] = block[tuple(slice(0, s.stop - s.start) for s in dst)]
    return Column(dims, out, attrs)


def open_chunk(path: str | os.PathLike) -> Chunk:
    """The committed part of a run store in columnar form (no xarray needed)."""
    record = read_record(path)
    p = Path(path).expanduser()
    if record["chunks"] == 0:
        raise StoreError(f"{p} holds no completed chunk yet")
    attrs = _read_json(p / ".zattrs")
    coords = tuple(attrs.pop("coordinates", "").split())
    attrs.pop(RECORD, None)
    columns = {}
    for folder in sorted(q for q in p.iterdir() if (q / ".zarray").is_file()):
        columns[folder.name] = _read_array(folder, record["extents"])
    index = tuple(n for n, c in columns.items() if c.dims == (n,))
    attrs["run_status"] = record["status"]
    return Chunk(columns, tuple(dict.fromkeys(index + coords)), attrs)


def open_run(path: str | os.PathLike) -> xr.Dataset:
    """Open the committed part of a run store as an in-memory ``xr.Dataset``.

    ``ds.attrs["run_status"]`` holds the store's status (``complete``, ``running``, …).
    """
    return open_chunk(path).to_dataset()
