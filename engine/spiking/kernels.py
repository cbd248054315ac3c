"""The numba kernel: advances a LIF network by many time steps in one compiled call.

One step, for every neuron i (the numpy twin in :mod:`engine.spiking.reference` does the same
operations in the same order, so both give the same spikes bit for bit):

1. ``r = max(refr - 1, 0)``; synaptic input arriving now is read from the delay ring slot
   ``step % D`` (and the slot cleared); external Poisson counts were added there just before.
2. state update (``kind``): ``coba`` forward Euler with conductances in units of g_L,
   ``cuba`` exponential Euler with current-like synaptic variables, ``delta`` exact leak plus
   instantaneous jumps. While ``r > 0`` v stays at reset (delta jumps are lost, conductances
   still integrate). Synaptic variables then decay by their exact factors.
3. threshold ``v > v_th`` (when not refractory): reset and refractory countdown, in the same
   vectorised loop, which flags spikes in ``fired``; then a scan of the flags (eight at a time)
   records each spike and propagates it through its CSR row into ring slot ``step % D``, which
   is read again ``D`` steps later (D = round(delay / dt) + 1, Brian2's timing).

Single-thread speed comes from keeping the whole chunk inside one compiled call, a branch-free
update loop that LLVM vectorises (float32 by default), and a flag scan that skips silent words.

``consts`` holds, in the state's float type: dt/tau_m, E_L, v_th, v_reset, E_exc, E_inh,
drive, exp(-dt/tau_e), exp(-dt/tau_i), exp(-dt/tau_m).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["advance", "poisson_cdf", "poisson_draw", "KIND"]

KIND = {"coba": 0, "cuba": 1, "delta": 2}

# splitmix64 constants: a counter-based generator, so the Poisson input of neuron i at step s
# is a pure function of (seed, s, i) — independent of chunking and of the backend.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_SUB = np.uint64(64)  # at most 64 sub-draws per neuron and step
_TWO53 = 1.0 / 9007199254740992.0
POISSON_PART = 30.0  # Poisson(lam) is drawn as a sum of Poisson(lam / n) with lam / n <= 30


@njit(cache=True, inline="always")
def _uniform(key, counter):
    z = key + counter * _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return np.float64(z >> _S11) * _TWO53


def poisson_cdf(lam: float) -> np.ndarray:
    """Cumulative probabilities of Poisson(lam), k = 0, 1, ... until the tail is below 1e-17."""
    p = np.exp(-lam)
    f = p
    cdf = [f]
    k = 0
    while k < 1000 and (k < lam or p > 1e-17 * f):
        k += 1
        p = p * lam / k
        f = f + p
        cdf.append(f)
    return np.array(cdf)


@njit(cache=True, inline="always")
def poisson_draw(key, counter, cdf, n_parts):
    """Poisson(n_parts * lam_part): n_parts inversions of counter-indexed uniforms on ``cdf``."""
    total = 0
    last = cdf.shape[0] - 1
    for j in range(n_parts):
        u = _uniform(key, counter * _SUB + np.uint64(j))
        k = 0
        while k < last and u > cdf[k]:
            k += 1
        total += k
    return total


@njit(cache=True, nogil=True, boundscheck=False)
def advance(
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
    """Advance ``n_steps`` steps (global index ``step0``, ``local0`` within the chunk).

    Returns ``(steps_done, n_spikes, stim_pos)``; stops early when the spike buffers might
    overflow in the next step, so the caller can grow them and call again.
    """
    n = v.shape[0]
    capacity = spike_step.shape[0]
    dt_tau, e_l, v_th, v_reset = consts[0], consts[1], consts[2], consts[3]
    e_exc, e_inh, drive = consts[4], consts[5], consts[6]
    decay_e, decay_i, decay_m = consts[7], consts[8], consts[9]
    n_u = np.uint64(n)
    n_words = (n + 7) // 8
    fired = np.zeros(n_words * 8, np.uint8)
    fired_words = fired.view(np.uint64)
    for s in range(n_steps):
        if n_spikes + n > capacity:
            return s, n_spikes, stim_pos
        step = step0 + s
        slot = step % n_delay
        ring_e = ring[slot, 0]
        ring_i = ring[slot, 1]
        # -- external Poisson input into the arriving slot
        if n_parts > 0:
            base = np.uint64(step) * n_u
            for i in range(n):
                k = poisson_draw(key, base + np.uint64(i), cdf, n_parts)
                if k > 0:
                    ring_e[i] += ext_w * k
        # -- state update, threshold and reset, vectorised over neurons; fired[i] flags spikes
        if kind == 0:
            for i in range(n):
                r = refr[i] - 1
                r = r if r > 0 else 0
                gei = ge[i] + ring_e[i]
                gii = gi[i] + ring_i[i]
                ring_e[i] = 0
                ring_i[i] = 0
                vi = v[i]
                vn = vi + (gei * (e_exc - vi) + gii * (e_inh - vi) - (vi - e_l) + drive) * dt_tau
                vn = vi if r > 0 else vn
                f = (vn > v_th) & (r == 0)
                v[i] = v_reset if f else vn
                refr[i] = n_ref if f else r
                fired[i] = f
                ge[i] = gei * decay_e
                gi[i] = gii * decay_i
        elif kind == 1:
            for i in range(n):
                r = refr[i] - 1
                r = r if r > 0 else 0
                gei = ge[i] + ring_e[i]
                gii = gi[i] + ring_i[i]
                ring_e[i] = 0
                ring_i[i] = 0
                vi = v[i]
                v_inf = e_l + gei + gii + drive
                vn = v_inf + (vi - v_inf) * decay_m
                vn = vi if r > 0 else vn
                f = (vn > v_th) & (r == 0)
                v[i] = v_reset if f else vn
                refr[i] = n_ref if f else r
                fired[i] = f
                ge[i] = gei * decay_e
                gi[i] = gii * decay_i
        else:
            v_inf = e_l + drive
            for i in range(n):
                r = refr[i] - 1
                r = r if r > 0 else 0
                jump = ring_e[i] + ring_i[i]
                ring_e[i] = 0
                ring_i[i] = 0
                vi = v[i]
                vn = v_inf + (vi - v_inf) * decay_m + jump
                vn = vi if r > 0 else vn
                f = (vn > v_th) & (r == 0)
                v[i] = v_reset if f else vn
                refr[i] = n_ref if f else r
                fired[i] = f
        # -- record and propagate spikes (scan the flags eight at a time)
        b = (local0 + s) // steps_per_sample
        for word in range(n_words):
            if fired_words[word] == 0:
                continue
            for i in range(word * 8, min(n, word * 8 + 8)):
                if fired[i]:
                    spike_step[n_spikes] = step
                    spike_neuron[n_spikes] = i
                    n_spikes += 1
                    counts[b, population[i]] += 1
                    ch = pre_channel[i]
                    wi = w[ch]
                    target = ring[slot, ch]
                    for j in range(indptr[i], indptr[i + 1]):
                        target[indices[j]] += wi
        # -- scheduled external spikes (e.g. the initial Poisson kick)
        while stim_pos < stim_step.shape[0] and stim_step[stim_pos] == step:
            src = stim_src[stim_pos]
            for j in range(stim_indptr[src], stim_indptr[src + 1]):
                ring_e[stim_indices[j]] += stim_w
            stim_pos += 1
        # -- sample membrane potentials at the end of each sample interval
        if (local0 + s + 1) % steps_per_sample == 0:
            for r_ in range(record_idx.shape[0]):
                v_samples[b, r_] = v[record_idx[r_]]
    return n_steps, n_spikes, stim_pos
