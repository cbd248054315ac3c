"""Training as a stream of probe chunks; the command line; bad input."""

import numpy as np
import pytest
import torch
from helpers import cli_json, run_cli

from engine.chunk import concat
from engine.store import RunStore, open_run, read_record
from engine.stream import RunStopped
from engine.transformer.training import APPEND_DIMS, AttentionConfig, AttentionStream, train_run

SMALL = AttentionConfig(layers=1, heads=2, width=16, length=12, batch=4, steps=6, probe_every=3, probe_batch=5)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_chunks_hold_every_step_and_a_probe_at_step_zero():
    ds, _ = train_run(SMALL)
    assert ds["probe"].values.tolist() == [0, 3, 6]
    assert ds["step"].values.tolist() == [1, 2, 3, 4, 5, 6]
    assert ds["pattern"].shape == (3, 1, 2, 11, 11)
    rows = ds["pattern"].values.sum(-1)
    np.testing.assert_allclose(rows, 1.0, atol=1e-5)  # softmax rows: a distribution over keys
    assert np.triu(ds["pattern"].values[0, 0, 0], 1).max() == 0  # causal
    for name in ("sink_nontrigger", "sink_trigger", "value_drain", "resid_peak", "icl_loss", "bigram_loss"):
        assert np.isfinite(ds[name].values).all(), name
        assert "long_name" in ds[name].attrs
    again, _ = train_run(SMALL)  # the same config and seed give the same data
    np.testing.assert_array_equal(again["loss"].values, ds["loss"].values)
    np.testing.assert_array_equal(again["pattern"].values, ds["pattern"].values)


def test_variants_share_data_and_initial_weights_at_one_seed():
    soft = AttentionStream(SMALL)
    gated = AttentionStream(SMALL.replace(attention="gated-head"))
    np.testing.assert_array_equal(soft.probe_tokens.numpy(), gated.probe_tokens.numpy())
    shared = {n for n, _ in soft.model.named_parameters()} & {n for n, _ in gated.model.named_parameters()}
    for name in shared:
        assert torch.equal(dict(soft.model.named_parameters())[name], dict(gated.model.named_parameters())[name])


def test_an_unfinished_run_keeps_its_chunks_and_updates_apply_at_the_next(tmp_path):
    stream = AttentionStream(SMALL.replace(steps=9))
    store = RunStore(tmp_path / "a.zarr", engine="attention", append_dims=APPEND_DIMS)
    store.append(stream.next_chunk())
    stream.update(lr=5e-4, probe_every=2)
    with pytest.raises(ValueError, match="lr=-1"):
        stream.update(lr=-1)
    with pytest.raises(ValueError, match="'heads' cannot change"):
        stream.update(heads=3)
    second = stream.next_chunk()
    store.append(second)
    assert second["lr"].values.tolist() == [5e-4, 5e-4] and second["probe"].values.tolist() == [5]
    ds = open_run(tmp_path / "a.zarr")  # never finished: both chunks readable
    assert read_record(tmp_path / "a.zarr")["status"] == "running"
    assert ds.sizes["step"] == 5 and ds["probe"].values.tolist() == [0, 3, 5]


def test_a_non_finite_loss_stops_the_run_before_its_chunk(monkeypatch):
    stream = AttentionStream(SMALL)
    first = stream.next_chunk()
    monkeypatch.setattr(stream, "_train_step", lambda: float("nan"))
    with pytest.raises(RunStopped, match="non-finite"):
        stream.next_chunk()
    assert stream.done and first.sizes["probe"] == 2
    assert concat([first], APPEND_DIMS).sizes["step"] == 3


@pytest.mark.slow
def test_command_line_run_and_info(tmp_path):
    out = tmp_path / "att.zarr"
    args = ("--layers", "1", "--width", "16", "--length", "12", "--steps", "6", "--probe-every", "3")
    summary = cli_json("run", "attention", *args, "--attention", "gated-elem", "--out", str(out))
    assert summary["steps"] == 6 and summary["attention"] == "gated-elem" and len(summary["heads"]) == 2
    for key in ("sink_nontrigger", "sink_trigger", "value_drain"):
        assert 0 <= summary["heads"][0][key] < 10
    assert cli_json("info", str(out))["heads"] == summary["heads"]
    text = run_cli("info", str(out))
    assert text.returncode == 0 and "sink (non-trigger)" in text.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--heads", "0"], "heads=0 is out of range"),
        (["--width", "50", "--heads", "4"], "width=50 is not divisible by heads=4"),
        (["--attention", "linear"], "invalid choice: 'linear'"),
        (["--lr", "0"], "lr=0"),
        (["--length", "2"], "length=2 is out of range"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, words):
    proc = run_cli("run", "attention", *args, "--out", str(tmp_path / "a.zarr"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr
