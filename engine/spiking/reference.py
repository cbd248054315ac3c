"""Plain-numpy reference twin of :func:`engine.spiking.kernels.advance`.

The same operations in the same order and float type, vectorised over neurons, so a test can
demand spike-for-spike equality with the compiled kernel. Slow; for small networks only.
"""

from __future__ import annotations

import numpy as np

from engine.spiking.kernels import POISSON_PART  # noqa: F401  (documents the shared scheme)

__all__ = ["advance_numpy"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _uniform(key: np.uint64, counter: np.ndarray) -> np.ndarray:
    z = key + counter * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _poisson(key, counters: np.ndarray, cdf: np.ndarray, n_parts: int) -> np.ndarray:
    total = np.zeros(counters.shape[0], dtype=np.int64)
    for j in range(n_parts):
        u = _uniform(key, counters * np.uint64(64) + np.uint64(j))
        total += np.minimum(np.searchsorted(cdf, u, side="left"), cdf.shape[0] - 1)
    return total


def advance_numpy(
    n_steps,
    step0,
    local0,
    kind,
    consts,
    n_ref,
    n_delay,
    v,
    ge,
    gi,
    refr,
    ring,
    indptr,
    indices,
    pre_channel,
    w,
    key,
    cdf,
    n_parts,
    ext_w,
    stim_step,
    stim_src,
    stim_indptr,
    stim_indices,
    stim_w,
    stim_pos,
    population,
    steps_per_sample,
    counts,
    record_idx,
    v_samples,
    spike_step,
    spike_neuron,
    n_spikes,
):
    """Same arguments, effects and return value as the numba kernel ``advance``."""
    n = v.shape[0]
    capacity = spike_step.shape[0]
    dt_tau, e_l, v_th, v_reset, e_exc, e_inh, drive, decay_e, decay_i, decay_m = consts
    neurons = np.arange(n, dtype=np.uint64)
    for s in range(n_steps):
        if n_spikes + n > capacity:
            return s, n_spikes, stim_pos
        step = step0 + s
        slot = step % n_delay
        ring_e, ring_i = ring[slot, 0], ring[slot, 1]
        if n_parts > 0:
            k = _poisson(key, np.uint64(step) * np.uint64(n) + neurons, cdf, n_parts)
            hit = k > 0
            ring_e[hit] += ext_w * k[hit]
        r = refr - 1
        r = np.where(r > 0, r, 0).astype(refr.dtype)
        if kind == 2:
            jump = ring_e + ring_i
            v_inf = e_l + drive
            vn = v_inf + (v - v_inf) * decay_m + jump
        else:
            gei = ge + ring_e
            gii = gi + ring_i
            if kind == 0:
                vn = v + (gei * (e_exc - v) + gii * (e_inh - v) - (v - e_l) + drive) * dt_tau
            else:
                v_inf = e_l + gei + gii + drive
                vn = v_inf + (v - v_inf) * decay_m
            ge[:] = gei * decay_e
            gi[:] = gii * decay_i
        ring_e[:] = 0
        ring_i[:] = 0
        v[:] = np.where(r > 0, v, vn)
        refr[:] = r
        b = (local0 + s) // steps_per_sample
        fired = np.flatnonzero((v > v_th) & (refr == 0))
        if fired.size:
            v[fired] = v_reset
            refr[fired] = n_ref
            spike_step[n_spikes : n_spikes + fired.size] = step
            spike_neuron[n_spikes : n_spikes + fired.size] = fired
            n_spikes += fired.size
            np.add.at(counts[b], population[fired], 1)
            for ch in (0, 1):
                src = fired[pre_channel[fired] == ch]
                if src.size:
                    targets = np.concatenate([indices[indptr[i] : indptr[i + 1]] for i in src])
                    np.add.at(ring[slot, ch], targets, w[ch])
        while stim_pos < stim_step.shape[0] and stim_step[stim_pos] == step:
            src = stim_src[stim_pos]
            np.add.at(ring_e, stim_indices[stim_indptr[src] : stim_indptr[src + 1]], stim_w)
            stim_pos += 1
        if (local0 + s + 1) % steps_per_sample == 0:
            v_samples[b] = v[record_idx]
    return n_steps, n_spikes, stim_pos
