"""Degeneracy sweeps through the command line: run, resume, summary, bad input."""

import time

import pytest
from helpers import cli_json, run_cli

pytestmark = pytest.mark.slow


def test_tiny_sweep_runs_resumes_and_reports(tmp_path):
    out = tmp_path / "sweep.zarr"
    args = (
        "sweep",
        "degeneracy",
        "--task",
        "flipflop",
        "--vary",
        "channels=1,2",
        "--seeds",
        "3",
        "--hidden",
        "16",
        "--max-steps",
        "60",
        "--workers",
        "2",
        "--out",
        str(out),
    )
    summary = cli_json(*args)
    assert summary["complete"] and [c["channels"] for c in summary["conditions"]] == [1, 2]
    for row in summary["conditions"]:
        assert row["done"] and 0 <= row["n_converged"] <= 3
    t0 = time.time()
    again = cli_json(*args)  # finished conditions are skipped
    assert again["conditions"] == summary["conditions"] and time.time() - t0 < 30
    info = cli_json("info", str(out))
    assert info["conditions"] == summary["conditions"]
    other = run_cli("sweep", "degeneracy", "--vary", "channels=1,3", "--seeds", "3", "--out", str(out))
    assert other.returncode == 2 and "different sweep" in other.stderr
    _stored_networks_reproduce_their_trajectories(out)


def _stored_networks_reproduce_their_trajectories(path):
    """Every trained parameter is in the store: the networks rebuilt from it replay the test trials."""
    import numpy as np
    import torch
    import xarray as xr

    from engine.rnn.sweep import condition_model

    ds = xr.open_zarr(path, consolidated=False)
    for i, channels in enumerate(ds["channels"].values):
        model = condition_model(ds, i)
        x = torch.from_numpy(np.repeat(ds["inputs"].values[i][None, :, :, :channels], 3, 0))
        with torch.no_grad():
            _, hidden = model(x, return_hidden=True)
        np.testing.assert_allclose(hidden.numpy(), ds["states"].values[i], atol=1e-5)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--vary", "channels=0"], "channels=0 is out of range"),
        (["--vary", "channels=1", "--seeds", "0"], "seeds=0"),
        (["--vary", "width=1"], "knob='width'"),
        (["--vary", "channels"], "expected KNOB=V1,V2"),
        (["--task", "nope", "--vary", "channels=1"], "invalid choice: 'nope'"),
        (["--vary", "channels=1", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
        (["--vary", "gamma=1,2"], "needs parameterisation=mup"),
        (["--vary", "gamma=0,2", "--parameterisation", "mup"], "gamma=0 is out of range"),
        (["--vary", "nuclear=-1"], "nuclear=-1"),
        (["--vary", "hidden=16.5"], "hidden=16.5"),
        (["--vary", "hidden=16,32", "--set", "chan=2"], "task option 'chan' is not allowed"),
        (["--vary", "hidden=16,32", "--set", "channels=0"], "channels=0 is out of range"),
    ],
)
def test_bad_sweep_input_exits_2(tmp_path, args, words):
    proc = run_cli("sweep", "degeneracy", *args, "--out", str(tmp_path / "s.zarr"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr
