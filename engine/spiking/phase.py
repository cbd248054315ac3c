"""An empirical Brunel (2000) phase diagram: regime measures over a (g, eta) grid.

Each grid point is a Brunel network (scale 1 by default: the paper's N = 12,500) run for a
short time; we record mean rate, ISI CV, Golomb's chi in 1 ms and 5 ms bins and the dominant
frequency of the network rate, then name the state:

- ``SR`` synchronous regular: ISI CV < 0.2;
- ``SI fast`` / ``SI slow`` synchronous irregular: chi above ``CHI_SYNC`` in 1 ms (fast) or 5 ms
  (slow) bins, the oscillation's frequency telling which (above / below 80 Hz);
- ``AI`` asynchronous irregular: otherwise;
- ``quiescent``: rate below 0.5 Hz.

The thresholds are set by the four panels of the paper's figure 8 as measured by this engine
(A: CV 0.00; B: chi_1ms 0.24 at 176 Hz; C: chi_1ms 0.10; D: chi_5ms 0.23 at 26 Hz).
The shipped grid (``data/brunel_phase.json``) was made with
``python -m engine.spiking.phase engine/spiking/data/brunel_phase.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from engine.spiking.analysis import cv_isi, oscillation, population_rates, synchrony
from engine.spiking.config import REGIMES, SpikingConfig
from engine.spiking.simulate import run

__all__ = ["classify", "measure", "load_phase_grid", "PHASE_FILE", "G_GRID", "ETA_GRID"]

PHASE_FILE = Path(__file__).parent / "data" / "brunel_phase.json"
G_GRID = (2.0, 3.0, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0, 8.0)
ETA_GRID = (0.5, 0.9, 1.5, 2.0, 3.0, 4.0)
CHI_SYNC = 0.16


def classify(m: dict) -> str:
    """Name the state of one grid point from its measures (see the module docstring)."""
    if not m["rate"] or m["rate"] < 0.5:
        return "quiescent"
    if m["cv"] < 0.2:
        return "SR"
    if m["chi_1ms"] > CHI_SYNC and m["peak_hz"] > 80:
        return "SI fast"
    if m["chi_5ms"] > CHI_SYNC and m["peak_hz"] <= 80:
        return "SI slow"
    return "AI"


def measure(
    g: float, eta: float, *, scale: float = 1.0, duration: float = 0.4, seed: int = 1, skip: float = 100.0
) -> dict:
    """Run one Brunel network at (g, eta) and return its regime measures."""
    base = SpikingConfig(
        model="brunel", regime="C", scale=scale, duration=duration, seed=seed, record_v=0, sample_interval=0.5
    )
    ds = run(base.with_settings(g=g, eta=eta))
    out = {
        "g": g,
        "eta": eta,
        "rate": float(np.mean(list(population_rates(ds, skip).values()))),
        "cv": cv_isi(ds, skip)["all"],
        "chi_1ms": synchrony(ds, 1.0, skip)["chi"],
        "chi_5ms": synchrony(ds, 5.0, skip)["chi"],
        "peak_hz": oscillation(ds, skip)["peak_hz"],
    }
    out = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}
    out["state"] = classify({k: (v if v is not None else 0.0) for k, v in out.items()})
    return out


def load_phase_grid(path: Path = PHASE_FILE) -> dict:
    """The shipped grid: ``{"points": [measure(...), ...], "scale", "duration", "seed"}``."""
    return json.loads(Path(path).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.spiking.phase", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="JSON file to write")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=0.4)
    args = parser.parse_args(argv)
    points = []
    for g in G_GRID:
        for eta in ETA_GRID:
            points.append(measure(g, eta, scale=args.scale, duration=args.duration))
            print(json.dumps(points[-1]), flush=True)
    panels = {k: {"g": g, "eta": eta} for k, (g, eta) in REGIMES.items()}
    data = {
        "scale": args.scale,
        "duration": args.duration,
        "seed": 1,
        "skip_ms": 100.0,
        "panels": panels,
        "points": points,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
