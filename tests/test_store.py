"""Run stores: append, reopen, refuse foreign paths, ignore a half-written chunk."""

import numpy as np
import pytest
import xarray as xr

from engine.spiking import APPEND_DIMS, SpikingConfig, SpikingStream, run
from engine.store import RunStore, StoreError, check_out_path, open_run, read_record


def _write(path, cfg, n_chunks=None):
    """Store a run; with ``n_chunks``, stop writing after that many, as a killed writer would."""
    stream = SpikingStream(cfg)
    store = RunStore(path, engine="spiking", append_dims=APPEND_DIMS)
    for k, chunk in enumerate(stream):
        store.append(chunk)
        if n_chunks is not None and k + 1 == n_chunks:
            return store
    store.finish("complete")
    return store


def test_stored_run_equals_in_memory_run(tmp_path):
    cfg = SpikingConfig(model="coba", scale=0.1, duration=0.2, chunk=50, seed=2)
    _write(tmp_path / "r.zarr", cfg)
    stored = open_run(tmp_path / "r.zarr")
    mem = run(cfg)
    for name in ("spike_time", "spike_neuron", "rate", "v", "g", "chunk_end"):
        np.testing.assert_array_equal(stored[name].values, mem[name].values)
    assert stored.attrs["run_status"] == "complete"
    assert stored["spike_time"].attrs["units"] == "ms"
    assert stored.attrs["config"] == mem.attrs["config"]
    # the store is plain Zarr: xarray opens it directly too
    direct = xr.open_zarr(tmp_path / "r.zarr", consolidated=False)
    np.testing.assert_array_equal(direct["spike_neuron"].values, mem["spike_neuron"].values)
    assert list(direct["population"].values[:2]) == ["E", "E"]


def test_unfinished_store_reports_running_and_reads_committed_chunks(tmp_path):
    cfg = SpikingConfig(model="coba", scale=0.1, duration=1.0, chunk=50, seed=2)
    store = _write(tmp_path / "r.zarr", cfg, n_chunks=3)
    record = read_record(tmp_path / "r.zarr")
    assert record["status"] == "running" and not record["complete"] and record["chunks"] == 3
    ds = open_run(tmp_path / "r.zarr")
    assert float(ds["chunk_end"].max()) == 150.0
    # a half-written 4th chunk: arrays grown, record not yet committed
    store._arrays["spike_time"].write(np.full(7, 1e9))
    ds2 = open_run(tmp_path / "r.zarr")
    assert ds2.sizes["spike"] == ds.sizes["spike"]
    assert float(ds2["spike_time"].max()) <= 150.0


def test_out_paths_are_checked(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a").write_text("x")
    with pytest.raises(StoreError, match="not a run store"):
        check_out_path(tmp_path / "notes.txt")
    with pytest.raises(StoreError, match="not a run store"):
        check_out_path(tmp_path / "dir")
    with pytest.raises(StoreError, match="does not exist"):
        check_out_path(tmp_path / "missing" / "r.zarr")
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    with pytest.raises(StoreError, match="not a run store"):
        open_run(tmp_path / "dir")
