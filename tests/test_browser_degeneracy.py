"""The degeneracy dashboard in a real browser: a tiny sweep typed in the page runs live and
networks converge; after Stop the store reopens in another session and resumes; the MDS
embeddings, levels, matrices, trajectories and fixed points appear; bad input is reported beside
the controls without starting anything."""

from __future__ import annotations

import re
import time

import pytest
from browser import open_page, status, text, type_in, visible, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Flip-flop, 1 vs 2 channels, 3 networks of 32 units: at learning rate 0.03 every network of both
# conditions reaches the 1e-3 threshold within ~1,300 steps (a few seconds each on one core).
TINY = {".values-input": "1,2", ".seeds-input": "3", ".hidden-input": "32", ".steps-input": "1500", ".lr-input": "0.03"}

JS_ROWS = """(name) => {
  const m = Array.from(Bokeh.documents[0].all_models).find(
      m => m.type == 'ColumnDataSource' && m.name == name);
  return m ? m.get_length() : -1;
}"""

JS_LAST_STEP = """() => {
  const m = Array.from(Bokeh.documents[0].all_models).find(
      m => m.type == 'ColumnDataSource' && m.name == 'loss');
  const s = m ? Array.from(m.data.step) : [];
  return s.length ? s[s.length - 1] : -1;
}"""


def open_app(browser, server):
    return open_page(browser, server, "degeneracy", 1500, 1300)


def rows(page, source: str) -> int:
    return page.evaluate(JS_ROWS, source)


def test_tiny_sweep_runs_live_stops_reopens_and_resumes(browser, server, runs, clean_log):
    from engine.rnn.sweep import sweep_summary

    before = set(runs.glob("sweep-*.zarr"))
    page = open_app(browser, server)
    for css, value in TINY.items():
        type_in(page, css, value)
    wait_for(lambda: not visible(page, ".config-error"), what="valid input")
    t0 = time.time()
    page.get_by_role("button", name="Start").click()

    # live: the converged count of the first condition goes up from 0 while its losses stream in
    seen: list[int] = []

    def converging():
        m = re.search(r"condition 1/2 \(channels=1\): (\d)/3 converged, step (\d+)", status(page))
        if m:
            seen.append(int(m.group(1)))
        return seen and max(seen) > 0

    wait_for(converging, timeout=120, every=0.2, what="networks of the first condition to converge")
    assert min(seen) == 0, seen
    step = page.evaluate(JS_LAST_STEP)
    assert step > 0
    assert rows(page, "loss") >= step + 1  # every step so far, each sent once (later ones may have followed)

    # the first condition is stored: its MDS points appear; Stop ends the sweep during the second
    wait_for(lambda: rows(page, "mds-dsa") > 0, timeout=120, what="MDS points of the first condition")
    first = rows(page, "mds-dsa")
    page.get_by_role("button", name="Stop").click()
    wait_for(lambda: "stopped" in status(page), timeout=60, what="the sweep to stop")
    assert "1/2 conditions stored" in status(page)
    new = sorted(set(runs.glob("sweep-*.zarr")) - before)
    assert len(new) == 1

    # another session opens the stored sweep and resumes it in the same store
    other = open_app(browser, server)
    type_in(other, ".open-path", str(new[0]))
    other.get_by_role("button", name="Open").click()
    wait_for(lambda: "stored sweep" in status(other), what="the stored sweep")
    assert "1/2 conditions finished" in status(other)
    assert rows(other, "mds-dsa") == first
    assert rows(other, "loss") > 5  # a stored condition shows its epoch-mean loss curves
    other.get_by_role("button", name="Start").click()
    wait_for(lambda: "2/2 conditions stored" in status(other), timeout=150, what="the resumed sweep to finish")
    seconds = time.time() - t0
    counts = [int(k) for k in re.findall(r"channels=\d (\d)/3", status(other))]
    assert len(counts) == 2 and sum(counts) >= 4, status(other)  # both conditions converge
    assert counts[0] == first
    assert rows(other, "mds-dsa") == rows(other, "mds-pif") == sum(counts)
    assert rows(other, "levels") == 2
    assert rows(other, "matrix-dsa") == 9  # the 3 x 3 DSA matrix of the selected condition
    assert rows(other, "trajectories") == 16  # one line per test trial
    assert sorted(set(runs.glob("sweep-*.zarr")) - before) == new
    summary = sweep_summary(new[0])
    assert summary["complete"] and [c["n_converged"] for c in summary["conditions"]] == counts

    # fixed points of the selected network, found on demand
    other.get_by_role("button", name="Find fixed points").click()
    wait_for(lambda: "under zero input" in text(other, ".fp-status"), timeout=60, what="fixed points")
    assert rows(other, "fixed-stable") + rows(other, "fixed-unstable") > 0
    page.close()
    other.close()
    print(f"sweep of 2 conditions x 3 networks, stopped and resumed in the page: {seconds:.1f} s")


def test_bad_input_is_reported_and_starts_nothing(browser, server, runs, clean_log, tmp_path):
    before = set(runs.iterdir())
    page = open_app(browser, server)
    for value, words in (("0,1", "channels=0 is out of range"), ("1,x", "'x' is not a number")):
        type_in(page, ".values-input", value)
        wait_for(lambda w=words: w in text(page, ".config-error"), what=words)
        assert visible(page, ".config-error")
        page.get_by_role("button", name="Start").click()
    type_in(page, ".values-input", "1,2")
    type_in(page, ".seeds-input", "1")
    wait_for(lambda: "seeds=1 is out of range" in text(page, ".config-error"), what="the seeds error")
    page.get_by_role("button", name="Start").click()
    for path, words in ((tmp_path, "outside the folders"), (runs, "is not a sweep store")):
        type_in(page, ".open-path", str(path))
        page.get_by_role("button", name="Open").click()
        wait_for(lambda w=words: w in text(page, ".open-error"), what=words)
    time.sleep(1.0)
    assert "idle" in status(page)
    assert set(runs.iterdir()) == before  # nothing started, nothing written
    type_in(page, ".seeds-input", "3")
    wait_for(lambda: not visible(page, ".config-error"), what="the error to clear")
    page.close()
