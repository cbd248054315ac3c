"""Spiking-engine speed, side by side with Brian2 cpp_standalone in the same run.

    python benchmarks/spiking.py                 # ours only
    python benchmarks/spiking.py --vs brian2     # and Brian2, printing our/Brian2 ratios

Brian2 runs in its own environment (it needs numpy < 2); create it once with the command in
``benchmarks/peers/README.md``. Networks: COBA (speed-comparison variant) at scale 1 and 4 and
Brunel regime B (N = 12,500), 1 s of biological time, dt 0.1 ms, one thread each. Reported:
simulation-loop time (compile and build excluded; median of repeats) with float32 state (the
default) and float64 (Brian2's type), neuron updates/s,
synaptic events/s, and, for COBA scale 1, the wall time of a fresh process that runs the whole
job (ours: ``dynascope run`` writing a store; Brian2: its script with a warm build cache).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.chunk import concat  # noqa: E402
from engine.spiking import SpikingConfig, SpikingStream, population_rates  # noqa: E402

CASES = [("coba", "", 1.0), ("coba", "", 4.0), ("brunel", "B", 1.0)]
BRIAN2_PY = ROOT / ".venv-brian2" / "bin" / "python"
BRIAN2_SCRIPT = ROOT / "benchmarks" / "peers" / "brian2_net.py"


def ours(model: str, regime: str, scale: float, *, seed: int = 1, repeats: int = 3, precision: str = "float32") -> dict:
    """Loop time of our kernel (whole run in one chunk), median of ``repeats``."""
    cfg = SpikingConfig(
        model=model,
        regime=regime,
        scale=scale,
        duration=1.0,
        dt=0.1,
        seed=seed,
        chunk=1000.0,
        record_v=0,
        precision=precision,
    )
    SpikingStream(cfg.replace(duration=0.01, chunk=10.0)).__next__()  # load the compiled kernel
    loops, result = [], None
    for _ in range(repeats):
        stream = SpikingStream(cfg)
        chunks = list(stream.chunks())
        loops.append(stream.sim_seconds)
        result = (stream, chunks)
    stream, chunks = result
    ds = concat(chunks, stream.append_dims)
    out_degree = np.diff(stream.net.indptr)
    events = int(out_degree[ds["spike_neuron"].values].sum())
    steps = round(1000.0 / cfg.dt)
    loop = statistics.median(loops)
    return {
        "n_neurons": cfg.params.n,
        "n_synapses": stream.net.n_synapses,
        "loop_seconds": loop,
        "loop_all": loops,
        "neuron_updates_per_s": cfg.params.n * steps / loop,
        "synaptic_events_per_s": events / loop,
        "spikes": int(ds.sizes["spike"]),
        "rate_hz": population_rates(ds),
        "build_seconds": stream.build_seconds,
    }


def brian2(model: str, regime: str, scale: float, *, seed: int = 1, repeats: int = 3) -> dict:
    """Brian2 cpp_standalone: one warm-up call (build cache), then ``repeats`` timed calls."""
    args = [str(BRIAN2_PY), str(BRIAN2_SCRIPT), "--model", model, "--scale", str(scale), "--seed", str(seed)]
    if regime:
        args += ["--regime", regime]
    _call(args)  # warm the build cache
    runs = [_call(args) for _ in range(repeats)]
    best = runs[-1]
    best["loop_all"] = [r["loop_seconds"] for r in runs]
    best["loop_seconds"] = statistics.median(best["loop_all"])
    best["process_all"] = [r["process_seconds"] for r in runs]
    best["process_seconds"] = statistics.median(best["process_all"])
    return best


def _call(args: list[str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{args[1]} failed: {proc.stderr.strip().splitlines()[-1:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = elapsed
    return out


def our_process(repeats: int = 3) -> list[float]:
    """Wall time of fresh ``dynascope run`` processes (COBA scale 1, 1 s, writing a store)."""
    exe = Path(sys.executable).parent / "dynascope"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "explorer.cli"]
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats + 1):
            t0 = time.perf_counter()
            subprocess.run(
                [
                    *cmd,
                    "run",
                    "spiking",
                    "--model",
                    "coba",
                    "--scale",
                    "1",
                    "--duration",
                    "1",
                    "--out",
                    f"{tmp}/r{k}.zarr",
                    "--quiet",
                ],
                check=True,
                capture_output=True,
                cwd=ROOT,
            )
            if k:  # the first call may compile; later ones load the on-disk cache
                times.append(time.perf_counter() - t0)
    return times


def seed_spread(seeds: range, vs_brian2: bool) -> dict:
    out = {"ours": []}
    for seed in seeds:
        stream = SpikingStream(SpikingConfig(model="coba", seed=seed, chunk=1000.0, record_v=0))
        out["ours"].append(population_rates(concat(list(stream.chunks()), stream.append_dims)))
    if vs_brian2:
        out["brian2"] = [
            _call([str(BRIAN2_PY), str(BRIAN2_SCRIPT), "--model", "coba", "--scale", "1", "--seed", str(seed)])[
                "rate_hz"
            ]
            for seed in seeds
        ]
    return out


def _fmt_rates(r: dict) -> str:
    return "/".join(f"{r[p]:.2f}" for p in ("E", "I"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vs", choices=["brian2"], help="also run the peer and print ratios")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5, help="COBA seeds for the rate spread")
    parser.add_argument("--json", help="also write all figures to this JSON file")
    args = parser.parse_args()
    vs = args.vs == "brian2"
    if vs and not BRIAN2_PY.exists():
        raise SystemExit(f"no Brian2 environment; create it with the command in {BRIAN2_SCRIPT.parent}/README.md")
    results = {"cases": {}}
    header = (
        f"{'network':<16}{'N':>7}{'synapses':>11}{'loop s':>9}{'f64 s':>8}{'upd/s':>10}{'events/s':>10}"
        f"{'rates E/I Hz':>15}"
    )
    if vs:
        header += f"{'Brian2 s':>10}{'ratio':>7}{'f64 ratio':>10}{'Brian2 E/I':>14}"
    print(header)
    for model, regime, scale in CASES:
        name = f"{model}{'-' + regime if regime else ''} x{scale:g}"
        mine = ours(model, regime, scale, repeats=args.repeats)
        mine64 = ours(model, regime, scale, repeats=args.repeats, precision="float64")
        row = {"ours": mine, "ours_float64": mine64}
        line = (
            f"{name:<16}{mine['n_neurons']:>7}{mine['n_synapses']:>11}{mine['loop_seconds']:>9.3f}"
            f"{mine64['loop_seconds']:>8.3f}{mine['neuron_updates_per_s']:>10.2e}"
            f"{mine['synaptic_events_per_s']:>10.2e}{_fmt_rates(mine['rate_hz']):>15}"
        )
        if vs:
            peer = brian2(model, regime, scale, repeats=args.repeats)
            row["brian2"] = peer
            row["loop_ratio"] = mine["loop_seconds"] / peer["loop_seconds"]
            row["loop_ratio_float64"] = mine64["loop_seconds"] / peer["loop_seconds"]
            line += (
                f"{peer['loop_seconds']:>10.3f}{row['loop_ratio']:>7.2f}{row['loop_ratio_float64']:>10.2f}"
                f"{_fmt_rates(peer['rate_hz']):>14}"
            )
        results["cases"][name] = row
        print(line, flush=True)
    proc = our_process(args.repeats)
    results["process"] = {"ours": proc}
    line = f"\nwhole process, COBA x1, 1 s: ours {statistics.median(proc):.2f} s (dynascope run, store written)"
    if vs:
        peer_proc = results["cases"]["coba x1"]["brian2"]["process_all"]
        results["process"]["brian2"] = peer_proc
        ratio = statistics.median(proc) / statistics.median(peer_proc)
        results["process"]["ratio"] = ratio
        line += f"; Brian2 warm {statistics.median(peer_proc):.2f} s; ratio {ratio:.2f}"
    print(line)
    spread = seed_spread(range(1, args.seeds + 1), vs)
    results["seed_spread"] = spread
    for who, rates in spread.items():
        e = [r["E"] for r in rates]
        i = [r["I"] for r in rates]
        print(
            f"COBA x1 rates over seeds 1-{args.seeds}, {who:>6}: E {np.mean(e):.2f} ± {np.std(e):.2f} Hz, "
            f"I {np.mean(i):.2f} ± {np.std(i):.2f} Hz"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
