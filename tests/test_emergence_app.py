"""The emergence dashboard without a browser: curve rows from chunks, the run history, fits and fitted
curves, onset markers and the fit table, the background refitter, grokking's spectrum and Fourier
neurons, feature text, comparison configs, runs of emergence streams in the shared training thread,
and the explorer driven from Python (bad input, live updates, fits drawn, stored runs, features)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from helpers import run_until, train_to_end

from engine.chunk import Chunk, concat
from engine.emergence.config import EmergenceConfig
from engine.emergence.fits import emergence_law, logistic
from engine.emergence.training import APPEND_DIMS, EmergenceStream
from engine.store import open_chunk, read_record
from explorer.emergence_data import (
    Refitter,
    RunHistory,
    example_html,
    fit_run,
    fit_summary,
    fitted_rows,
    frequency_counts,
    head_rows,
    layer_rows,
    loss_rows,
    onset_rows,
    purest_neurons,
    scalar_rows,
    spectrum_map,
    token_text,
)

TINY = {
    "induction": {"layers": 2, "heads": 2, "width": 16, "vocab": 8, "repeat": 4},
    "sparsity": {"layers": 2, "heads": 2, "width": 16, "length": 12},
    "grokking": {"modulus": 7, "hidden": 16},
    "icl-bursty": {"classes": 16, "dim": 8},
}


def tiny_config(task: str = "induction", **changes) -> EmergenceConfig:
    base = {"steps": 12, "probe_every": 4, "batch": 8, "probe_batch": 8, **TINY.get(task, {})}
    return EmergenceConfig.for_task(task, **{**base, **changes})


def tiny_chunks(task: str = "induction", **changes) -> list[Chunk]:
    return list(EmergenceStream(tiny_config(task, **changes)).chunks())


def synthetic_run(n: int = 40, every: int = 10) -> Chunk:
    """A run whose top/median ratio follows the emergence law (layer 0: a log climb, layer 1: an early
    peak) and whose in-context accuracy is a logistic step with its midpoint at step 200."""
    t = np.arange(n) * every  # (probe,)
    c = Chunk(attrs={"task": "induction"})
    c.add("probe", "probe", t, "training step of the probe", "", coord=True)
    c.add("layer", "layer", np.arange(2), "layer", "", coord=True)
    ratio = np.stack(
        [emergence_law(t, 2.0, 0.0, 0.05, 1.0, 3.0), emergence_law(t, 6.0, 0.08, 0.2, 1.0, 2.0)], axis=1
    )  # (probe, layer)
    c.add("top_ratio", ("probe", "layer"), ratio, "top/median", "")
    c.add("nonzero_share", ("probe", "layer"), np.full((n, 2), np.nan), "nonzero share", "")
    c.add("icl_acc", "probe", logistic(t, 0.05, 0.9, 200.0, 12.0), "in-context accuracy", "")
    induction = np.zeros((n, 2, 2))
    induction[:, 1, 0] = logistic(t, 0.04, 0.6, 190.0, 12.0)
    c.add("induction", ("probe", "layer", "head"), induction, "induction score", "")
    return c


# -- curve rows ---------------------------------------------------------------------------------
def test_rows_of_a_chunk_per_layer_head_and_scalar():
    chunks = tiny_chunks()
    first = chunks[0]
    rows = layer_rows(first, "top_ratio")
    assert rows["step"].tolist() == [0, 4] and set(rows) == {"step", "L0", "L1"}
    np.testing.assert_array_equal(rows["L1"], first["top_ratio"].values[:, 1])
    scalars = scalar_rows(first, ["icl_acc", "induction_max", "no_such_curve"])
    assert set(scalars) == {"step", "icl_acc", "induction_max"}
    np.testing.assert_allclose(scalars["induction_max"], first["induction"].values.reshape(2, -1).max(1))
    heads = head_rows(first, "prev_token")
    assert set(heads) == {"step", "0_0", "0_1", "1_0", "1_1"}
    np.testing.assert_array_equal(heads["1_0"], first["prev_token"].values[:, 1, 0])
    top = head_rows(first, "induction", cap=2)  # more heads than the cap: each layer's largest
    assert set(top) == {"step", "0_top", "1_top"}
    np.testing.assert_allclose(top["0_top"], first["induction"].values[:, 0].max(1))
    assert list(layer_rows(first, "missing")) == ["step"]
    loss = loss_rows(concat(chunks, APPEND_DIMS), stride=3)
    assert loss["step"].tolist() == [3, 6, 9, 12] and len(loss["loss"]) == 4


def test_history_concatenates_and_versions():
    chunks = tiny_chunks()
    history = RunHistory()
    assert history.probes == 0 and history.last_step == 0
    for chunk in chunks:
        history.extend(chunk)
    assert history.version == len(chunks) == 3
    assert history.data["probe"].values.tolist() == [0, 4, 8, 12] and history.last_step == 12
    assert history.data["loss"].values.shape == (12,) and history.data["induction"].values.shape == (4, 2, 2)


# -- fits ---------------------------------------------------------------------------------------
def test_fits_recover_the_laws_and_the_onset_of_a_synthetic_run():
    data = synthetic_run()
    fits = fit_run(data, version=7)
    assert fits.version == 7 and fits.last_step == 390
    assert "nonzero_share" not in fits.laws  # all NaN: nothing to fit
    climb, peak = fits.laws["top_ratio"]
    assert climb.kind == "log increase" and climb.r2 > 0.999
    assert peak.kind == "early peak" and peak.r2 > 0.999
    assert set(fits.onsets) == {"icl_acc", "induction_max"}
    acc = fits.onsets["icl_acc"]
    assert acc.abrupt and acc.onset == pytest.approx(200 - 12 * np.log(9), abs=2)

    rows = fitted_rows(fits.laws["top_ratio"], fits.last_step)
    assert set(rows) == {"step", "L0", "L1"} and rows["step"][0] == 0 and rows["step"][-1] == 390
    truth = emergence_law(rows["step"], 6.0, 0.08, 0.2, 1.0, 2.0)
    np.testing.assert_allclose(rows["L1"], truth, rtol=0.02, atol=0.02)
    logistic_rows = fitted_rows(fits.onsets, fits.last_step)
    np.testing.assert_allclose(
        logistic_rows["icl_acc"], logistic(logistic_rows["step"], 0.05, 0.9, 200.0, 12.0), atol=0.01
    )

    marks = onset_rows(fits.onsets, {"icl_acc": "in-context accuracy"}, fits.last_step)
    assert marks["name"] == ["icl_acc", "induction_max"] and marks["label"][0] == "in-context accuracy"
    assert marks["step"][0] == pytest.approx(acc.onset) and marks["end"][0] == pytest.approx(200 + 12 * np.log(9))
    assert marks["abrupt"] == [True, True]
    table = fit_summary("A", fits, {"icl_acc": "in-context accuracy"})
    assert [(r["curve"], r["what"]) for r in table] == [
        ("top/median L0", "log increase"),
        ("top/median L1", "early peak"),
        ("in-context accuracy", "abrupt onset"),
        ("induction_max", "abrupt onset"),
    ]
    assert table[1]["at"] == pytest.approx(peak.peak_step)


def test_short_runs_give_no_fit_and_no_marker():
    data = synthetic_run(n=3)
    fits = fit_run(data)
    assert all(not f.ok for f in fits.laws["top_ratio"]) and all(not f.ok for f in fits.onsets.values())
    rows = fitted_rows(fits.laws["top_ratio"], fits.last_step)
    assert np.isnan(rows["L0"]).all()
    assert onset_rows(fits.onsets, {}, fits.last_step)["step"] == []
    assert {r["what"] for r in fit_summary("A", fits)} == {"insufficient data"}
    assert fit_run(None).laws == {} and fit_run(None).onsets == {}


def test_a_step_outside_the_observed_range_or_a_poor_fit_is_not_marked():
    data = synthetic_run()
    fits = fit_run(data)
    assert onset_rows(fits.onsets, {}, last_step=100)["step"] == []  # the onset (≈174) lies beyond step 100
    noisy = synthetic_run()
    rng = np.random.default_rng(0)
    t = noisy["probe"].values
    noisy.add("icl_acc", "probe", logistic(t, 0.1, 0.2, 200.0, 12.0) + rng.normal(0, 0.1, t.size), "accuracy", "")
    poor = fit_run(noisy).onsets["icl_acc"]
    assert poor.ok and poor.r2 < 0.5
    assert "icl_acc" not in onset_rows(fit_run(noisy).onsets, {}, 390)["name"]


def test_refitter_fits_the_newest_history_in_the_background():
    data = synthetic_run()
    refitter = Refitter(every=0.3)
    try:
        refitter.submit(("g", 0), synthetic_run(n=8), 1)
        refitter.submit(("g", 0), data, 2)  # replaces version 1 if it has not started
        refitter.submit(("g", 1), data, 5)
        got: dict = {}
        deadline = time.time() + 30
        while time.time() < deadline and not (
            got.get(("g", 0)) and got[("g", 0)][-1].version == 2 and got.get(("g", 1))
        ):
            for key, fits in refitter.results():
                got.setdefault(key, []).append(fits)
            time.sleep(0.05)
        assert got[("g", 0)][-1].version == 2 and got[("g", 1)][-1].version == 5
        assert got[("g", 0)][-1].onsets["icl_acc"].abrupt
        deadline = time.time() + 5
        while time.time() < deadline and refitter.busy:
            time.sleep(0.05)
        assert not refitter.busy
        # after a round it waits at least `every` before the next
        t0 = time.perf_counter()
        refitter.submit(("g", 0), data, 3)
        refitter.submit(("g", 0), data, 4)
        while not (found := refitter.results()):
            time.sleep(0.01)
        assert [f.version for _, f in found] in ([3], [4])
        refitter.forget()
        assert refitter.results() == []
        assert time.perf_counter() - t0 < 10
    finally:
        refitter.stop()


# -- grokking and features -------------------------------------------------------------------------
def test_spectrum_and_fourier_neurons():
    chunk = concat(tiny_chunks("grokking"), APPEND_DIMS)
    m = spectrum_map(chunk)
    assert m.shape == (len(chunk["frequency"].values), 4)
    np.testing.assert_array_equal(m[:, 2], chunk["spectrum"].values[2])
    freq = np.array([1, 1, 2, 0, 2, 2])
    purity = np.array([0.5, 0.7, 0.9, 0.2, 0.6, np.nan])
    counts, mean = frequency_counts(freq, np.nan_to_num(purity), 4)
    assert counts.tolist() == [1, 2, 3, 0] and mean[1] == pytest.approx(0.6) and np.isnan(mean[3])
    assert purest_neurons(freq, purity, k=3) == [(2, 2, 0.9), (1, 1, 0.7), (4, 2, 0.6)]


def test_example_text_escapes_marks_and_highlights():
    names = ["<b>", " ", "\n", "e"]
    html = example_html(np.array([-1, 0, 1, 2, 3]), np.array([np.nan, 0.0, 1.0, 0.5, 2.0]), names, high=2.0)
    assert "&lt;b&gt;" in html and "<b>" not in html.replace("&lt;b&gt;", "")
    assert "␣" in html and "⏎" in html
    assert html.count("<span") == 4  # the slot before the sequence start is left out
    assert html.count('class="hit"') == 1 and html.rindex('class="hit"') > html.rindex("⏎")
    assert "rgba(230, 85, 13, 1.00)" in html and "rgba(230, 85, 13, 0.50)" in html
    assert token_text(names, -1) == "" and token_text(None, 7) == "7"


# -- comparison configs ------------------------------------------------------------------------------
def test_compare_configs_change_one_setting():
    from explorer.emergence_app import compare_configs

    cfg = tiny_config(clamp="0.1", clamp_start=0, clamp_end=8)
    a, b = compare_configs(cfg, "clamp")
    assert a.clamp == "" and b.clamp == "0.1" and a.replace(clamp="0.1") == b
    with pytest.raises(ValueError, match="needs heads to clamp"):
        compare_configs(tiny_config(), "clamp")
    with pytest.raises(ValueError, match="needs a clamp window"):
        compare_configs(tiny_config(clamp="0.1"), "clamp")
    with pytest.raises(ValueError, match="for the icl-bursty task"):
        compare_configs(cfg, "burstiness")
    bursty = EmergenceConfig.for_task("icl-bursty", burstiness=2)
    assert [c.burstiness for c in compare_configs(bursty, "burstiness")] == [2, 1]
    with pytest.raises(ValueError, match="choose a burstiness above 1"):
        compare_configs(bursty.replace(burstiness=1), "burstiness")
    grok = EmergenceConfig.for_task("grokking")
    assert [c.weight_decay for c in compare_configs(grok, "weight decay")] == [grok.weight_decay, 0.0]
    assert compare_configs(grok, "none") == [grok]


# -- emergence streams in the shared training thread ------------------------------------------------------
def test_training_run_trains_emergence_streams_and_keeps_the_newest_weights(tmp_path):
    from explorer.attention_run import TrainingRun

    cfgs = [tiny_config(), tiny_config(clamp="0.0", clamp_end=6)]
    paths = [tmp_path / "a.zarr", tmp_path / "b.zarr"]
    run = TrainingRun(
        cfgs,
        paths,
        make_stream=EmergenceStream,
        model_of=lambda s: s.run.model,
        snapshot_bytes=1,
        name="dynascope-emergence",
    )
    assert run.latest_weights(0) is None  # before the start: none yet
    events = train_to_end(run)
    assert run.state == "finished"
    for index in (0, 1):
        merged = concat([e.chunk for e in events if e.index == index], APPEND_DIMS)
        assert merged["probe"].values.tolist() == [0, 4, 8, 12]
        stored = open_chunk(paths[index])
        np.testing.assert_array_equal(stored["top_ratio"].values, merged["top_ratio"].values)
        step, weights = run.latest_weights(index)
        assert step == 12 and sorted(run.slots[index].weights) == [0, 12]
        model = run.slots[index].stream.run.model
        for name, value in model.state_dict().items():
            np.testing.assert_array_equal(weights[name].numpy(), value.numpy())
    clamped = concat([e.chunk for e in events if e.index == 1], APPEND_DIMS)
    assert clamped["clamped"].values.tolist() == [True] * 6 + [False] * 6
    assert read_record(tmp_path / "b.zarr")["engine"] == "emergence"


# -- the explorer, driven from Python ----------------------------------------------------------------
def settled(app) -> bool:
    run = app.run
    ended = run is None or run.state in ("finished", "stopped", "failed")
    return ended and (run is None or not run.pending) and not app.refitter.busy and not app._unfitted()


def test_explorer_bad_input_task_switch_and_live_updates(tmp_path, monkeypatch):
    from explorer.emergence_app import EmergenceExplorer

    monkeypatch.setenv("DYNASCOPE_RUNS", str(tmp_path))
    app = EmergenceExplorer(task="icl-bursty")
    assert app.inputs["burstiness"].visible and app.inputs["classes"].visible and not app.inputs["modulus"].visible
    app.inputs["burstiness"].value = 3  # the slider: B must divide N = 8
    assert app.burstiness == 3 and app.config_msg.visible
    assert "burstiness=3 does not divide pairs=8" in app.config_msg.object
    app.start()
    assert app.run is None and list(tmp_path.iterdir()) == []  # nothing started, nothing written
    app.inputs["burstiness"].value = 2
    assert not app.config_msg.visible
    app.inputs["classes"].value = 1024
    assert app.classes == 1024 and not app.config_msg.visible
    app.pairs = 6
    assert app.inputs["burstiness"].end == 6
    app.compare = "clamp"
    assert "needs heads to clamp" in app.config_msg.object
    app.compare = "burstiness"
    assert not app.config_msg.visible

    app.task = "grokking"  # the task's own defaults, its settings shown, the comparison reset
    assert app.weight_decay == EmergenceConfig.for_task("grokking").weight_decay and app.compare == "none"
    assert app.inputs["modulus"].visible and not app.inputs["burstiness"].visible and not app.inputs["clamp"].visible
    app.modulus = 60
    assert "modulus=60 is not prime" in app.config_msg.object
    app.modulus = 7

    app.task = "induction"
    app.param.update(steps=100_000, probe_every=5, **TINY["induction"])
    assert not app.config_msg.visible
    app.start()
    run_until(app, lambda: app.shown[0].history.probes >= 2, 60)
    app.lr = 0.0
    assert app.config_msg.visible and "lr=0 is out of range" in app.config_msg.object
    app.lr = 5e-4
    app.probe_every = 7
    app.width = 24  # applies to the next run
    assert app.restart_note.visible and "width" in app.restart_note.object
    run_until(app, lambda: 7 in np.diff(app.shown[0].history.data["probe"].values), 60)
    assert 5e-4 in app.shown[0].history.data["lr"].values
    app.pause()
    assert app.run.state == "paused" and "paused" in app.status.object
    app.stop()
    run_until(app, lambda: settled(app), 30)
    path = app.shown[0].path
    assert read_record(path)["status"] == "stopped"
    app.shutdown()


def test_explorer_draws_fits_and_onsets_and_reopens_a_stored_run(tmp_path, monkeypatch):
    from explorer.emergence_app import EmergenceExplorer

    monkeypatch.setenv("DYNASCOPE_RUNS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    app = EmergenceExplorer(task="induction", steps=40, probe_every=4, fit_every=0.2, **TINY["induction"])
    app.start()
    run_until(app, lambda: settled(app) and app.shown[0].fits is not None)
    s = app.shown[0]
    assert s.fits.version == s.history.version and s.fits.last_step == 40
    probes = app.ratio.sources[(0, "probe")].data
    assert list(probes["step"]) == list(range(0, 41, 4))
    fit = app.ratio.fit_sources[0].data
    assert len(fit["step"]) > 0 and set(fit) == {"step", "L0", "L1"}
    assert not app.sparsity.fig.visible  # attention-only: no MLP
    assert "top/median L0" in app.fit_table.object and "in-context accuracy" in app.fit_table.object
    marks = app.abrupt.onset_sources[0].data
    expected = onset_rows(s.fits.onsets, {}, 40)
    assert list(marks["step"]) == expected["step"]
    drawn = {k: list(v) for k, v in app.abrupt.sources[(0, "probe")].data.items()}
    table = app.fit_table.object
    app.shutdown()

    # another session opens the store: the same curves and fits
    other = EmergenceExplorer(open_path=str(s.path), fit_every=0.2)
    assert "stored run" in other.status.object and other.task == "induction" and other.vocab == 8
    run_until(other, lambda: settled(other) and other.shown[0].fits is not None)
    assert {k: list(v) for k, v in other.abrupt.sources[(0, "probe")].data.items()} == drawn
    assert other.fit_table.object == table
    assert "stored run keeps its curves" in other.features.status.object
    other.path_input.value = str(tmp_path.parent)
    other.open_stored()
    assert other.open_msg.visible and "outside the folders" in other.open_msg.object
    other.shutdown()


def test_feature_tab_on_a_live_sparsity_run_and_grokking(tmp_path, monkeypatch):
    from explorer.emergence_app import EmergenceExplorer

    monkeypatch.setenv("DYNASCOPE_RUNS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    app = EmergenceExplorer(task="sparsity", steps=8, probe_every=4, **TINY["sparsity"])
    app.start()
    run_until(app, lambda: settled(app))
    tab = app.features
    assert tab.neuron_controls.visible and tab.neuron_input.end == 4 * 16 - 1
    tab.layer_select.value, tab.neuron_input.value = 1, 3
    tab.top()
    run_until(tab, lambda: not tab._busy, 30)
    assert not tab.error.visible and "L1 neuron 3" in tab.examples.object
    assert tab.examples.object.count('class="example"') == 8 and 'class="hit"' in tab.examples.object
    assert "most active neurons of L1" in tab.examples.object
    tab.multifaceted()
    run_until(tab, lambda: not tab._busy, 60)
    assert tab.error.visible or tab.facets.object.count('class="facet"') == 3  # a silent neuron says so
    app.shutdown()

    attention_only = EmergenceExplorer(task="induction", steps=4, probe_every=4, **TINY["induction"])
    attention_only.start()
    run_until(attention_only, lambda: settled(attention_only))
    attention_only.features.top()
    assert "attention-only" in attention_only.features.error.object
    attention_only.shutdown()

    grok = EmergenceExplorer(task="grokking", steps=8, probe_every=4, modulus=7)
    grok.start()
    run_until(grok, lambda: settled(grok))
    assert grok.features.fourier.visible and not grok.features.neuron_controls.visible
    counts = np.asarray(grok.features.frequencies.source.data["count"])
    assert counts.sum() == grok.shown[0].config.hidden and "Purest neurons at step 8" in grok.features.purest.object
    assert len(grok.spectrum.sources[0].data["power"]) == 4  # frequencies 0 .. (p - 1) / 2
    assert "train accuracy" in grok.fit_table.object
    grok.shutdown()


def test_a_stored_emergence_run_reaches_its_app(tmp_path, monkeypatch):
    from engine.store import RunStore
    from explorer.serving import APPS, app_options

    path = tmp_path / "run.zarr"
    with RunStore(path, engine="emergence", append_dims=APPEND_DIMS) as store:
        for chunk in tiny_chunks():
            store.append(chunk)
    monkeypatch.setenv("DYNASCOPE_OPEN", str(path))
    assert "emergence" in APPS
    assert app_options("emergence") == {"open_path": str(path)}
    assert app_options("attention") == {} and app_options("spiking") == {}
