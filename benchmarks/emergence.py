"""Emergence-run costs, side by side in one run.

    python benchmarks/emergence.py [--intervals 8] [--repeats 20]

1. Probe overhead: for each task at its default model and probe interval, the time spent
   probing as a share of the time spent training (target < 10%), over the first ``--intervals``
   probe intervals, on one torch thread.
2. Fit time per curve: the five-parameter emergence law and the logistic step fitted by
   :mod:`engine.emergence.fits` (variable projection, a deterministic grid of starts, bounded
   refinement), against a plain ``scipy.optimize.curve_fit`` of the same law from one generic
   start, on the same noisy synthetic curves (80 and 200 points): milliseconds, the ratio, and the
   R² each reaches.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.emergence.config import TASKS, EmergenceConfig  # noqa: E402
from engine.emergence.fits import emergence_law, fit_emergence_law, fit_logistic, logistic  # noqa: E402
from engine.emergence.training import EmergenceStream  # noqa: E402


def probe_share(task: str, intervals: int) -> tuple[float, float, int]:
    """(probe seconds / train seconds, ms per training step, probe interval) over ``intervals`` chunks."""
    cfg = EmergenceConfig.for_task(task)
    stream = EmergenceStream(cfg)
    stream.next_chunk()  # warm-up: the step-0 probe and the first interval
    train0, probe0, step0 = stream.train_seconds, stream.probe_seconds, stream.step
    for _ in range(intervals):
        stream.next_chunk()
    train = stream.train_seconds - train0
    probe = stream.probe_seconds - probe0
    return probe / train, 1000 * train / (stream.step - step0), cfg.probe_every


def curves(n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 2000, n)
    peak = emergence_law(t, A=40.0, lam=0.08, gamma=0.05, t0=2.0, K=5.0)
    climb = emergence_law(t, A=12.0, lam=0.0, gamma=0.02, t0=3.0, K=4.0)
    step = logistic(t, lo=0.05, hi=0.95, midpoint=900.0, width=40.0)
    return {
        "law, early peak": (t, peak + rng.normal(0, 0.02 * np.ptp(peak), n)),
        "law, log increase": (t, climb + rng.normal(0, 0.02 * np.ptp(climb), n)),
        "logistic step": (t, step + rng.normal(0, 0.02, n)),
    }


def plain_curve_fit(t: np.ndarray, y: np.ndarray) -> float:
    """R² of scipy's curve_fit of the law from one generic start (the peer)."""
    from scipy.optimize import curve_fit

    p0 = (float(np.ptp(y)), 0.01, 1.0 / max(float(t.max()), 1.0), 1.0, float(y[0]))
    bounds = ([-np.inf, 0.0, 1e-9, 1.0, -np.inf], [np.inf, np.inf, np.inf, np.inf, np.inf])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, _ = curve_fit(emergence_law, t, y, p0=p0, bounds=bounds, maxfev=20000)
    except RuntimeError:
        return float("nan")
    resid = y - emergence_law(t, *p)
    return 1.0 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--intervals", type=int, default=8, help="probe intervals timed per task")
    parser.add_argument("--repeats", type=int, default=20, help="repeats per fit timing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("probe overhead at each task's default model and interval (one torch thread):")
    print(f"{'task':>11} {'interval':>9} {'ms/step':>8} {'probe/train':>12}")
    for task in TASKS:
        share, ms, every = probe_share(task, args.intervals)
        print(f"{task:>11} {every:>9} {ms:8.2f} {100 * share:11.1f}%   (target < 10%)")
    print("\nfit time per curve (median), ours vs scipy curve_fit from one start:")
    print(f"{'curve':>18} {'points':>6} {'ours ms':>8} {'R2':>6} {'curve_fit ms':>12} {'R2':>6} {'ratio':>6}")
    for n in (80, 200):
        for name, (t, y) in curves(n).items():
            if name == "logistic step":
                ms, fit = timed(lambda t=t, y=y: fit_logistic(t, y), args.repeats)
                print(f"{name:>18} {n:>6} {ms:8.1f} {fit.r2:6.3f} {'':>12} {'':>6} {'':>6}")
                continue
            ms, fit = timed(lambda t=t, y=y: fit_emergence_law(t, y), args.repeats)
            peer_ms, peer_r2 = timed(lambda t=t, y=y: plain_curve_fit(t, y), args.repeats)
            print(f"{name:>18} {n:>6} {ms:8.1f} {fit.r2:6.3f} {peer_ms:12.1f} {peer_r2:6.3f} {ms / peer_ms:6.2f}")


if __name__ == "__main__":
    main()
