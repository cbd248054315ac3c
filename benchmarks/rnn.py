"""RNN ensemble costs, side by side in one run.

    python benchmarks/rnn.py

1. Training cost per network and Adam step, 3-bit flip-flop (T = 60, batch 32, n = 64, one
   torch thread): our batched ensemble at K = 1, 8, 32 against one-at-a-time ``torch.nn.RNN``
   training. Ratio = ours per network / torch.nn.RNN (target <= 0.5 at K >= 8).
2. Pairwise metric costs: angular DSA and the QAP weight distance, per pair.
3. Sweep throughput with 1 and 2 Dask worker processes (4 conditions, cluster already running),
   and the speed-up (target >= 1.6x).
4. An estimate of the wall time of the paper's full study (3,400 networks, 50 per condition)
   on this machine from those figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.rnn import FlipFlop, TrainConfig  # noqa: E402
from engine.rnn.ensemble import EnsembleRNN, batches, masked_mse  # noqa: E402
from engine.rnn.metrics import dsa_matrix, pif_distance  # noqa: E402
from engine.rnn.sweep import SweepSpec, local_cluster, run_sweep  # noqa: E402


def ours_step_ms(task, k: int, n: int, steps: int) -> float:
    """Milliseconds per network per Adam step of a K-network ensemble."""
    cfg = TrainConfig(hidden=n, networks=k, batch=32)
    model = EnsembleRNN(k, task.n_in, n, task.n_out, list(range(k)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rngs = [np.random.default_rng(s) for s in range(k)]
    data = [batches(task, cfg, rngs) for _ in range(steps + 3)]
    for i, (x, y, m) in enumerate(data):
        if i == 3:
            t0 = time.perf_counter()
        opt.zero_grad()
        masked_mse(model(x), y, m).sum().backward()
        opt.step()
    return (time.perf_counter() - t0) * 1000 / steps / k


def torch_rnn_step_ms(task, n: int, steps: int) -> float:
    """Milliseconds per Adam step of one torch.nn.RNN (tanh) with a linear readout."""
    rnn = torch.nn.RNN(task.n_in, n, nonlinearity="tanh", batch_first=True)
    readout = torch.nn.Linear(n, task.n_out)
    opt = torch.optim.Adam([*rnn.parameters(), *readout.parameters()], lr=1e-3)
    rng = np.random.default_rng(0)
    data = [task.generate(32, rng) for _ in range(steps + 3)]
    for i, tr in enumerate(data):
        if i == 3:
            t0 = time.perf_counter()
        x, y, m = (torch.from_numpy(a) for a in (tr.inputs, tr.targets, tr.mask))
        opt.zero_grad()
        h, _ = rnn(x)
        ((readout(h) - y) ** 2 * m).sum().div(m.sum()).backward()
        opt.step()
    return (time.perf_counter() - t0) * 1000 / steps


def metric_costs(pairs: int = 3) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    trajs = [np.tanh(rng.normal(size=(16, 60, 64)).cumsum(1) * 0.1) for _ in range(pairs + 1)]
    t0 = time.perf_counter()
    dsa_matrix(trajs[:2])
    dsa_s = time.perf_counter() - t0
    w = [rng.normal(size=(64, 64)) for _ in range(pairs + 1)]
    t0 = time.perf_counter()
    for i in range(pairs):
        pif_distance(w[i], w[i + 1])
    return dsa_s, (time.perf_counter() - t0) / pairs


def sweep_seconds(workers: int) -> float:
    """Wall time of a 4-condition sweep on an already running cluster of ``workers`` processes."""
    spec = SweepSpec(task="flipflop", knob="channels", values=(1, 2, 3, 4), seeds=8, hidden=64, max_steps=400, lr=3e-3)
    tmp = Path(tempfile.mkdtemp())
    cluster = local_cluster(workers)
    try:
        t0 = time.perf_counter()
        run_sweep(spec, tmp / "s.zarr", scheduler=cluster.scheduler_address)
        return time.perf_counter() - t0
    finally:
        cluster.close()
        shutil.rmtree(tmp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed Adam steps per setting")
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = FlipFlop(channels=3, steps=60)
    single = torch_rnn_step_ms(task, 64, args.steps)
    print("1. per network and Adam step (3-bit flip-flop, T 60, batch 32, n 64, one thread):")
    print(f"   torch.nn.RNN one at a time: {single:6.2f} ms")
    per_k = {}
    for k in (1, 8, 32):
        per_k[k] = ours_step_ms(task, k, 64, args.steps)
        print(f"   batched ensemble, K = {k:2d}: {per_k[k]:6.2f} ms   ratio {per_k[k] / single:.2f}")
    dsa_pair, pif_pair = metric_costs()
    print("2. pairwise metrics (n 64, 16 trials x 60 steps):")
    print(f"   angular DSA: {dsa_pair:.2f} s per pair;  QAP weight distance: {pif_pair * 1000:.1f} ms per pair")
    one, two = sweep_seconds(1), sweep_seconds(2)
    print("3. sweep of 4 conditions x 8 networks (n 64, 400 steps each) on a running cluster:")
    print(f"   1 worker {one:.1f} s, 2 workers {two:.1f} s: speed-up {one / two:.2f}x")
    steps_to_converge = 2000  # measured: 1-bit flip-flop networks at lr 3e-3 converge in 1450-2550 steps
    train_h = 3400 * steps_to_converge * per_k[32] / 1000 / 3600
    pairs = 68 * 50 * 49 / 2
    metric_h = pairs * (dsa_pair + pif_pair) / 3600
    print("4. the paper's study, 3,400 networks in 68 conditions of 50, on this machine (2 cores):")
    print(
        f"   training ~{train_h:.1f} h on one core at {steps_to_converge} steps per network (harder tasks "
        f"take far more); pairwise metrics ~{metric_h:.1f} h ({pairs:,.0f} pairs); "
        f"with 2 workers ~{(train_h + metric_h) / (one / two):.1f} h in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
