"""Serving the dashboards: ``dynascope serve`` runs ``panel serve`` on every app in ``panels/``.

The server binds to 127.0.0.1 unless told otherwise. Options reach the apps through the
environment (``DYNASCOPE_RUNS``: where live runs and sweeps are stored; ``DYNASCOPE_OPEN``: a
stored run or sweep to show at start, in the app that shows its kind), never through URL
parameters.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from explorer.paths import is_sweep_store

__all__ = ["PANELS", "app_options", "index_page", "serve_command", "serve"]

PANELS = Path(__file__).resolve().parents[1] / "panels"
APPS = {
    "spiking": "Spiking networks: COBA, CUBA and Brunel's E/I regimes, live raster and rates, "
    "sliders on the running network, stored runs, export.",
    "degeneracy": "Solution degeneracy of task-trained RNNs: sweep a knob, watch every network's loss, "
    "compare converged networks by DSA and weight (PIF) distances, MDS, σ_OOD, trajectories and fixed points.",
    "attention": "Attention sinks: train a tiny transformer on Bigram-Backcopy and watch every head's attention, "
    "sink scores on trigger and non-trigger queries, value drain and losses form live; compare two variants; "
    "probe a real pretrained model.",
    "emergence": "Activation emergence over training: massive activations, lazy-neuron sparsity, induction heads, "
    "bursty in-context learning and grokking, live per-layer curves with fitted emergence laws and marked onsets; "
    "compare two runs; what drives a neuron.",
}
OPENS = {"spiking": "run", "degeneracy": "sweep", "attention": "run", "emergence": "run"}  # kind of store shown
ENGINES = {  # engines of the runs each app shows
    "spiking": ("spiking",),
    "attention": ("attention", "attention-probe"),
    "emergence": ("emergence",),
}


def app_options(app: str = "spiking") -> dict:
    """Options for an app from the server's environment (a store to open if it is of the app's kind)."""
    path = os.environ.get("DYNASCOPE_OPEN")
    if not path:
        return {}
    kind = "sweep" if is_sweep_store(path) else "run"
    if OPENS.get(app) != kind:
        return {}
    engine = _run_engine(path) or "spiking"  # unreadable: the spiking app says why
    if kind == "run" and engine not in ENGINES.get(app, ()):
        return {}
    if engine == "attention-probe":
        return {"probe_path": path}
    return {"open_path": path}


def _run_engine(path: str) -> str:
    """The engine of a stored run (``""`` if unreadable)."""
    from engine.store import StoreError, read_record

    try:
        return str(read_record(path).get("engine", ""))
    except (StoreError, OSError):
        return ""


def index_page():
    import panel as pn

    items = "\n".join(f"- [**{name}**](./{name}): {text}" for name, text in APPS.items())
    return pn.Column(
        pn.pane.Markdown(f"# Dynascope\n\nAn explorer for the dynamics of neural networks.\n\n{items}"),
        sizing_mode="stretch_width",
    )


def serve_command(address: str, port: int) -> list[str]:
    if not PANELS.is_dir():
        raise ValueError(f"the apps folder {PANELS} is missing: serve from a clone of the repository")
    apps = [str(PANELS / "index.py"), *(str(PANELS / f"{name}.py") for name in APPS)]
    return [
        sys.executable,
        "-m",
        "panel",
        "serve",
        *apps,
        "--address",
        address,
        "--port",
        str(port),
        "--allow-websocket-origin",
        f"{address}:{port}",
        "--check-unused-sessions",
        "1000",
        "--unused-session-lifetime",
        "1000",
        "--num-procs",
        "1",
    ]


def serve(
    address: str = "127.0.0.1",
    port: int = 5006,
    *,
    open_path: str | None = None,
    runs: str | None = None,
    show: bool = False,
) -> int:
    """Run the server in the foreground until interrupted."""
    env = dict(os.environ)
    if runs:
        env["DYNASCOPE_RUNS"] = str(Path(runs).expanduser().absolute())
    if open_path:
        from engine.store import read_record

        if not is_sweep_store(open_path):
            read_record(open_path)  # a clear one-line error before the server starts
        env["DYNASCOPE_OPEN"] = str(Path(open_path).expanduser().absolute())
    cmd = serve_command(address, port)
    if show:
        cmd.append("--show")
    apps = ", ".join(f"{name}: http://{address}:{port}/{name}" for name in APPS)
    print(f"Dynascope at http://{address}:{port}/index  ({apps})", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0
