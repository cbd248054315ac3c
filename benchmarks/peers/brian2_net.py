#!/usr/bin/env python3
"""Brian2 (cpp_standalone, 1 thread, float64) peer for the network benchmarks.

Standalone on purpose: it runs in its own virtual environment (see README.md
next to this file) and imports nothing from the project.  It builds one
network, runs it once, and prints one JSON object as the last line of stdout.

  python brian2_net.py --model {coba,brunel} [--scale S] [--regime B]
      [--duration SECONDS] [--dt MS] [--seed N] [--build-dir DIR]

The build directory is reused between calls: Brian2 only rewrites generated
files whose content changed and `make` only recompiles those, so a second
call with the same model/scale (/regime) is a warm build cache.  The seed is
read by the binary from an environment variable (see `seed_from_env`), so a
different seed does not change any generated file and needs no recompile.
"""

import argparse
import json
import os
import time
from pathlib import Path

import brian2 as b2
import numpy as np
from brian2 import ms, mV, second

HERE = Path(__file__).resolve().parent
SEED_ENV = "BRIAN2_BENCH_SEED"
# Brunel (2000) figure 8 panels: regime -> (g, eta)
REGIMES = {"A": (3.0, 2.0), "B": (6.0, 4.0), "C": (5.0, 2.0), "D": (4.5, 0.9)}


def seed_from_env():
    """Seed the binary's RNGs from $BRIAN2_BENCH_SEED at the start of main().

    Same effect as `b2.seed(N)` (generator k gets N + k), but `b2.seed(N)`
    writes N as a literal into main.cpp, so each new seed would recompile and
    relink main.cpp.  All randomness (connect, randn(), PoissonInput) is drawn
    inside the binary, after this point.
    """
    b2.device.insert_code(
        "main",
        f"""
{{
    const char* _s = getenv("{SEED_ENV}");
    const unsigned long _seed = _s ? strtoul(_s, NULL, 10) : 1UL;
    for (size_t _k = 0; _k < _random_generators.size(); _k++)
        _random_generators[_k].seed(_seed + _k);
}}""",
    )


def build_coba(scale):
    """Vogels & Abbott (2005) COBA, Brian2/BrainPy speed-comparison variant."""
    N = int(round(4000 * scale))
    N_E = int(round(0.8 * N))
    ns = dict(
        taum=20 * ms,
        taue=5 * ms,
        taui=10 * ms,
        Vt=-50 * mV,
        Vr=-60 * mV,
        El=-60 * mV,
        Erev_exc=0 * mV,
        Erev_inh=-80 * mV,
        I=20 * mV,
    )
    eqs = """
    dv/dt  = (ge*(Erev_exc-v) + gi*(Erev_inh-v) - (v-El) + I)*(1./taum) : volt (unless refractory)
    dge/dt = -ge/taue : 1
    dgi/dt = -gi/taui : 1
    """
    P = b2.NeuronGroup(N, eqs, threshold="v>Vt", reset="v = Vr", refractory=5 * ms, method="euler", namespace=ns)
    Ce = b2.Synapses(P[:N_E], P, on_pre="ge += 0.6")
    Ci = b2.Synapses(P[N_E:], P, on_pre="gi += 6.7")
    Ce.connect(p=80.0 / N)
    Ci.connect(p=80.0 / N)
    P.v = "(randn() * 5 - 55) * mV"
    P.ge = 0
    P.gi = 0
    return P, N_E, [Ce, Ci], [P, Ce, Ci]


