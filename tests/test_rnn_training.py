"""Training as a stream: chunks carry every step, the store keeps them, a blow-up stops cleanly."""

import numpy as np
import pytest
import torch

from engine.chunk import concat
from engine.rnn import FlipFlop, TrainConfig, train_ensemble
from engine.rnn.training import APPEND_DIMS, StreamConfig, TrainingStream, train_run
from engine.store import RunStore, open_run, read_record
from engine.stream import RunStopped

TASK = FlipFlop(channels=1, steps=20)
CFG = TrainConfig(hidden=12, networks=3, seed=4, batch=8, max_steps=70, lr=1e-2)
STREAM = StreamConfig(chunk_steps=30, test_trials=4)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_stream_chunks_are_the_training_run_step_by_step():
    ds, res = train_run(TASK, CFG, STREAM)
    direct = train_ensemble(TASK, CFG)
    assert ds.sizes["step"] == 70 and ds.sizes["chunk"] == 3 and ds.sizes["snapshot"] == 1
    np.testing.assert_array_equal(ds["loss"].values, direct.losses)
    np.testing.assert_array_equal(ds["w_h"].values[0], direct.model.w_h.detach().numpy())
    np.testing.assert_array_equal(ds["w_h_init"].values[0], direct.init["w_h"])
    with torch.no_grad():  # the recorded trajectories are the trained networks on the test batch
        x = torch.from_numpy(np.repeat(ds["inputs"].values[None], 3, 0))
        out, hidden = direct.model(x, return_hidden=True)
    np.testing.assert_allclose(ds["hidden"].values[0], hidden.numpy(), atol=1e-6)
    np.testing.assert_allclose(ds["output"].values[0], out.numpy(), atol=1e-6)
    assert ds["loss"].attrs["units"] == "MSE" and "long_name" in ds["hidden"].attrs
    again, _ = train_run(TASK, CFG, STREAM)  # the same config and seed give the same data
    np.testing.assert_array_equal(again["hidden"].values, ds["hidden"].values)


def test_a_store_keeps_every_completed_chunk_of_an_unfinished_run(tmp_path):
    stream = TrainingStream(TASK, CFG, STREAM)
    store = RunStore(tmp_path / "t.zarr", engine="rnn", append_dims=APPEND_DIMS)
    for _ in range(2):  # the run is cut off after two chunks: no finish, no snapshot
        store.append(stream.next_chunk())
    ds = open_run(tmp_path / "t.zarr")
    assert read_record(tmp_path / "t.zarr")["status"] == "running"
    assert ds.sizes["step"] == 60 and ds.sizes["snapshot"] == 0
    np.testing.assert_array_equal(ds["loss"].values, train_ensemble(TASK, CFG).losses[:60])


def test_every_network_blowing_up_stops_the_stream_after_the_chunk_that_shows_it():
    stream = TrainingStream(TASK, CFG.replace(diverge_at=1e-9), STREAM)
    first = stream.next_chunk()
    assert first["diverged"].values.all() and first.sizes["snapshot"] == 1
    with pytest.raises(RunStopped) as err:
        stream.next_chunk()
    assert err.value.status == "diverged" and stream.done


def test_learning_rate_scale_changes_at_the_next_chunk():
    stream = TrainingStream(TASK, CFG, STREAM)
    first = stream.next_chunk()
    stream.update(lr_scale=0.5)
    second = stream.next_chunk()
    assert np.allclose(second["lr"].values, 0.5 * first["lr"].values[0])
    with pytest.raises(ValueError, match="lr_scale=0"):
        stream.update(lr_scale=0)
    with pytest.raises(ValueError, match="'hidden' cannot change"):
        stream.update(hidden=3)
    ds = concat([first, second], APPEND_DIMS).to_dataset()
    assert ds.sizes["step"] == 60
