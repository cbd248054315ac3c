"""The attention dashboard without a browser: pooled maps and mosaics, curve rows, token labels, the
probe history, two runs trained together with their weights kept, single-sequence attention, the
real-model tab on a dataset of the probe schema, and the explorer driven from Python."""

from __future__ import annotations

import time

import numpy as np
import pytest
from helpers import run_until, train_to_end

from engine.chunk import concat
from engine.store import open_run, read_record
from engine.transformer.model import Transformer
from engine.transformer.training import APPEND_DIMS, AttentionConfig, AttentionStream
from explorer.attention_data import (
    ProbeHistory,
    bin_edges,
    bin_labels,
    bin_ticks,
    head_series,
    mosaic,
    pool,
    probe_rows,
    real_model_tables,
    step_rows,
    tile_size,
    token_labels,
)
from explorer.attention_run import SequenceAttention, TrainingRun

TINY = {"steps": 50, "probe_every": 25, "batch": 8, "probe_batch": 16}


def tiny_chunks(**changes) -> list:
    stream = AttentionStream(AttentionConfig(**{**TINY, **changes}))
    return list(stream.chunks())


def probe_dataset(ds, *, extras: bool = True):
    """A real-model-like probe dataset from a toy run: its last probe, sequence 0, and the extras."""
    one = ds.isel(probe=[-1], sample=[0]).drop_dims(["step"])
    n_layers, n_pos = one.sizes["layer"], one.sizes["position"]
    if extras:
        one["top_median"] = (("probe", "layer"), np.array([[5.0, 400.0]])[:, :n_layers])
        one["top_token"] = (("probe", "layer"), np.zeros((1, n_layers), int))
        one["top_dim"] = (("probe", "layer"), np.arange(n_layers)[None] + 7)
        norm = np.ones((1, n_layers, n_pos))
        norm[..., 0] = 40.0
        one["resid_norm"] = (("probe", "layer", "position"), norm)
        names = np.asarray(one["token_name"].values)
        one["token_text"] = (("position",), names[np.asarray(one["probe_tokens"].values[0])])
    one["sink_trigger"] = one["sink_trigger"] * np.nan
    return one


# -- pooling and mosaics ------------------------------------------------------------------
def test_pool_keeps_row_mass_and_small_maps():
    rng = np.random.default_rng(0)
    a = rng.random((3, 100, 100)).astype(np.float32)
    a /= a.sum(-1, keepdims=True)  # (head, query, key) rows sum to 1
    p = pool(a, 16)
    assert p.shape == (3, 16, 16) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)  # key bins summed, query bins averaged
    edges = bin_edges(100, 16)
    for i, j in ((0, 0), (5, 3), (15, 15)):
        block = a[2, edges[i] : edges[i + 1], edges[j] : edges[j + 1]]
        assert p[2, i, j] == pytest.approx(block.sum(-1).mean(), rel=1e-5)
    assert np.array_equal(pool(a, 100), a)
    assert edges[0] == 0 and edges[-1] == 100 and len(edges) == 17 and np.all(np.diff(edges) > 0)
    assert np.array_equal(bin_edges(5, 16), np.arange(6))


def test_mosaic_places_each_head_with_nan_gaps():
    rng = np.random.default_rng(1)
    pats = rng.random((2, 3, 10, 10)).astype(np.float32)  # (layer, head, query, key)
    img = mosaic(pats, 10, gap=1)
    assert img.shape == (2 * 11 - 1, 3 * 11 - 1)
    np.testing.assert_array_equal(img[11:21, 22:32], pats[1, 2])
    assert np.isnan(img[10]).all() and np.isnan(img[:, 10]).all()
    small = mosaic(pats, 5)
    np.testing.assert_allclose(small[:5, :5], pool(pats[0, 0], 5))
    assert tile_size(2, 2, 31) == 31
    assert tile_size(30, 9, 500, cap=32) <= 32 and tile_size(48, 64, 4096) >= 8


