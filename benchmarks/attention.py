"""Attention-sink training costs, side by side in one run.

    python benchmarks/attention.py [--steps 200] [--sink-steps 3000]

1. Training steps/s of the default dashboard model (2 layers, 2 heads, d 64, batch 32,
   sequences of 32) on one CPU thread, for each attention variant.
2. The cost of the hook points: a step with every hook point off against the same model whose
   hook points are bypassed at the class level (the floor), and with the probe's hook points
   recording on every step. Target: off costs < 5% of a step.
3. The time from the start of a run until a head's sink score on non-trigger queries exceeds
   0.5 at a probe (probes every 25 steps, as in the dashboard; target < 60 s), with the step.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.transformer.model import ATTENTIONS, HookPoint  # noqa: E402
from engine.transformer.training import AttentionConfig, AttentionStream, _probe_names  # noqa: E402


def step_ms(cfg: AttentionConfig, steps: int, *, record: bool = False) -> float:
    """Median milliseconds per training step (after 5 warm-up steps)."""
    stream = AttentionStream(cfg)
    names = _probe_names(cfg.layers)
    times = []
    for i in range(steps + 5):
        t0 = time.perf_counter()
        if record:
            with stream.model.recording(names):
                stream._train_step()
        else:
            stream._train_step()
        if i >= 5:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def bypassed_ms(cfg: AttentionConfig, steps: int) -> float:
    """The same step with every hook point reduced to a bare identity call (the floor)."""
    saved = HookPoint.__call__
    HookPoint.__call__ = lambda self, x: x  # type: ignore[method-assign]
    try:
        return step_ms(cfg, steps)
    finally:
        HookPoint.__call__ = saved  # type: ignore[method-assign]


def time_to_sink(cfg: AttentionConfig, threshold: float = 0.5) -> tuple[float, int, float]:
    """Seconds and steps until a probe shows a head with non-trigger sink score > threshold."""
    t0 = time.perf_counter()
    stream = AttentionStream(cfg)
    best = 0.0
    for chunk in stream.chunks():
        scores = np.nan_to_num(chunk["sink_nontrigger"].values, nan=0.0)  # (probe, layer, head)
        best = max(best, float(scores.max()))
        if best > threshold:
            return time.perf_counter() - t0, int(chunk["probe"].values[-1]), best
    return float("nan"), stream.step, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per measurement")
    parser.add_argument("--sink-steps", type=int, default=3000, help="cap on steps while waiting for a sink")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = AttentionConfig()
    print(
        f"default model: {base.layers} layers x {base.heads} heads, d {base.width}, batch {base.batch}, "
        f"length {base.length}; one torch thread\n"
    )
    print(f"{'variant':>11} {'ms/step':>8} {'steps/s':>8}")
    for variant in ATTENTIONS:
        ms = step_ms(base.replace(attention=variant), args.steps)
        print(f"{variant:>11} {ms:8.1f} {1000 / ms:8.0f}")
    floor = bypassed_ms(base, args.steps)
    off = step_ms(base, args.steps)
    on = step_ms(base, args.steps, record=True)
    print("\nhook points (softmax):")
    print(f"  bypassed (floor)   {floor:6.2f} ms")
    print(f"  off                {off:6.2f} ms   cost {100 * (off / floor - 1):+.1f}% of a step (target < 5%)")
    print(f"  recording probes   {on:6.2f} ms   cost {100 * (on / floor - 1):+.1f}%")
    seconds, step, best = time_to_sink(base.replace(steps=args.sink_steps))
    print(
        f"\ntime to a sink score > 0.5 (softmax, AdamW lr {base.lr:g}): {seconds:.1f} s at step {step} "
        f"(best head {best:.2f}; target < 60 s)"
    )


if __name__ == "__main__":
    main()
