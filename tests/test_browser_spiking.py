"""The spiking dashboard in a real browser: live run, sliders, pause, export, stored runs,
bad input, and two sessions side by side."""

from __future__ import annotations

import time

import pytest
from browser import (
    JS_POINTS,
    JS_RATE,
    spikes,
    status,
    text,
    visible,
    wait_for,
)
from helpers import ROOT, make_store

from engine.store import open_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def open_app(browser, server, width=1500):
    page = browser.new_page(viewport={"width": width, "height": 1300}, accept_downloads=True)
    page.goto(f"{server.url}/spiking")
    page.get_by_role("button", name="Start").wait_for(timeout=60_000)
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0")
    return page


def press_slider(page, css: str, key: str, times: int = 1) -> None:
    handle = page.locator(f"{css} .noUi-handle").first
    handle.focus()
    for _ in range(times):
        handle.press(key)


def test_live_run_slider_pause_export(browser, server, clean_log, tmp_path):
    page = open_app(browser, server)
    page.get_by_role("button", name="Start").click()
    first = wait_for(lambda: page.evaluate(JS_POINTS) > 0 and page.evaluate(JS_POINTS), what="spikes drawn")
    wait_for(lambda: page.evaluate(JS_POINTS) > first, what="the raster to grow")
    time.sleep(2.0)
    base = page.evaluate(JS_RATE, 400)  # mean network rate over the last 400 ms
    assert base > 0
    press_slider(page, ".eta-slider", "End")  # eta 2 -> 6: three times the external drive
    time.sleep(3.0)
    raised = page.evaluate(JS_RATE, 400)
    assert raised > 1.3 * base, (base, raised)
    page.get_by_role("button", name="Pause").click()
    counts = []

    def settled():
        counts.append(spikes(page))
        return len(counts) > 2 and counts[-1] == counts[-2] == counts[-3]

    wait_for(settled, timeout=20, every=0.7, what="counts to settle after Pause")
    time.sleep(1.0)
    assert spikes(page) == counts[-1]
    assert "paused" in status(page)
    with page.expect_download(timeout=60_000) as download:
        page.locator(".export button").first.click()
    path = tmp_path / "raster.png"
    download.value.save_as(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    page.close()


def test_stored_run_opens_in_the_raster(browser, server, runs, clean_log):
    store = runs / "stored.zarr"
    ds = open_run(make_store(store, "coba", duration=0.3))
    page = open_app(browser, server)
    page.locator(".open-path input").fill(str(store))
    page.get_by_role("button", name="Open").click()
    wait_for(lambda: "stored run" in status(page), what="the stored run")
    # 400 neurons, all drawn (stride 1): every spike of the run is a point
    assert page.evaluate(JS_POINTS) == ds.sizes["spike"]
    assert f"{ds.sizes['spike']:,} spikes" in status(page)
    page.close()


def test_bad_input_shows_message_and_server_keeps_serving(browser, server, tmp_path, clean_log):
    page = open_app(browser, server)
    scale = page.locator(".scale-input input").first
    scale.fill("0")
    scale.press("Enter")
    wait_for(lambda: "scale=0" in text(page, ".config-error"), what="the scale error")
    assert visible(page, ".config-error")
    page.locator(".open-path input").fill(str(tmp_path))
    page.get_by_role("button", name="Open").click()
    wait_for(lambda: visible(page, ".open-error"), what="the path error")
    message = text(page, ".open-error")
    assert "outside the folders" in message or "not a run store" in message
    # the same page still runs a network, and a new session works
    scale.fill("0.1")
    scale.press("Enter")
    wait_for(lambda: not visible(page, ".config-error"), what="the error to clear")
    page.get_by_role("button", name="Start").click()
    wait_for(lambda: spikes(page) > 0, what="a run after the bad input")
    other = open_app(browser, server)
    other.get_by_role("button", name="Start").click()
    wait_for(lambda: spikes(other) > 0, what="another session")
    page.close()
    other.close()


def test_two_sessions_run_independent_networks(browser, server, runs, clean_log):
    before = set(runs.glob("live-*.zarr"))
    a, b = open_app(browser, server), open_app(browser, server)
    a.get_by_role("button", name="Start").click()
    b.get_by_role("button", name="Start").click()
    wait_for(lambda: spikes(a) > 0 and spikes(b) > 0, what="both runs")
    press_slider(b, ".eta-slider", "End")
    a.get_by_role("button", name="Pause").click()
    time.sleep(1.5)
    frozen = spikes(a)
    grown = spikes(b)
    time.sleep(2.0)
    assert spikes(a) == frozen  # B's run does not feed A's display
    assert spikes(b) > grown
    b.get_by_role("button", name="Pause").click()
    time.sleep(1.0)
    a.close()
    b.close()
    new = sorted(set(runs.glob("live-*.zarr")) - before)
    assert len(new) == 2  # one store per session
    etas = []
    for store in new:
        wait_for(lambda s=store: open_run(s).sizes.get("chunk", 0) > 0, what="stored chunks")
        etas.append(sorted(set(open_run(store)["eta"].values.round(3))))
    assert sorted(etas) == [[2.0], [2.0, 6.0]]  # only B's network saw the slider


def test_serve_open_shows_a_stored_run(browser, tmp_path):
    """``dynascope serve --open PATH`` prints its URL and shows that run at start."""
    import subprocess
    import sys
    import urllib.request

    from browser import free_port

    store = tmp_path / "shown.zarr"
    make_store(store, "cuba", duration=0.2)
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "explorer.cli",
            "serve",
            "--port",
            str(port),
            "--open",
            str(store),
            "--runs",
            str(tmp_path / "runs"),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def up():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/spiking", timeout=30).status == 200
            except OSError:
                return False

        wait_for(up, timeout=90, every=0.5, what="dynascope serve")
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(f"http://127.0.0.1:{port}/spiking")
        wait_for(lambda: "stored run" in status(page), what="the stored run")
        assert f"{open_run(store).sizes['spike']:,} spikes" in status(page)
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/index", timeout=30).status == 200
        page.close()
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
    text_log = (tmp_path / "serve.log").read_text()
    assert f"http://127.0.0.1:{port}/index" in text_log
    assert "Traceback" not in text_log