# -- curves and labels --------------------------------------------------------------------
def test_probe_rows_per_head_and_per_layer():
    chunks = tiny_chunks()
    rows = probe_rows(chunks[0])
    assert rows["step"].tolist() == [0, 25]
    assert [k for k, _ in head_series(2, 2)] == ["0_0", "0_1", "1_0", "1_1"]
    np.testing.assert_array_equal(rows["nt_1_0"], chunks[0]["sink_nontrigger"].values[:, 1, 0])
    np.testing.assert_array_equal(rows["tr_0_1"], chunks[0]["sink_trigger"].values[:, 0, 1])
    np.testing.assert_array_equal(rows["rp_1"], chunks[0]["resid_peak"].values[:, 1])
    for key in ("icl", "bigram", "rate", "vd_0_0"):
        assert rows[key].shape == (2,)
    # more heads than curves: one per layer, its strongest-sink head
    rows = probe_rows(chunks[0], cap=2)
    nt = chunks[0]["sink_nontrigger"].values
    np.testing.assert_array_equal(rows["nt_0_top"], nt[:, 0].max(-1))
    top = nt[:, 1].argmax(-1)
    np.testing.assert_array_equal(rows["tr_1_top"], chunks[0]["sink_trigger"].values[np.arange(2), 1, top])
    assert [k for k, _ in head_series(2, 2, cap=2)] == ["0_top", "1_top"]
    steps = step_rows(chunks[1])
    assert steps["step"].tolist() == list(range(26, 51)) and steps["loss"].shape == (25,)


def test_token_and_bin_labels():
    names = np.array(["a", " ", "<bos>"])
    labels = token_labels(np.array([2, 0, 1, 0]), names, np.array([False, False, True, False]))
    assert labels == ["0 '<bos>'", "1 'a'", "2 ' ' · trigger", "3 'a'"]
    assert token_labels(None, ["x", "y"]) == ["0 'x'", "1 'y'"]
    assert bin_labels(labels, 4, 8) == labels
    assert bin_labels([str(i) for i in range(10)], 10, 3) == ["positions 0–2", "positions 3–6", "positions 7–9"]
    assert bin_ticks(3, 8, ["a", "b", "c"]) == ["a", "b", "c"]
    assert bin_ticks(10, 3, [str(i) for i in range(10)]) == ["0", "3", "7"]  # pooled: first positions


def test_history_from_chunks_equals_history_from_the_store(tmp_path):
    from engine.store import RunStore

    chunks = tiny_chunks()
    live = ProbeHistory()
    with RunStore(tmp_path / "run.zarr", engine="attention", append_dims=APPEND_DIMS) as store:
        for chunk in chunks:
            live.extend(chunk)
            store.append(chunk)
    stored = ProbeHistory()
    stored.extend(open_run(tmp_path / "run.zarr"))
    assert live.steps == stored.steps == [0, 25, 50]
    for a, b in zip(live.patterns, stored.patterns, strict=True):
        np.testing.assert_array_equal(a, b)
    assert live.index_at(0) == 0 and live.index_at(49) == 1 and live.index_at(10_000) == 2
    assert not live.pooled and live.patterns[0].shape == (2, 2, 31, 31)


# -- training and single-sequence attention -------------------------------------------------
def test_sequence_attention_averages_to_the_probe_pattern():
    cfg = AttentionConfig(**TINY)
    stream = AttentionStream(cfg)
    state = {k: v.clone() for k, v in stream.model.state_dict().items()}
    seq = SequenceAttention(cfg, stream.probe_tokens.numpy())
    per_sequence = np.stack([seq.pattern(state, 0, k) for k in range(seq.samples)])  # (sample, L, H, T, T)
    np.testing.assert_allclose(per_sequence.mean(0), stream.probe()["pattern"], atol=1e-5)
    fresh = Transformer(cfg.model_config(), seed=cfg.seed)  # step-0 weights are the seeded initial ones
    _, cache = fresh.run_with_cache(stream.probe_tokens[:1, :-1], names="blocks.1.attn.hook_pattern")
    np.testing.assert_allclose(per_sequence[0, 1], cache["blocks.1.attn.hook_pattern"][0].numpy(), atol=1e-6)


def test_two_runs_train_in_step_store_and_keep_weights(tmp_path):
    cfgs = [AttentionConfig(**TINY), AttentionConfig(**TINY, attention="gated-head")]
    paths = [tmp_path / "a.zarr", tmp_path / "b.zarr"]
    run = TrainingRun(cfgs, paths)
    with pytest.raises(ValueError, match="lr=0 is out of range"):
        run.update(lr=0.0)
    with pytest.raises(ValueError, match="cannot change during training"):
        run.update(width=32)
    run.update(probe_every=10)  # applies at the first chunk
    events = train_to_end(run)
    assert run.state == "finished" and [s.state for s in run.slots] == ["finished", "finished"]
    for index, path in enumerate(paths):
        merged = concat([e.chunk for e in events if e.index == index], APPEND_DIMS)
        assert merged["probe"].values.tolist() == [0, 10, 20, 30, 40, 50]
        assert read_record(path)["status"] == "complete"
        ds = open_run(path)
        assert ds["probe"].values.tolist() == [0, 10, 20, 30, 40, 50]
        assert sorted(run.slots[index].weights) == [0, 10, 20, 30, 40, 50]
        assert run.weights(index, 30) is not None and run.weights(index, 31) is None
    a, b = (open_run(p) for p in paths)
    assert not np.allclose(a["loss"].values, b["loss"].values)  # the variants differ
    assert a.attrs["seed"] == b.attrs["seed"] == 0


