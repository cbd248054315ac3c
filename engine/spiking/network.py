"""Building a network: random connectivity in CSR form, initial state, the Poisson kick.

Connectivity is drawn by compiled code from its own seed (numba's generator), initial
potentials and kick spikes by ``numpy.random.Generator``; sub-seeds come from one
``SeedSequence(seed)``, so the same config and seed always give the same network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from engine.spiking.config import LIFParams

__all__ = ["Network", "build_network"]


@dataclass
class Network:
    """A built network (arrays shared by the numba kernel and its numpy twin)."""

    indptr: np.ndarray  # (n + 1,) int64 — CSR row pointers, row = presynaptic neuron
    indices: np.ndarray  # (n_synapses,) int32 — postsynaptic targets, sorted within a row
    pre_channel: np.ndarray  # (n,) int8 — 0 excitatory, 1 inhibitory
    population: np.ndarray  # (n,) int8 — 0 E, 1 I
    v0: np.ndarray  # (n,) float64 mV
    stim_step: np.ndarray  # (n_kick_spikes,) int64 — kick spikes, sorted by step
    stim_src: np.ndarray  # (n_kick_spikes,) int32
    stim_indptr: np.ndarray  # (n_sources + 1,) int64
    stim_indices: np.ndarray  # (n_kick_synapses,) int32

    @property
    def n(self) -> int:
        return self.population.shape[0]

    @property
    def n_synapses(self) -> int:
        return int(self.indices.shape[0])


@njit(cache=True)
def _seed(seed):
    np.random.seed(seed)


@njit(cache=True)
def _sample_row(n_from, k, marks, out):
    """k distinct integers of [0, n_from), written to ``out`` in increasing order."""
    if 4 * k > n_from:  # dense: selection sampling (Knuth's algorithm S), already sorted
        chosen = 0
        for i in range(n_from):
            if (n_from - i) * np.random.random() < k - chosen:
                out[chosen] = i
                chosen += 1
                if chosen == k:
                    break
        return
    chosen = 0
    while chosen < k:  # sparse: rejection against a mark array, then sort
        i = np.random.randint(0, n_from)
        if not marks[i]:
            marks[i] = True
            out[chosen] = i
            chosen += 1
    for c in range(k):
        marks[out[c]] = False
    out[:k].sort()


@njit(cache=True)
def _probability_graph(seed, n_pre, n_post, p):
    """Each pair connected with probability p: per row a Binomial(n_post, p) count of targets."""
    _seed(seed)
    counts = np.empty(n_pre, np.int64)
    for i in range(n_pre):
        counts[i] = np.random.binomial(n_post, p)
    indptr = np.zeros(n_pre + 1, np.int64)
    indptr[1:] = np.cumsum(counts)
    indices = np.empty(indptr[-1], np.int32)
    marks = np.zeros(n_post, np.bool_)
    buf = np.empty(n_post, np.int64)
    for i in range(n_pre):
        k = counts[i]
        _sample_row(n_post, k, marks, buf)
        indices[indptr[i] : indptr[i + 1]] = buf[:k]
    return indptr, indices


@njit(cache=True)
def _indegree_graph(seed, n_exc, n_inh, c_exc, c_inh):
    """Every neuron receives exactly c_exc inputs from E and c_inh from I; returned by source."""
    _seed(seed)
    n = n_exc + n_inh
    k_in = c_exc + c_inh
    pre = np.empty(n * k_in, np.int32)  # sources of each target, target-major
    marks_e = np.zeros(max(n_exc, 1), np.bool_)
    marks_i = np.zeros(max(n_inh, 1), np.bool_)
    buf = np.empty(max(n_exc, n_inh, 1), np.int64)
    for j in range(n):
        _sample_row(n_exc, c_exc, marks_e, buf)
        for c in range(c_exc):
            pre[j * k_in + c] = buf[c]
        _sample_row(n_inh, c_inh, marks_i, buf)
        for c in range(c_inh):
            pre[j * k_in + c_exc + c] = n_exc + buf[c]
    # counting sort by source; targets come out increasing within each row
    indptr = np.zeros(n + 1, np.int64)
    for e in range(pre.shape[0]):
        indptr[pre[e] + 1] += 1
    for i in range(n):
        indptr[i + 1] += indptr[i]
    fill = indptr[:-1].copy()
    indices = np.empty(pre.shape[0], np.int32)
    for j in range(n):
        for c in range(k_in):
            i = pre[j * k_in + c]
            indices[fill[i]] = j
            fill[i] += 1
    return indptr, indices


def build_network(params: LIFParams, *, seed: int, dt: float) -> Network:
    """Draw the network of ``params`` for ``seed`` (dt in ms places the kick spikes)."""
    graph_seed, v_seed, kick_seed = (
        int(s.generate_state(1)[0] % (2**31 - 1)) for s in np.random.SeedSequence(seed).spawn(3)
    )
    n = params.n
    if params.connectivity == "indegree":
        indptr, indices = _indegree_graph(graph_seed, params.n_exc, params.n_inh, params.c_exc, params.c_inh)
    else:
        indptr, indices = _probability_graph(graph_seed, n, n, params.p_conn)
    population = np.zeros(n, np.int8)
    population[params.n_exc :] = 1
    rng = np.random.default_rng(v_seed)
    if params.v_init == "normal":
        v0 = rng.normal(params.v_init_a, params.v_init_b, n)
    else:
        v0 = rng.uniform(params.v_init_a, params.v_init_b, n)
    stim = _kick(params, kick_seed, n, dt)
    return Network(indptr, indices, population.copy(), population, v0, *stim)


def _kick(params: LIFParams, seed: int, n: int, dt: float):
    """Spike steps of the kick sources and their connections to the network."""
    m = params.kick_sources if params.kick_rate > 0 and params.kick_duration > 0 else 0
    rng = np.random.default_rng(seed)
    steps, srcs = [], []
    indptr = np.zeros(m + 1, np.int64)
    rows = []
    for src in range(m):
        count = rng.poisson(params.kick_rate * params.kick_duration * 1e-3)
        times = rng.uniform(0.0, params.kick_duration, count)
        steps.append(np.floor(times / dt).astype(np.int64))
        srcs.append(np.full(count, src, np.int32))
        targets = np.flatnonzero(rng.random(n) < params.kick_p).astype(np.int32)
        rows.append(targets)
        indptr[src + 1] = indptr[src] + targets.size
    if m:
        step = np.concatenate(steps)
        src = np.concatenate(srcs)
        order = np.lexsort((src, step))
        return step[order], src[order], indptr, np.concatenate(rows)
    return np.zeros(0, np.int64), np.zeros(0, np.int32), indptr, np.zeros(0, np.int32)
