"""Helpers for tests that drive Debian Chromium (playwright) against ``panel serve``."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def need_chromium() -> None:
    """Skip without Chromium, except in CI (``CI`` set), where a missing browser is a failure."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed (apt-get install chromium chromium-driver)")
        pytest.skip("Chromium is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``panel serve`` on every app, logging to a file; tracebacks in the log fail the test."""

    def __init__(self, root: Path, log: Path, env: dict | None = None) -> None:
        from explorer.serving import serve_command

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115
        full_env = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen(
            serve_command("127.0.0.1", self.port), cwd=root, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/spiking", timeout=30) as r:
                    if r.status == 200:
                        break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"panel serve did not start:\n{log.read_text()}") from None
                time.sleep(0.3)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def tracebacks(self) -> list[str]:
        """Tracebacks in the log (each with its final exception line), except tornado's
        WebSocketClosedError / StreamClosedError: a write to a tab that has just closed."""
        found = re.findall(r"Traceback \(most recent call last\):\n(?:[ \t].*\n)*.*", self.log())
        harmless = ("WebSocketClosedError", "StreamClosedError")
        return [t for t in found if not any(h in t.splitlines()[-1] or f"raise {h}" in t for h in harmless)]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


JS_POINTS = """() => {
  const ms = Array.from(Bokeh.documents[0].all_models).filter(
      m => m.type == 'ColumnDataSource' && 'neuron' in m.data);
  return ms.length ? ms.reduce((n, m) => n + m.get_length(), 0) : -1;
}"""

JS_RATE = """(k) => {
  const m = Array.from(Bokeh.documents[0].all_models).find(
      m => m.type == 'ColumnDataSource' && 'time' in m.data && 'E' in m.data && !('left' in m.data));
  if (!m) return -1;
  const e = Array.from(m.data.E), i = Array.from(m.data.I);
  const n = Math.min(k, e.length);
  if (n == 0) return -1;
  let s = 0;
  for (let j = e.length - n; j < e.length; j++) s += 0.8 * e[j] + 0.2 * i[j];
  return s / n;
}"""


def text(page, css: str) -> str:
    """Text of a Panel component (its content lives in a shadow root)."""
    return page.locator(css).first.evaluate("e => e.shadowRoot ? e.shadowRoot.textContent : e.textContent")


def visible(page, css: str) -> bool:
    return page.locator(css).first.is_visible()


def status(page) -> str:
    return text(page, ".status-line")


def spikes(page) -> int:
    m = re.search(r"([\d,]+) spikes ·", status(page))
    return int(m.group(1).replace(",", "")) if m else 0


def wait_for(predicate, timeout: float = 30.0, every: float = 0.25, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def open_page(browser, server, app: str, width: int = 1500, height: int = 1300):
    """A new page on ``app``, once its Start button and Bokeh document are there."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{server.url}/{app}")
    page.get_by_role("button", name="Start").wait_for(timeout=60_000)
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0")
    return page


def type_in(page, css: str, value: str) -> None:
    """Type ``value`` into the text input inside ``css`` and press Enter."""
    box = page.locator(f"{css} input").first
    box.fill(value)
    box.press("Enter")


def assert_nothing_starts(page, outside: Path) -> None:
    """Start (with a bad setting on screen) and Open on a path ``outside`` the folders the server may read:
    the path is refused beside the opener, and the app stays idle."""
    page.get_by_role("button", name="Start").click()
    type_in(page, ".open-path", str(outside))
    page.get_by_role("button", name="Open", exact=True).click()
    wait_for(lambda: "outside the folders" in text(page, ".open-error"), what="the path error")
    time.sleep(1.0)
    assert "idle" in status(page)