def build_brunel(scale, regime):
    """Brunel (2000) model A, fixed in-degree, refractory neurons ignore input."""
    g, eta = REGIMES[regime]
    N_E, N_I = int(round(10000 * scale)), int(round(2500 * scale))
    C_E, C_I = int(round(0.1 * N_E)), int(round(0.1 * N_I))
    tau, theta, V_r, J = 20 * ms, 20 * mV, 10 * mV, 0.1 * mV
    nu_ext = eta * theta / (J * C_E * tau)  # eta * nu_thr
    ns = dict(tau=tau, theta=theta, V_r=V_r, J=J, g=g)
    P = b2.NeuronGroup(
        N_E + N_I,
        "dv/dt = -v/tau : volt (unless refractory)",
        threshold="v > theta",
        reset="v = V_r",
        refractory=2 * ms,
        method="exact",
        namespace=ns,
    )
    # Spikes arriving while the target is refractory are dropped (v is clamped).
    E = b2.Synapses(P[:N_E], P, on_pre="v_post += J*int(not_refractory_post)", delay=1.5 * ms, namespace=ns)
    I = b2.Synapses(P[N_E:], P, on_pre="v_post += -g*J*int(not_refractory_post)", delay=1.5 * ms, namespace=ns)
    # Fixed in-degree: for every target j, C distinct sources (no replacement).
    E.connect(i=f"k for k in sample(N_pre, size={C_E})")
    I.connect(i=f"k for k in sample(N_pre, size={C_I})")
    # C_ext = C_E independent Poisson inputs per neuron (binomial per step).
    ext = b2.PoissonInput(P, "v", C_E, nu_ext, weight="J*int(not_refractory)")
    P.v = "V_r + rand() * (theta - V_r)"
    return P, N_E, [E, I], [P, E, I, ext], ns


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["coba", "brunel"], required=True)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--regime", choices=sorted(REGIMES), default="B")
    ap.add_argument("--duration", type=float, default=1.0, help="seconds")
    ap.add_argument("--dt", type=float, default=0.1, help="ms")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--build-dir", default=None)
    a = ap.parse_args()

    tag = f"{a.model}-s{a.scale:g}" + (f"-{a.regime}" if a.model == "brunel" else "")
    build_dir = Path(a.build_dir or HERE / ".brian2-build" / tag).resolve()

    b2.prefs.logging.file_log = False
    b2.prefs.core.default_float_dtype = np.float64
    b2.prefs.devices.cpp_standalone.openmp_threads = 0  # single thread, no OpenMP
    b2.set_device("cpp_standalone", directory=str(build_dir), build_on_run=False)
    seed_from_env()
    b2.defaultclock.dt = a.dt * ms

    if a.model == "coba":
        P, N_E, syns, objs = build_coba(a.scale)
        ns = {}
    else:
        P, N_E, syns, objs, ns = build_brunel(a.scale, a.regime)
    mon = b2.SpikeMonitor(P, record=False)  # per-neuron spike counts only
    net = b2.Network(*objs, mon)
    net.run(a.duration * second, namespace=ns)

    os.environ[SEED_ENV] = str(a.seed)  # inherited by the binary
    t0 = time.perf_counter()
    b2.device.build(directory=str(build_dir), compile=True, run=True, with_output=False)
    build_seconds = time.perf_counter() - t0  # codegen + make + run binary

    counts = mon.count[:]
    rate_E = counts[:N_E].sum() / (N_E * a.duration)
    rate_I = counts[N_E:].sum() / ((len(P) - N_E) * a.duration)
    print(
        json.dumps(
            {
                "model": a.model,
                "scale": a.scale,
                **({"regime": a.regime} if a.model == "brunel" else {}),
                "n_neurons": int(len(P)),
                "n_synapses": int(sum(len(s) for s in syns)),
                "duration_s": a.duration,
                "dt_ms": a.dt,
                "seed": a.seed,
                # Brian2's own timer around Network::run() inside the binary (written
                # to results/last_run_info.txt, exposed as device._last_run_time).
                # Without OpenMP it is std::clock(), i.e. process CPU time of the loop.
                "loop_seconds": float(b2.device._last_run_time),
                "build_seconds": build_seconds,
                "rate_hz": {"E": float(rate_E), "I": float(rate_I)},
                "spikes": int(counts.sum()),
                "brian2_version": b2.__version__,
                # Brian2's breakdown of build_seconds: make, and the binary's whole
                # run (connect + init + loop + writing results).
                "timers": {"make_s": b2.device.timers["compile"]["make"], "binary_s": b2.device.timers["run_binary"]},
            }
        )
    )


if __name__ == "__main__":
    main()
