"""The attention dashboard in a real browser: a run trained live updates its head grid at every probe and
its sink curve rises above 0.5; learning rate and probe interval change mid-run; the step slider scrubs
back to step 0 and the grid shows the step-0 maps; two variants train side by side and reopen from their
stores; bad input is reported beside the controls and starts nothing; the real-model tab analyses a text
or says how to install its probe."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from browser import assert_nothing_starts, open_page, status, text, type_in, visible, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JS_IMAGE = """(name) => {
  const m = Array.from(Bokeh.documents[0].all_models).find(
      m => m.type == 'ColumnDataSource' && m.name == name);
  if (!m || !m.data.image || !m.data.image.length) return null;
  const img = m.data.image[0];
  const shape = img.shape || [1, img.length];
  return {shape: Array.from(shape), values: Array.from(img, v => Number.isNaN(v) ? null : v)};
}"""

JS_SINKS = """(name) => {
  const m = Array.from(Bokeh.documents[0].all_models).find(
      m => m.type == 'ColumnDataSource' && m.name == name);
  if (!m) return null;
  const d = m.data, keys = Object.keys(d).filter(k => k.startsWith('nt_'));
  const steps = Array.from(d.step);
  const row = i => Math.max(...keys.map(k => d[k][i]));
  return {steps: steps, sink: steps.map((_, i) => row(i))};
}"""


def open_app(browser, server):
    return open_page(browser, server, "attention", 1600, 1400)


def image(page, name: str = "grid-0") -> np.ndarray | None:
    """The image of a named source as drawn in the page (NaN gaps kept)."""
    got = page.evaluate(JS_IMAGE, name)
    if got is None:
        return None
    values = np.array([np.nan if v is None else v for v in got["values"]], dtype=np.float32)
    return values.reshape(got["shape"])


def drawn(page, name: str = "grid-0") -> np.ndarray | None:
    img = image(page, name)
    return img if img is not None and img.size > 1 and np.isfinite(img).any() else None


def sinks(page, name: str = "sinks-0-probe") -> dict:
    return page.evaluate(JS_SINKS, name) or {"steps": [], "sink": []}


def new_stores(runs, before: set) -> list:
    return sorted(set(runs.glob("attention-*.zarr")) - before)


def test_live_run_grid_sinks_live_controls_and_scrub(browser, server, runs, clean_log):
    import torch

    from engine.store import open_run, read_record
    from engine.transformer.model import Transformer
    from engine.transformer.training import AttentionConfig
    from explorer.attention_data import mosaic

    before = set(runs.glob("attention-*.zarr"))
    page = open_app(browser, server)
    t0 = time.time()
    page.get_by_role("button", name="Start").click()

    # the grid of attention maps is redrawn at each probe
    first = wait_for(lambda: (img := drawn(page)) is not None and [img], timeout=60, what="the head grid")[0]
    wait_for(
        lambda: (img := drawn(page)) is not None and not np.allclose(img, first, equal_nan=True), what="a new probe"
    )

    # the sink score (non-trigger queries, strongest head) rises from its step-0 value above 0.5
    wait_for(lambda: max(sinks(page)["sink"], default=0) > 0.5, timeout=90, every=0.5, what="a sink above 0.5")
    seconds = time.time() - t0
    curve = sinks(page)
    assert curve["steps"][0] == 0 and max(curve["sink"]) > curve["sink"][0] + 0.2
    sink_step = curve["steps"][int(np.argmax(np.asarray(curve["sink"]) > 0.5))]

    # mid-run: a new probe interval and learning rate apply at the next chunk
    type_in(page, ".probe-input", "50")
    type_in(page, ".lr-input", "0.001")
    wait_for(lambda: 50 in np.diff(sinks(page)["steps"]), timeout=60, what="probes every 50 steps")
    assert not visible(page, ".live-error")

    # pause: the probes stop arriving
    page.get_by_role("button", name="Pause").click()
    counts: list[int] = []

    def settled():
        counts.append(len(sinks(page)["steps"]))
        return len(counts) > 2 and counts[-1] == counts[-2] == counts[-3]

    wait_for(settled, timeout=30, every=0.7, what="probes to stop after Pause")
    assert "paused" in status(page)

    # scrub back to step 0: the grid shows the step-0 maps (probe sequence 0, then the batch mean)
    handle = page.locator(".probe-slider .noUi-handle").first
    handle.focus()
    handle.press("Home")
    wait_for(lambda: "step 0 " in text(page, ".probe-step"), what="the slider at step 0")
    store = new_stores(runs, before)[0]
    ds = open_run(store)  # paused: every chunk so far is stored
    cfg = AttentionConfig.from_dict(json.loads(ds.attrs["config"]))
    model = Transformer(cfg.model_config(), seed=cfg.seed)  # the step-0 weights
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(cfg.layers)]
    tokens = torch.as_tensor(ds["probe_tokens"].values[:1, :-1])
    _, cache = model.run_with_cache(tokens, names=names)
    expected = mosaic(np.stack([cache[n][0].numpy() for n in names]), 31)
    wait_for(lambda: np.allclose(drawn(page), expected, atol=1e-6, equal_nan=True), what="step-0 maps of sequence 0")
    page.locator(".of-select select").first.select_option(label="probe-batch mean")
    expected = mosaic(ds["pattern"].values[0], 31)
    wait_for(lambda: np.allclose(drawn(page), expected, atol=1e-6, equal_nan=True), what="step-0 batch-mean maps")
    assert "step 0" in text(page, ".probe-step")

    # resumed, the slider stays where the user put it while new probes arrive
    n = len(sinks(page)["steps"])
    page.get_by_role("button", name="Start").click()
    wait_for(lambda: len(sinks(page)["steps"]) > n, timeout=30, what="new probes after resuming")
    assert "step 0 " in text(page, ".probe-step")
    np.testing.assert_allclose(drawn(page), expected, atol=1e-6)
    page.get_by_role("button", name="Reset").click()
    wait_for(lambda: "idle" in status(page), what="the reset")

    record = read_record(store)
    assert record["status"] == "stopped"
    ds = open_run(store)
    assert 50 in np.diff(ds["probe"].values) and 0.001 in ds["lr"].values and 0.003 in ds["lr"].values
    page.close()
    print(f"sink above 0.5 at step {sink_step}, {seconds:.1f} s after Start")


def test_two_variants_side_by_side_and_reopened(browser, server, runs, clean_log):
    from engine.store import open_run
    from explorer.attention_data import mosaic

    before = set(runs.glob("attention-*.zarr"))
    page = open_app(browser, server)
    type_in(page, ".steps-input", "50")
    page.locator(".compare-select select").first.select_option("gated-head")
    wait_for(lambda: not visible(page, ".config-error"), what="valid input")
    page.get_by_role("button", name="Start").click()
    wait_for(lambda: "finished" in status(page), timeout=90, what="both runs to finish")
    wait_for(
        lambda: len(sinks(page, "sinks-0-probe")["steps"]) == len(sinks(page, "sinks-1-probe")["steps"]) == 3,
        what="every probe of both runs",
    )
    assert drawn(page, "grid-1") is not None  # run B's own grid
    stores = new_stores(runs, before)
    assert len(stores) == 2
    assert stores[0].name.endswith("-A-softmax.zarr") and stores[1].name.endswith("-B-gated-head.zarr")

    # another session opens both stores: the same curves and grids
    other = open_app(browser, server)
    type_in(other, ".open-path", str(stores[0]))
    other.get_by_role("button", name="Open", exact=True).click()
    wait_for(lambda: "stored run" in status(other), what="the stored run")
    type_in(other, ".open-path", str(stores[1]))
    other.get_by_role("button", name="Open as B").click()
    wait_for(lambda: "gated-head, complete" in status(other), what="the stored comparison")
    for name in ("sinks-0-probe", "sinks-1-probe"):
        assert sinks(other, name) == sinks(page, name)
    for name, store in (("grid-0", stores[0]), ("grid-1", stores[1])):  # a stored run shows the batch mean
        expected = mosaic(open_run(store)["pattern"].values[-1], 31)
        np.testing.assert_allclose(drawn(other, name), expected, atol=1e-6)
    page.close()
    other.close()


def test_bad_input_is_reported_and_starts_nothing(browser, server, runs, clean_log, tmp_path):
    before = set(runs.iterdir())
    page = open_app(browser, server)
    type_in(page, ".heads-input", "4")
    type_in(page, ".width-input", "50")
    wait_for(lambda: "width=50 is not divisible by heads=4" in text(page, ".config-error"), what="the width error")
    page.get_by_role("button", name="Start").click()
    type_in(page, ".width-input", "64")
    type_in(page, ".lr-input", "0")
    wait_for(lambda: "lr=0 is out of range" in text(page, ".config-error"), what="the lr error")
    assert_nothing_starts(page, tmp_path)
    assert set(runs.iterdir()) == before  # nothing started, nothing written
    type_in(page, ".lr-input", "0.003")
    wait_for(lambda: not visible(page, ".config-error"), what="the error to clear")
    page.close()


def test_real_model_tab(browser, server, clean_log):
    from explorer.attention_real import probe_available

    page = open_app(browser, server)
    page.locator(".bk-tab").filter(has_text="Real model").click()
    if not probe_available():
        wait_for(lambda: "not available" in text(page, ".real-error"), what="the install hint")
        page.get_by_role("button", name="Analyse").click()
        time.sleep(1.5)
        assert "not available" in text(page, ".real-error") and visible(page, ".real-error")
        page.close()
        return
    box = page.locator(".real-text textarea").first
    box.fill("The cat sat on the mat.")
    page.get_by_role("button", name="Analyse").click()
    wait_for(
        lambda: "sink rate" in text(page, ".real-status") or visible(page, ".real-error"),
        timeout=550,
        every=1.0,
        what="the analysis (or the install hint)",
    )
    if not visible(page, ".real-error"):
        assert "sink rate" in text(page, ".real-status") and drawn(page, "real-grid") is not None
    page.close()