def test_a_diverging_run_stops_and_keeps_its_chunks(tmp_path):
    cfgs = [AttentionConfig(**{**TINY, "steps": 200}, optimizer="sgd", lr=10.0), AttentionConfig(**TINY)]
    run = TrainingRun(cfgs, [tmp_path / "a.zarr", tmp_path / "b.zarr"])
    run.start()
    deadline = time.time() + 60
    while time.time() < deadline and run.state == "running":
        run.drain()
        time.sleep(0.05)
    a, b = run.slots
    assert a.state == "diverged" and "non-finite" in a.error and b.state == "finished"
    assert run.state == "finished"  # the other run went on to its end
    record = read_record(tmp_path / "a.zarr")
    assert record["status"] == "diverged" and "non-finite" in record["reason"]


def test_weight_copies_are_thinned_beyond_the_budget(tmp_path):
    cfg = AttentionConfig(**{**TINY, "steps": 80, "probe_every": 5})
    run = TrainingRun([cfg], [None], snapshot_bytes=1)  # room for the first and the last only
    run.start()
    deadline = time.time() + 60
    while time.time() < deadline and run.state == "running":
        run.drain()
        time.sleep(0.05)
    assert sorted(run.slots[0].weights) == [0, 80]


def test_pause_stops_training_and_stop_marks_the_store(tmp_path):
    run = TrainingRun([AttentionConfig(**{**TINY, "steps": 100_000})], [tmp_path / "a.zarr"])
    run.start()
    deadline = time.time() + 30
    while time.time() < deadline and not run.drain():
        time.sleep(0.05)
    run.pause()
    time.sleep(1.0)
    step = run.steps[0]
    time.sleep(0.5)
    assert run.steps[0] == step and run.state == "paused"
    run.stop()
    assert run.state == "stopped" and read_record(tmp_path / "a.zarr")["status"] == "stopped"


# -- the real-model tab -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_run():
    return concat(tiny_chunks(), APPEND_DIMS).to_dataset()


def test_real_model_tables_from_a_probe_dataset(toy_run):
    one = probe_dataset(toy_run)
    t = real_model_tables(one)
    np.testing.assert_array_equal(t["first_token"], toy_run["sink_nontrigger"].values[-1])
    assert t["sink_rate"] == pytest.approx(float(toy_run["sink_rate"].values[-1]))
    assert t["pattern"].shape == (2, 2, 31, 31)
    assert t["top_median"].tolist() == [5.0, 400.0] and t["top_dim"].tolist() == [7, 8]
    assert t["resid_norm"].shape == (2, 32) and t["tokens"][0] == "0 '<bos>'"
    bare = real_model_tables(probe_dataset(toy_run, extras=False))  # only the attention schema
    assert bare["top_median"] is None and bare["resid_norm"] is None and bare["tokens"][0] == "0 '<bos>'"


def test_real_model_tab_shows_a_dataset_and_reports_a_missing_probe(toy_run, monkeypatch):
    import explorer.attention_real as real

    tab = real.RealModelTab(probe_fn=lambda text, progress=None: probe_dataset(toy_run))
    tab.show(probe_dataset(toy_run))
    assert tab.views.visible
    assert len(tab.first_token.source.data["value"]) == 4
    assert tab.activations.source.data["where"][1] == "token 0 '<bos>', dim 8"
    assert np.asarray(tab.resid.source.data["value"]).size == 2 * 32
    image = tab.grid.source.data["image"][0]
    np.testing.assert_allclose(image, mosaic(probe_dataset(toy_run)["pattern"].values[0], 31))
    assert tab.pattern.source.data["image"][0].shape == (31, 31)
    assert tab.pattern.labels.data["label"][0] == "0 '<bos>'"
    assert "sink rate" in tab.status.object
    tab.head_select.value = (1, 1)
    assert tab.grid.picked == (1, 1) and "L1 H1" in tab.pattern.fig.title.text

    # the analysis runs in a thread and reports progress; the pictures come on a tick
    def slow(text, progress=None):
        progress("loading", 0.5)
        time.sleep(0.3)
        return probe_dataset(toy_run)

    tab = real.RealModelTab(probe_fn=slow)
    tab.analyse()
    assert tab.analyse_btn.disabled
    run_until(tab, lambda: not tab._busy, 30)
    assert tab.views.visible and not tab.error.visible and not tab.analyse_btn.disabled

    # no probe module: the hint, at once and on Analyse
    monkeypatch.setattr(real, "PROBE_MODULE", "engine.transformer.no_such_probe")
    with pytest.raises(ValueError, match="not available in this installation"):
        real.load_probe()
    tab = real.RealModelTab()
    assert tab.error.visible and "not available" in tab.error.object
    tab.analyse()
    run_until(tab, lambda: not tab._busy, 30)
    assert tab.error.visible and "not available" in tab.error.object and not tab.views.visible


