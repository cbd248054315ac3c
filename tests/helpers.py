"""Test helpers: small hand-built datasets, a way to call the CLI, and ways to wait for training in the
background."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]


def make_spike_dataset(spike_time, spike_neuron, *, n_exc: int, n_inh: int = 0, duration_ms: float) -> xr.Dataset:
    """A minimal spiking dataset with the engine's conventions (one chunk)."""
    n = n_exc + n_inh
    pop = np.array(["E"] * n_exc + ["I"] * n_inh)
    return xr.Dataset(
        {
            "spike_time": ("spike", np.asarray(spike_time, float), {"units": "ms", "long_name": "spike time"}),
            "spike_neuron": ("spike", np.asarray(spike_neuron, np.int32), {"units": "", "long_name": "neuron"}),
            "chunk_end": ("chunk", [float(duration_ms)], {"units": "ms", "long_name": "end of chunk"}),
        },
        coords={"neuron": np.arange(n), "population": ("neuron", pop), "pop": ["E", "I"]},
        attrs={"config": "{}"},
    )


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``dynascope ARGS`` in a fresh process, as a user would call it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "explorer.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def cli_json(*args: str) -> dict:
    proc = run_cli(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_store(path: Path, model: str = "coba", *, scale: float = 0.1, duration: float = 0.2) -> Path:
    """A small stored spiking run, made through the command line."""
    proc = run_cli(
        "run",
        "spiking",
        "--model",
        model,
        "--scale",
        str(scale),
        "--duration",
        str(duration),
        "--out",
        str(path),
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    return path


def train_to_end(run, timeout: float = 60.0) -> list:
    """Start ``run`` (an :class:`explorer.attention_run.TrainingRun`) and drain it until it has ended and
    its queue is empty (at most ``timeout`` seconds); every event drained."""
    run.start()
    events = []
    deadline = time.time() + timeout
    while time.time() < deadline and (run.state == "running" or run.pending):
        events += run.drain()
        time.sleep(0.05)
    events += run.drain()
    return events


def run_until(app, done, timeout: float = 90.0) -> None:
    """Call ``app.tick()`` (a dashboard or a tab driven from Python) every 0.1 s until ``done()``."""
    deadline = time.time() + timeout
    while time.time() < deadline and not done():
        time.sleep(0.1)
        app.tick()
    assert done()
