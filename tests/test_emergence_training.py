"""The emergence stream: chunks, determinism, the clamp intervention, updates, the command line."""

import json

import numpy as np
import pytest
import torch
import xarray as xr
from helpers import run_cli

from engine.chunk import concat
from engine.emergence.config import EmergenceConfig
from engine.emergence.training import APPEND_DIMS, EmergenceStream, clamp_hook, train_run
from engine.stream import RunStopped
from explorer.cli import main

TINY = {"layers": 2, "heads": 2, "width": 16, "steps": 6, "probe_every": 3, "probe_batch": 4, "batch": 4}


def tiny(task="induction", **kw):
    extra = {"induction": {"vocab": 8, "repeat": 4}, "sparsity": {"length": 12}}.get(task, {})
    return EmergenceConfig.for_task(task, **{**TINY, **extra, **kw})


def test_chunks_carry_step_and_probe_measures_with_units():
    ds, stream = train_run(tiny())
    assert list(ds["probe"].values) == [0, 3, 6] and list(ds["step"].values) == [1, 2, 3, 4, 5, 6]
    assert ds["top_ratio"].dims == ("probe", "layer") and ds["induction"].dims == ("probe", "layer", "head")
    assert ds["icl_acc"].dims == ("probe",) and ds.attrs["task"] == "induction"
    for name, var in ds.variables.items():
        assert "units" in var.attrs and var.attrs.get("long_name"), name
    assert json.loads(ds.attrs["config"])["repeat"] == 4
    assert stream.train_seconds > 0 and stream.probe_seconds > 0


def test_the_same_config_and_seed_give_the_same_data():
    a, _ = train_run(tiny("sparsity"))
    b, _ = train_run(tiny("sparsity"))
    xr.testing.assert_identical(a, b)
    c, _ = train_run(tiny("sparsity", seed=1))
    assert not np.array_equal(a["loss"].values, c["loss"].values)


def test_clamp_hook_zeroes_only_the_named_heads():
    names, fn = clamp_hook(((1, 0),), 2, "zero")
    z = torch.ones(3, 2, 4, 5)
    assert names == ["blocks.1.attn.hook_z"]
    out = fn(z, "blocks.1.attn.hook_z")
    assert out[:, 0].abs().sum() == 0 and torch.equal(out[:, 1], z[:, 1])
    assert fn(z, "blocks.0.attn.hook_z") is None
    _, mean_fn = clamp_hook(((0, 1),), 2, "mean")
    z = torch.randn(3, 2, 4, 5)
    out = mean_fn(z, "blocks.0.attn.hook_z")
    torch.testing.assert_close(out[:, 1], z[:, 1].mean(0, keepdim=True).expand(3, 4, 5))


def test_clamping_acts_in_its_window_only():
    base, _ = train_run(tiny())
    clamped, stream = train_run(tiny(clamp="0.0,1.1", clamp_start=2, clamp_end=4))
    np.testing.assert_array_equal(clamped["clamped"].values, [False, False, True, True, False, False])
    np.testing.assert_array_equal(clamped["loss"].values[:2], base["loss"].values[:2])  # before the window
    assert not np.allclose(clamped["loss"].values[2:], base["loss"].values[2:])
    assert "clamp 0.0,1.1" in clamped.attrs["title"]
    assert not stream.run.model.hook_points["blocks.0.attn.hook_z"].active  # removed after the window


def test_updates_apply_at_the_next_chunk_and_are_validated():
    stream = EmergenceStream(tiny(steps=9))
    first = stream.next_chunk()
    stream.update(lr=0.01, probe_every=2)
    second = stream.next_chunk()
    assert set(first["lr"].values) == {1e-3} and set(second["lr"].values) == {0.01}
    assert list(second["probe"].values) == [5]
    with pytest.raises(ValueError, match="'heads' cannot change"):
        stream.update(heads=4)
    with pytest.raises(ValueError, match="lr=-1"):
        stream.update(lr=-1.0)


def test_a_non_finite_loss_stops_the_run_keeping_earlier_chunks(monkeypatch):
    stream = EmergenceStream(tiny())
    chunks = [stream.next_chunk()]
    monkeypatch.setattr(stream.run, "train_step", lambda step: float("nan"))
    with pytest.raises(RunStopped, match="non-finite"):
        stream.next_chunk()
    assert stream.done and concat(chunks, APPEND_DIMS).sizes["probe"] == 2


@pytest.mark.slow
def test_relu_sparsity_starts_near_half_and_falls_in_training():
    """Li et al. (2022): about half the ReLU units fire at initialisation; training makes them lazy."""
    ds, _ = train_run(EmergenceConfig.for_task("sparsity", steps=150, probe_every=50, seed=0))
    share = ds["nonzero_share"].values  # (probe, layer)
    assert np.all(np.abs(share[0] - 0.5) < 0.05), share[0]
    assert np.all(share[-1] < share[0] - 0.05) and share[-1].mean() < share[0].mean() - 0.15, share


def test_cli_runs_a_task_and_info_reads_it_back(tmp_path, capsys):
    out = tmp_path / "ind.zarr"
    args = ["--layers", "1", "--heads", "2", "--width", "16", "--steps", "12", "--probe-every", "2"]
    code = main(["run", "emergence", "--task", "induction", *args, "--set", "repeat=4", "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["task"] == "induction" and summary["steps"] == 12 and summary["probes"] == 7
    assert len(summary["layers"]) == 1 and summary["layers"][0]["law"]["model"] == "emergence law"
    assert set(summary["onsets"]) == {"icl_acc", "induction_max"} and len(summary["heads"]) == 2
    assert main(["info", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["layers"] == summary["layers"] and again["onsets"] == summary["onsets"]
    assert main(["info", str(out)]) == 0
    assert "top/median" in capsys.readouterr().out
    png = tmp_path / "ind.png"
    assert main(["export", str(out), "--figure", "summary", "--format", "png", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["export", str(out), "--format", "nc", "--out", str(tmp_path / "ind.nc")]) == 0
    capsys.readouterr()
    assert main(["export", str(out), "--format", "html", "--out", str(tmp_path / "ind.html")]) == 2
    assert "emergence runs export --format nc" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--task", "grokking", "--set", "train_fraction=0"], "train_fraction=0 is out of range"),
        (["--task", "grokking", "--set", "train_fraction=1.5"], "train_fraction=1.5 is out of range"),
        (["--task", "grokking", "--set", "modulus=60"], "modulus=60 is not prime"),
        (["--task", "icl-bursty", "--set", "burstiness=3"], "burstiness=3 does not divide pairs=8"),
        (["--task", "induction", "--clamp", "5.0", "--clamp-window", "0:10"], "clamp='5.0' names head 5.0"),
        (["--task", "induction", "--clamp", "0.0", "--clamp-window", "ten"], "--clamp-window 'ten'"),
        (["--task", "induction", "--heads", "0"], "heads=0 is out of range"),
        (["--task", "induction", "--set", "nonsense=1"], "unknown parameter 'nonsense'"),
        (["--task", "lazy"], "invalid choice: 'lazy'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    assert main(["run", "emergence", *args, "--out", str(tmp_path / "e.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "e.zarr").exists()


def test_bad_input_in_a_fresh_process_exits_2(tmp_path):
    proc = run_cli("run", "emergence", "--task", "grokking", "--set", "modulus=91", "--out", str(tmp_path / "g.zarr"))
    assert proc.returncode == 2 and "modulus=91 is not prime" in proc.stderr and "Traceback" not in proc.stderr
