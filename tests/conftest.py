"""Shared fixtures."""

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, Server, need_chromium
from helpers import ROOT, make_spike_dataset


@pytest.fixture
def spike_dataset():
    return make_spike_dataset


# -- browser tests: one server and one Chromium per test module ---------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    need_chromium()
    srv = Server(ROOT, tmp_path_factory.mktemp("log") / "server.log", env={"DYNASCOPE_RUNS": str(runs)})
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def clean_log(server):
    """Fail the test on any traceback the server logs while it runs."""
    before = len(server.tracebacks())
    yield
    new = server.tracebacks()[before:]
    assert not new, "server traceback:\n" + "\n".join(new)