def test_a_stored_probe_opens_in_the_tab(toy_run, tmp_path, monkeypatch):
    from engine.chunk import Chunk
    from engine.store import RunStore
    from explorer.attention_real import RealModelTab
    from explorer.serving import app_options

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "probe.zarr"
    with RunStore(path, engine="attention-probe", append_dims=("probe",)) as store:
        store.append(Chunk.from_dataset(probe_dataset(toy_run)))
    tab = RealModelTab(probe_fn=lambda text, progress=None: None, open_path=str(path))
    assert tab.views.visible and not tab.error.visible and "stored probe" in tab.status.object
    assert tab.pattern.labels.data["label"][0] == "0 '<bos>'"
    # the server's store to show at start reaches the app of its kind only
    monkeypatch.setenv("DYNASCOPE_OPEN", str(path))
    assert app_options("attention") == {"probe_path": str(path)} and app_options("spiking") == {}
    run = tmp_path / "run.zarr"
    with RunStore(run, engine="attention", append_dims=APPEND_DIMS) as store:
        for chunk in tiny_chunks():
            store.append(chunk)
    monkeypatch.setenv("DYNASCOPE_OPEN", str(run))
    assert app_options("attention") == {"open_path": str(run)} and app_options("spiking") == {}
    tab.path_input.value = str(run)
    tab.open_stored()
    assert tab.error.visible and "not a probe of a text" in tab.error.object


# -- the explorer, driven from Python ----------------------------------------------------------
def test_explorer_bad_input_live_updates_and_stored_runs(tmp_path, monkeypatch):
    from explorer.attention_app import AttentionExplorer

    monkeypatch.setenv("DYNASCOPE_RUNS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    app = AttentionExplorer(steps=60, probe_every=20)
    app.heads_input.value = 4
    app.width_input.value = 50
    assert app.config_msg.visible and "width=50 is not divisible by heads=4" in app.config_msg.object
    app.start()
    assert app.run is None and not list(tmp_path.glob("*.zarr"))
    app.width_input.value = 64
    assert not app.config_msg.visible
    app.param.update(compare="relu")
    app.start()
    assert app.of_select.value == 0  # single-sequence attention while the weights are in memory
    app.probe_input.value = 30  # applies at the next chunk
    assert not app.live_msg.visible
    run_until(app, lambda: app.run.state == "finished" and not app.run.pending, 60)
    steps = app.shown[0].history.steps
    assert steps[0] == 0 and steps[-1] == 60 and len(app.shown[1].history) == len(steps)
    assert app.grids[1].fig.visible and app.run_select.visible
    assert app.probe_slider.value == len(steps) - 1
    rows = app.sinks.sources[(1, "probe")].data
    assert list(rows["step"]) == steps and "nt_1_1" in rows
    stores = sorted(tmp_path.glob("attention-*.zarr"))
    assert len(stores) == 2 and {read_record(p)["status"] for p in stores} == {"complete"}

    # scrub to step 0: the grid shows the step-0 batch mean, run B its own step 0
    app.of_select.value = -1
    app.probe_slider.value = 0
    assert not app._follow and "step 0" in app.probe_label.object
    ds = open_run(app.shown[0].path)
    np.testing.assert_array_equal(app.grids[0].source.data["image"][0], mosaic(ds["pattern"].values[0], 31))
    head = (1, 0)
    app.head_select.value = head
    np.testing.assert_array_equal(app.pattern.source.data["image"][0], ds["pattern"].values[0][head])

    # stored runs open by path (allowed folders only), also side by side
    app.reset()
    a, b = (p for p in stores if "-A-" in p.name), (p for p in stores if "-B-" in p.name)
    app.path_input.value = str(next(a))
    app.open_stored()
    assert "stored run" in app.status.object and not app.open_msg.visible
    assert app.of_select.options == {"probe-batch mean": -1}
    assert list(app.sinks.sources[(0, "probe")].data["step"]) == steps
    app.path_input.value = str(next(b))
    app.open_stored(as_b=True)
    assert len(app.shown) == 2 and app.shown[1].config.attention == "relu"
    app.path_input.value = "/"
    app.open_stored()
    assert app.open_msg.visible and "outside the folders" in app.open_msg.object
