"""The emergence dashboard in a real browser: a small induction run trained live updates its per-layer
curves, draws each layer's fitted emergence law, and marks the onset of its in-context accuracy as the
induction head forms; bad values are reported beside the controls, start nothing, and the app keeps
working; the feature tab shows a sparsity run's top-activating text for a neuron."""

from __future__ import annotations

import time

import numpy as np
import pytest
from browser import assert_nothing_starts, open_page, status, text, type_in, visible, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# An induction run that learns in a few hundred steps (one head per layer: a previous-token head and
# an induction head): the in-context accuracy of seed 0 climbs from ~0.1 to ~0.65 between steps ~300
# and ~550 (about 10 s of training on one free core).
INDUCTION = {"heads": "1", "width": "32", "vocab": "16", "repeat": "8", "lr": "0.002", "steps": "700"}

JS_SOURCE = """(name) => {
  const m = Array.from(Bokeh.documents[0].all_models).find(
      m => m.type == 'ColumnDataSource' && m.name == name);
  if (!m) return null;
  const out = {};
  const clean = v => (typeof v == 'number' && !Number.isFinite(v)) ? null : v;
  for (const k of Object.keys(m.data)) out[k] = Array.from(m.data[k], clean);
  return out;
}"""


def source(page, name: str) -> dict:
    return page.evaluate(JS_SOURCE, name) or {}


def rows(page, name: str) -> int:
    return len(source(page, name).get("step", []))


def finite(values) -> list[float]:
    return [v for v in values if v is not None]


def open_app(browser, server):
    return open_page(browser, server, "emergence", 1600, 1400)


def fill(page, settings: dict) -> None:
    for name, value in settings.items():
        type_in(page, f".{name}-input", value)


def test_live_induction_curves_fits_and_onset(browser, server, runs, clean_log):
    before = set(runs.glob("emergence-*.zarr"))
    page = open_app(browser, server)
    fill(page, {**INDUCTION, "probe-every": "20"})
    wait_for(lambda: not visible(page, ".config-error"), what="valid settings")
    t0 = time.time()
    page.get_by_role("button", name="Start").click()

    # the per-layer curves grow probe by probe, and each layer's fitted law is drawn and redrawn
    wait_for(lambda: rows(page, "ratio-0-probe") >= 3, timeout=60, what="the first probes")
    first = rows(page, "ratio-0-probe")
    wait_for(lambda: rows(page, "ratio-0-probe") > first + 2, timeout=60, what="more probes")
    wait_for(lambda: finite(source(page, "ratio-fit-0").get("L1", [])), timeout=60, what="a fitted law")
    fitted_at = max(source(page, "ratio-fit-0")["step"])
    wait_for(lambda: max(source(page, "ratio-fit-0")["step"]) > fitted_at, timeout=60, what="a refit")
    assert "top/median L0" in text(page, ".fit-table") and "top/median L1" in text(page, ".fit-table")

    # the run ends; in-context accuracy has jumped, and its onset is marked inside the run
    wait_for(lambda: "finished" in status(page), timeout=120, every=0.5, what="the run to finish")
    seconds = time.time() - t0
    wait_for(lambda: rows(page, "abrupt-0-probe") == 36, what="every probe drawn")
    acc = source(page, "abrupt-0-probe")["icl_acc"]
    assert max(acc[-5:]) > acc[0] + 0.3
    wait_for(lambda: "icl_acc" in source(page, "abrupt-onset-0").get("name", []), timeout=30, what="the onset marker")
    marks = source(page, "abrupt-onset-0")
    onset = marks["step"][marks["name"].index("icl_acc")]
    steps = source(page, "abrupt-0-probe")["step"]
    rising = steps[int(np.argmax(np.asarray(acc) > acc[0] + 0.15))]  # first probe clearly above the start
    assert 0 < onset <= rising + 100 and onset < 700
    logistic = finite(source(page, "abrupt-fit-0")["icl_acc"])
    assert logistic and max(logistic) - min(logistic) > 0.3
    stores = sorted(set(runs.glob("emergence-*.zarr")) - before)
    assert len(stores) == 1 and stores[0].name.endswith("-A-induction.zarr")
    page.close()
    print(f"induction run of 700 steps in {seconds:.1f} s; icl_acc onset at step {onset:.0f}")


def test_bad_values_are_reported_and_the_app_keeps_working(browser, server, runs, clean_log, tmp_path):
    before = set(runs.iterdir())
    page = open_app(browser, server)
    type_in(page, ".heads-input", "3")
    wait_for(lambda: "width=64 is not divisible by heads=3" in text(page, ".config-error"), what="the width error")
    page.get_by_role("button", name="Start").click()
    type_in(page, ".heads-input", "2")
    wait_for(lambda: not visible(page, ".config-error"), what="the error to clear")

    # icl-bursty: the burstiness slider moved to a B that does not divide N
    page.locator(".task-select select").first.select_option("icl-bursty")
    handle = page.locator(".burstiness-input .noUi-handle").first
    wait_for(lambda: handle.is_visible(), what="the burstiness slider")
    handle.focus()
    handle.press("ArrowRight")  # the task default B = 2 -> 3
    wait_for(lambda: "burstiness=3 does not divide pairs=8" in text(page, ".config-error"), what="the B error")
    assert_nothing_starts(page, tmp_path)
    assert set(runs.iterdir()) == before  # nothing started, nothing written

    # the app keeps working: B = 2 is fine, and a short run trains
    handle.press("ArrowLeft")  # 3 -> 2
    wait_for(lambda: not visible(page, ".config-error"), what="the B error to clear")
    fill(page, {"steps": "40", "probe-every": "20"})
    page.get_by_role("button", name="Start").click()
    wait_for(lambda: "finished" in status(page), timeout=60, what="the short run")
    assert rows(page, "abrupt-0-probe") == 3
    page.close()


def test_feature_tab_shows_top_activating_text(browser, server, clean_log):
    page = open_app(browser, server)
    page.locator(".task-select select").first.select_option("sparsity")
    fill(page, {"width": "32", "length": "16", "steps": "40", "probe-every": "20"})
    page.get_by_role("button", name="Start").click()
    wait_for(lambda: "finished" in status(page), timeout=60, what="the sparsity run")
    page.locator(".bk-tab").filter(has_text="Features").click()
    type_in(page, ".neuron-input", "5")
    page.get_by_role("button", name="Top-activating").click()
    wait_for(lambda: "most active neurons" in text(page, ".feature-examples"), timeout=30, what="the examples")
    examples = page.locator(".feature-examples .example")
    assert examples.count() == 8
    assert "L0 neuron 5" in text(page, ".feature-examples")
    hits = page.locator(".feature-examples .hit")
    assert hits.count() == 8 and hits.first.inner_text().strip()  # the activating token of each, outlined
    assert not visible(page, ".feature-error")
    page.close()
