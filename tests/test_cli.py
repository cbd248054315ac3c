"""The command line as a user calls it: runs, summaries, bad input, kill -9, blow-ups."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import ROOT, cli_json, make_store, run_cli

from engine.spiking import APPEND_DIMS, SpikingConfig, SpikingStream
from engine.store import RunStore, open_run, read_record
from engine.stream import RunStopped


def test_run_prints_summary_and_info_reads_it_back(tmp_path):
    out = tmp_path / "coba.zarr"
    summary = cli_json(
        "run", "spiking", "--model", "coba", "--scale", "0.25", "--duration", "0.3", "--seed", "3", "--out", str(out)
    )
    for key in ("rate_hz", "spikes", "cv_isi", "synchrony", "sim_seconds", "wall_seconds"):
        assert key in summary
    assert set(summary["rate_hz"]) == {"E", "I"}
    assert summary["spikes"] > 0 and summary["complete"] is True
    assert 0 < summary["sim_seconds"] < summary["wall_seconds"]
    info = cli_json("info", str(out))
    for key in ("rate_hz", "spikes", "cv_isi", "synchrony"):
        assert info[key] == summary[key]
    text = run_cli("info", str(out))
    assert text.returncode == 0 and "rates" in text.stdout and "complete" in text.stdout


def test_set_overrides_reach_the_network(tmp_path):
    summary = cli_json(
        "run",
        "spiking",
        "--model",
        "brunel",
        "--regime",
        "C",
        "--scale",
        "0.05",
        "--duration",
        "0.1",
        "--set",
        "g=4",
        "--set",
        "eta=3",
        "--out",
        str(tmp_path / "b.zarr"),
    )
    cfg = json.loads(open_run(tmp_path / "b.zarr").attrs["config"])
    assert cfg["params"]["wi"] == pytest.approx(-0.4)
    assert summary["status"] == "complete"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--scale", "0"], "scale=0"),
        (["--dt", "-1"], "dt=-1"),
        (["--set", "g=nan"], "g=nan"),
        (["--set", "g"], "expected name=value"),
        (["--set", "bogus=1"], "unknown parameter 'bogus'"),
        (["--model", "hh"], "invalid choice: 'hh'"),
        (["--model", "brunel"], "regime"),
        (["--out", "{tmp}/missing/r.zarr"], "does not exist"),
        (["--out", "{tmp}/file.txt"], "not a run store"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(tmp_path, args, words):
    (tmp_path / "file.txt").write_text("precious")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "r.zarr")]
    proc = (
        run_cli("run", "spiking", "--duration", "0.05", "--scale", "0.1", *args)
        if "--scale" not in args
        else run_cli("run", "spiking", "--duration", "0.05", *args)
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "file.txt").read_text() == "precious"


@pytest.mark.parametrize("target", ["nothing-here", "file.txt", "plain-dir"])
def test_info_on_a_non_store_exits_2(tmp_path, target):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "plain-dir").mkdir()
    proc = run_cli("info", str(tmp_path / target))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_sigkill_mid_run_leaves_readable_incomplete_store(tmp_path):
    out = tmp_path / "killed.zarr"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "explorer.cli",
            "run",
            "spiking",
            "--model",
            "brunel",
            "--regime",
            "C",
            "--scale",
            "0.2",
            "--duration",
            "60",
            "--chunk",
            "20",
            "--quiet",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if read_record(out)["chunks"] >= 3:
                    break
            except ValueError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("the run never stored 3 chunks")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    record = read_record(out)
    assert record["status"] == "running" and not record["complete"] and record["interrupted"]
    ds = open_run(out)
    chunks = record["chunks"]
    assert ds.sizes["chunk"] == chunks and float(ds["chunk_end"].max()) == 20.0 * chunks
    assert float(ds["time"].max()) == 20.0 * chunks
    assert ds.sizes["spike"] > 0 and float(ds["spike_time"].max()) <= 20.0 * chunks
    info = cli_json("info", str(out))
    assert info["complete"] is False and info["interrupted"] is True
    assert info["simulated_ms"] == 20.0 * chunks


def test_blow_up_stops_cleanly_and_keeps_stored_chunks(tmp_path):
    cfg = SpikingConfig(model="coba", scale=0.1, duration=1.0, chunk=50, seed=1, max_rate=100)
    stream = SpikingStream(cfg)
    store = RunStore(tmp_path / "b.zarr", engine="spiking", append_dims=APPEND_DIMS)
    with pytest.raises(RunStopped):
        for k, chunk in enumerate(stream):
            store.append(chunk)
            if k == 1:
                stream.update(g=0.0, drive=1000.0)  # runs to ~1/t_ref = 200 Hz, past max_rate
    store.finish("diverged", "rate ran away")
    ds = open_run(tmp_path / "b.zarr")
    assert ds.sizes["chunk"] == 2 and ds.attrs["run_status"] == "diverged"
    assert np.isfinite(ds["v"].values).all()


def test_cli_blow_up_exits_1_with_status_diverged(tmp_path):
    out = tmp_path / "nan.zarr"
    proc = run_cli(
        "run",
        "spiking",
        "--model",
        "coba",
        "--scale",
        "0.1",
        "--duration",
        "0.5",
        "--chunk",
        "50",
        "--set",
        "g=0",
        "--set",
        "drive=1000",
        "--set",
        "max_rate=150",
        "--out",
        str(out),
        "--quiet",
    )
    assert proc.returncode == 1, proc.stderr
    assert "run stopped" in proc.stderr and "Traceback" not in proc.stderr
    assert read_record(out)["status"] == "diverged"


def test_non_finite_state_stops_the_stream():
    stream = SpikingStream(SpikingConfig(model="coba", scale=0.1, duration=0.3, chunk=50))
    next(stream)
    stream.v[5] = np.nan
    with pytest.raises(RunStopped, match="non-finite"):
        next(stream)
    assert stream.done


@pytest.mark.parametrize(
    ("args", "words"), [(["--open", "nowhere.zarr"], "does not exist"), (["--port", "70000"], "--port 70000")]
)
def test_serve_rejects_bad_input(args, words):
    proc = run_cli("serve", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]


def test_export_writes_each_format(tmp_path):
    store = tmp_path / "r.zarr"
    make_store(store, "coba", duration=0.2)
    magic = {"png": b"\x89PNG", "svg": b"<?xml", "html": b"<!DOCTYPE html>", "nc": b"CDF"}
    for fmt, head in magic.items():
        out = tmp_path / f"fig.{fmt}"
        proc = run_cli("export", str(store), "--figure", "raster", "--format", fmt, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes().lstrip()[: len(head)] == head, fmt
    proc = run_cli("export", str(store), "--format", "png", "--out", str(tmp_path / "missing" / "f.png"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_exported_netcdf_round_trips(tmp_path):
    import xarray as xr

    store = tmp_path / "r.zarr"
    make_store(store)
    assert run_cli("export", str(store), "--format", "nc", "--out", str(tmp_path / "r.nc")).returncode == 0
    back = xr.open_dataset(tmp_path / "r.nc", engine="scipy")
    np.testing.assert_array_equal(back["spike_time"].values, open_run(store)["spike_time"].values)
    assert back["spike_time"].attrs["units"] == "ms"
