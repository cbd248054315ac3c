"""Live dashboard costs: server-side push, updates/s, real-time factor, raster responsiveness.

    python benchmarks/live.py            # needs Debian chromium (apt-get install chromium)

Part 1, side by side in one process: the cost of one display update (COBA scale 1, 100 ms of
network per update) through our views, which stream only the new rows into Bokeh sources,
against the common HoloViews pipeline (``hv.streams.Buffer`` + ``DynamicMap`` of Points and
Curves, re-rendered per update). Both include serialising the document patch as the server
would send it. Printed: medians and our/peer ratio.

Part 2, end to end: ``panel serve`` with the spiking app, one Chromium session, COBA scale 1.
At 1x and at full speed: the app's own median push cost, updates per second and real-time
factor. Then the raster with ~100k points on screen (all 4000 neurons, 1.2 s window): browser
frames per second while streaming, and the round trip of a slider change (key press to the
server's answer drawn in the page), with the canvas and the WebGL renderer.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from engine.chunk import concat  # noqa: E402
from engine.spiking import SpikingConfig, SpikingStream  # noqa: E402


def ticks(n: int, per_tick_ms: float = 100.0):
    """``n`` display updates of COBA scale 1, each merging the chunks of ``per_tick_ms``."""
    stream = SpikingStream(SpikingConfig(model="coba", duration=n * per_tick_ms / 1000 + 0.5, chunk=50.0))
    labels = stream.population_labels
    per = round(per_tick_ms / 50.0)
    out = []
    for _ in range(n):
        out.append(concat([stream.next_chunk() for _ in range(per)], stream.append_dims))
    return out, labels


def _serialising_doc():
    """A Bokeh document whose changes are serialised as a server session would send them."""
    from bokeh.document import Document
    from bokeh.protocol import Protocol

    doc = Document()
    protocol = Protocol()
    sizes = []

    def on_change(event):
        msg = protocol.create("PATCH-DOC", [event])
        sizes.append(len(msg.content) + sum(len(b) for b in getattr(msg, "buffers", []) or []))

    doc.on_change(on_change)
    return doc, sizes


def push_ours(updates, labels) -> list[float]:
    import panel as pn

    from explorer.spiking_views import RasterView, RateView, VoltageView

    doc, _ = _serialising_doc()
    # every neuron drawn, like the peer, and no redraw budget: every update is sent
    raster = RasterView(neuron_range=(0, 4000), max_rows=4000, draw_budget=1e12)
    rates, volt = RateView(), VoltageView()
    for view in (raster, rates, volt):
        pn.panel(view).get_root(doc)
    times = []
    for chunk in updates:
        t_end = float(chunk["chunk_end"].values[-1])
        t0 = time.perf_counter()
        doc.hold("combine")
        raster.push(chunk, labels, t_end)
        rates.push(chunk, t_end)
        volt.push(chunk, t_end)
        doc.unhold()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def push_holoviews(updates, labels) -> list[float]:
    import holoviews as hv
    import pandas as pd
    import panel as pn

    hv.extension("bokeh")
    doc, _ = _serialising_doc()
    from explorer.style import COLORS

    start = pd.DataFrame({"time": [-1.0, -1.0], "neuron": [0, 0], "pop": ["E", "I"]})
    spikes = hv.streams.Buffer(start, length=100_000, index=False)
    rate = hv.streams.Buffer(pd.DataFrame({"time": [0.0], "E": [0.0], "I": [0.0]}), length=1000, index=False)
    raster = hv.DynamicMap(
        lambda data: hv.Points(data, ["time", "neuron"], ["pop"]).opts(color="pop", cmap=COLORS), streams=[spikes]
    )
    curves = hv.DynamicMap(lambda data: hv.Curve(data, "time", "E") * hv.Curve(data, "time", "I"), streams=[rate])
    pn.Column(raster, curves).get_root(doc)
    times = []
    for chunk in updates:
        t = chunk["spike_time"].values
        i = chunk["spike_neuron"].values
        r = chunk["rate"].values
        t0 = time.perf_counter()
        spikes.send(pd.DataFrame({"time": t, "neuron": i, "pop": labels[i]}))
        rate.send(pd.DataFrame({"time": chunk["time"].values, "E": r[0], "I": r[1]}))
        times.append((time.perf_counter() - t0) * 1000)
    return times


# -- part 2: a real browser ----------------------------------------------------------------
JS_FPS = """(ms) => new Promise(done => {
  let frames = 0; const t0 = performance.now();
  function step(t) { frames++; if (t - t0 < ms) requestAnimationFrame(step); else done(frames * 1000 / (t - t0)); }
  requestAnimationFrame(step);
})"""

JS_G = """() => { const m = Array.from(Bokeh.documents[0].all_models).find(
  m => m.type == 'ColumnDataSource' && 'eta' in m.data && m.get_length() == 1); return m ? m.data.g[0] : null; }"""


def _status_numbers(text: str) -> dict:
    grab = {
        "rtf": r"real-time factor ([\d.]+)",
        "push_ms": r"push ([\d.]+) ms",
        "updates": r"([\d.]+) updates/s",
        "points": r"([\d,]+) points",
    }
    out = {}
    for key, pattern in grab.items():
        m = re.search(pattern, text)
        out[key] = float(m.group(1).replace(",", "")) if m else float("nan")
    return out


@contextmanager
def dashboard(height: int = 1300):
    """A fresh ``panel serve`` and one Chromium page on the spiking app."""
    from browser import CHROMIUM, CHROMIUM_ARGS, Server
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        server = Server(ROOT, Path(tmp) / "server.log", env={"DYNASCOPE_RUNS": tmp})
        try:
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = b.new_page(viewport={"width": 1500, "height": height})
                page.goto(f"{server.url}/spiking")
                page.get_by_role("button", name="Start").wait_for(timeout=60_000)
                yield page
                b.close()
        finally:
            server.close()


def browser_run(seconds: float) -> dict:
    from browser import status

    results = {}
    with dashboard() as page:
        page.locator("select").first.select_option("coba")
        time.sleep(1.0)
        scale = page.locator(".scale-input input").first
        scale.fill("1")
        scale.press("Enter")
        time.sleep(1.0)
        for speed in ("1x", "2x", "max"):
            page.get_by_role("button", name=speed, exact=True).click()
            page.get_by_role("button", name="Start").click()
            time.sleep(seconds)
            results[f"speed {speed}"] = _status_numbers(status(page))
            page.get_by_role("button", name="Reset").click()
            time.sleep(1.0)
        # ~100k points: every neuron, a 1.2 s window, at 1x
        page.get_by_role("button", name="1x", exact=True).click()
        rows = page.locator(".rows-input input").first
        rows.fill("4000")
        rows.press("Enter")
        handle = page.locator(".window-slider .noUi-handle").first
        handle.focus()
        handle.press("ArrowRight")
        handle.press("ArrowRight")
        page.get_by_role("button", name="Start").click()
        time.sleep(4.0)
        for renderer in ("canvas", "webgl"):
            if renderer == "webgl":
                page.locator(".webgl input").first.check()
                time.sleep(2.0)
            fps = page.evaluate(JS_FPS, 4000)
            latencies = []
            g_handle = page.locator(".g-slider .noUi-handle").first
            for k in range(5):
                before = page.evaluate(JS_G)
                g_handle.focus()
                t0 = time.perf_counter()
                g_handle.press("ArrowRight" if k % 2 == 0 else "ArrowLeft")
                while page.evaluate(JS_G) == before and time.perf_counter() - t0 < 20:
                    time.sleep(0.01)
                latencies.append((time.perf_counter() - t0) * 1000)
            numbers = _status_numbers(status(page))
            round_trip = statistics.median(latencies)
            results[f"100k points, {renderer}"] = {"fps": fps, "slider_round_trip_ms": round_trip, **numbers}
    return results


def screenshot(path: Path, seconds: float = 5.0) -> None:
    """The dashboard running Brunel C (scale 0.2) for a few seconds, as a PNG (for the README)."""
    with dashboard(height=1250) as page:
        page.get_by_role("button", name="Start").click()
        time.sleep(seconds)
        page.get_by_role("button", name="Pause").click()
        time.sleep(1.5)
        page.screenshot(path=str(path), full_page=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=40, help="display updates in part 1")
    parser.add_argument("--seconds", type=float, default=8.0, help="streaming time per browser setting")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--json", help="write all figures here")
    parser.add_argument("--screenshot", help="only save a screenshot of the running dashboard to this PNG")
    args = parser.parse_args()
    if args.screenshot:
        screenshot(Path(args.screenshot))
        return 0
    updates, labels = ticks(args.updates + 3)
    push_ours(updates[:3], labels)  # warm imports and first renders
    ours = push_ours(updates, labels)[3:]
    peer = push_holoviews(updates, labels)[3:]
    points = int(np.median([u.sizes["spike"] for u in updates]))
    print(f"one update = 100 ms of COBA x1 (~{points:,} spikes), server side incl. patch serialisation:")
    print(f"  ours (stream new rows): median {statistics.median(ours):6.1f} ms")
    print(f"  HoloViews Buffer+DynamicMap: median {statistics.median(peer):6.1f} ms")
    print(f"  ratio ours/HoloViews: {statistics.median(ours) / statistics.median(peer):.3f}")
    out = {"push_ours_ms": ours, "push_holoviews_ms": peer}
    if not args.no_browser:
        live = browser_run(args.seconds)
        out["browser"] = live
        print("\nend to end, COBA x1 in panel serve + one Chromium session (software rendering):")
        for name, r in live.items():
            extra = (
                f", {r['fps']:.1f} frames/s, slider round trip {r['slider_round_trip_ms']:.0f} ms" if "fps" in r else ""
            )
            print(
                f"  {name:<22} push {r['push_ms']:5.1f} ms, {r['updates']:4.1f} updates/s, "
                f"real-time factor {r['rtf']:5.2f}, {r['points']:,.0f} points{extra}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
