"""Spiking runs as streams of chunks.

>>> cfg = SpikingConfig(model="brunel", regime="B", scale=0.1, duration=0.2)
>>> stream = SpikingStream(cfg)
>>> first = next(stream)          # an xr.Dataset covering cfg.chunk ms
>>> stream.update(eta=2.0)        # takes effect at the next chunk
>>> ds = run(cfg)                 # or: the whole run as one dataset
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

import engine
from engine.chunk import Chunk, concat
from engine.spiking.config import UPDATABLE, LIFParams, SpikingConfig
from engine.spiking.kernels import KIND, POISSON_PART, advance, poisson_cdf
from engine.spiking.network import Network, build_network
from engine.spiking.reference import advance_numpy
from engine.stream import ChunkStream, RunStopped

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["SpikingStream", "run", "POPULATIONS"]

POPULATIONS = ("E", "I")
APPEND_DIMS = ("spike", "time", "chunk")
BACKENDS = {"numba": advance, "numpy": advance_numpy}


def _record_indices(cfg: SpikingConfig) -> np.ndarray:
    """Neurons whose potential is sampled: spread evenly over E, then over I."""
    p = cfg.params
    if cfg.record_ids:
        return np.array(cfg.record_ids, dtype=np.int64)
    k = cfg.record_v
    k_inh = min(p.n_inh, k // 4 if p.n_inh else 0)
    k_exc = k - k_inh
    exc = np.linspace(0, p.n_exc - 1, k_exc).round().astype(np.int64) if k_exc else np.zeros(0, np.int64)
    inh = (p.n_exc + np.linspace(0, p.n_inh - 1, k_inh).round().astype(np.int64)) if k_inh else np.zeros(0, np.int64)
    return np.unique(np.concatenate([exc, inh]))


class SpikingStream(ChunkStream):
    """A LIF network advanced one chunk at a time; see :mod:`engine.spiking.kernels`."""

    engine = "spiking"
    append_dims = APPEND_DIMS

    def __init__(self, config: SpikingConfig, *, backend: str = "numba") -> None:
        super().__init__(config)
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not allowed: choose one of {', '.join(BACKENDS)}")
        self._advance = BACKENDS[backend]
        self.params: LIFParams = config.params
        cfg, p = config, config.params
        self.dtype = np.dtype(cfg.precision)
        t0 = time.perf_counter()
        self.net: Network = build_network(p, seed=cfg.seed, dt=cfg.dt)
        self.build_seconds = time.perf_counter() - t0
        n = p.n
        self.v = self.net.v0.astype(self.dtype)
        self.ge = np.zeros(n, self.dtype)
        self.gi = np.zeros(n, self.dtype)
        self.refr = np.zeros(n, np.int32)
        self.n_delay = max(1, round(p.delay / cfg.dt) + 1)
        self.ring = np.zeros((self.n_delay, 2, n), self.dtype)
        self.n_ref = round(p.t_ref / cfg.dt)
        self.key = np.uint64(np.random.SeedSequence(cfg.seed).spawn(4)[3].generate_state(1, np.uint64)[0])
        self.record_idx = _record_indices(cfg)
        self.step = 0
        self.total_steps = cfg.total_samples * cfg.steps_per_sample
        self.stim_pos = 0
        self.sim_seconds = 0.0
        self.spikes_total = 0
        self._spike_capacity = max(4 * n, 1024)
        self._set_params(p)
        self._static = self._static_chunk()

    @property
    def population_labels(self) -> np.ndarray:
        """Population label ("E" or "I") of every neuron."""
        return np.array(POPULATIONS)[self.net.population]

    # -- parameters -----------------------------------------------------------------------
    def _set_params(self, p: LIFParams) -> None:
        dt, f = self.config.dt, self.dtype.type
        self.params = p
        self.kind = KIND[p.synapse]
        self.consts = np.array(
            [
                dt / p.tau_m,
                p.v_rest,
                p.v_th,
                p.v_reset,
                p.e_exc,
                p.e_inh,
                p.drive,
                math.exp(-dt / p.tau_e),
                math.exp(-dt / p.tau_i),
                math.exp(-dt / p.tau_m),
            ],
            dtype=self.dtype,
        )
        self.w = np.array([p.we, p.wi], dtype=self.dtype)
        lam = p.ext_inputs * p.ext_rate * dt * 1e-3
        self.n_parts = math.ceil(lam / POISSON_PART) if lam > 0 else 0
        if self.n_parts > 64:
            raise ValueError(
                f"ext_rate={p.ext_rate:g} is out of range: ext_inputs x ext_rate x dt must be "
                f"<= {64 * POISSON_PART:g} expected input spikes per step"
            )
        self.cdf = poisson_cdf(lam / self.n_parts if self.n_parts else 0.0)
        self.ext_w = f(p.ext_weight)
        self.stim_w = f(p.kick_weight)

    def _validate_updates(self, changes: dict[str, Any]) -> None:
        unknown = sorted(set(changes) - set(UPDATABLE))
        if unknown:
            raise ValueError(
                f"{unknown[0]!r} cannot change during a run: "
                f"updatable are {', '.join(UPDATABLE)} (others restart the run)"
            )
        self.params.with_changes(**changes)

    def _apply_updates(self, changes: dict[str, Any]) -> None:
        self._set_params(self.params.with_changes(**changes))

    # -- chunks ---------------------------------------------------------------------------
    def _static_chunk(self) -> Chunk:
        """Variables every chunk carries unchanged: neuron labels, recorded subset, populations."""
        c = Chunk(attrs=self._attrs())
        c.add("neuron", "neuron", np.arange(self.params.n, dtype=np.int32), "neuron index", "", coord=True)
        c.add(
            "population",
            "neuron",
            np.array(POPULATIONS)[self.net.population],
            "population of each neuron",
            "",
            coord=True,
        )
        c.add("recorded", "recorded", self.record_idx.astype(np.int32), "recorded neuron", "", coord=True)
        c.add("pop", "pop", np.array(POPULATIONS), "population", "", coord=True)
        return c

    def _attrs(self) -> dict:
        cfg = self.config
        return {
            "engine": "spiking",
            "version": engine.__version__,
            "config": cfg.to_json(),
            "seed": cfg.seed,
            "model": cfg.model,
            "regime": cfg.regime,
            "n_neurons": cfg.params.n,
            "n_synapses": self.net.n_synapses,
            "dt_ms": cfg.dt,
            "build_seconds": self.build_seconds,
            "title": _title(cfg),
        }

    def _next_chunk(self) -> Chunk:
        cfg = self.config
        sps = cfg.steps_per_sample
        n_steps = min(cfg.samples_per_chunk * sps, self.total_steps - self.step)
        n_samples = n_steps // sps
        counts = np.zeros((n_samples, 2), np.int64)
        v_samples = np.zeros((n_samples, self.record_idx.size), self.dtype)
        spike_step = np.empty(self._spike_capacity, np.int64)
        spike_neuron = np.empty(self._spike_capacity, np.int32)
        n_spikes, done = 0, 0
        net = self.net
        t0 = time.perf_counter()
        while done < n_steps:
            steps, n_spikes, self.stim_pos = self._advance(
                n_steps - done,
                self.step + done,
                done,
                self.kind,
                self.consts,
                self.n_ref,
                self.n_delay,
                self.v,
                self.ge,
                self.gi,
                self.refr,
                self.ring,
                net.indptr,
                net.indices,
                net.pre_channel,
                self.w,
                self.key,
                self.cdf,
                self.n_parts,
                self.ext_w,
                net.stim_step,
                net.stim_src,
                net.stim_indptr,
                net.stim_indices,
                self.stim_w,
                self.stim_pos,
                net.population,
                sps,
                counts,
                self.record_idx,
                v_samples,
                spike_step,
                spike_neuron,
                n_spikes,
            )
            done += steps
            if done < n_steps:  # buffers nearly full: grow and go on
                self._spike_capacity *= 2
                spike_step = _grown(spike_step[:n_spikes], self._spike_capacity)
                spike_neuron = _grown(spike_neuron[:n_spikes], self._spike_capacity)
        elapsed = time.perf_counter() - t0
        self.sim_seconds += elapsed
        chunk = self._make_chunk(n_steps, counts, v_samples, spike_step[:n_spikes], spike_neuron[:n_spikes], elapsed)
        self.step += n_steps
        self.spikes_total += n_spikes
        if self.step >= self.total_steps:
            self.done = True
        self._check_health(n_spikes, n_steps)
        return chunk

    def _check_health(self, n_spikes: int, n_steps: int) -> None:
        """Stop the run on a numerical blow-up; the chunk just made is not emitted."""
        if not np.isfinite(self.v).all():
            self.done = True
            raise RunStopped(f"membrane potential became non-finite by t={self.step * self.config.dt:g} ms")
        rate = n_spikes / (self.params.n * n_steps * self.config.dt * 1e-3)
        if rate > self.config.max_rate:
            self.done = True
            raise RunStopped(
                f"mean rate {rate:.0f} Hz exceeded max_rate={self.config.max_rate:g} Hz "
                f"by t={self.step * self.config.dt:g} ms"
            )

    def _make_chunk(self, n_steps, counts, v_samples, spike_step, spike_neuron, elapsed) -> Chunk:
        cfg, p = self.config, self.params
        dt, interval = cfg.dt, cfg.sample_interval
        first_sample = self.step // cfg.steps_per_sample
        times = (first_sample + 1 + np.arange(counts.shape[0])) * interval
        sizes = np.array([p.n_exc, max(p.n_inh, 1)], np.float64)
        c = Chunk(dict(self._static.columns), self._static.coords, self._static.attrs)
        c.add("time", "time", times, "time", "ms", coord=True)
        c.add("chunk", "chunk", np.array([self.chunks_emitted]), "chunk index", "", coord=True)
        c.add("spike_time", "spike", (spike_step + 1) * dt, "spike time", "ms")
        c.add("spike_neuron", "spike", spike_neuron, "spiking neuron", "")
        c.add("rate", ("pop", "time"), (counts / (sizes * interval * 1e-3)).T, "population rate", "Hz")
        c.add("v", ("time", "recorded"), v_samples, "membrane potential", "mV")
        log = {
            "chunk_end": ((self.step + n_steps) * dt, "end of chunk", "ms"),
            "sim_seconds": (elapsed, "simulation loop time", "s"),
            "g": (p.g, "relative inhibition |wi|/we", ""),
            "eta": (p.eta, "external rate / threshold rate", ""),
            "drive": (p.drive, "constant drive", "mV"),
            "ext_rate": (p.ext_rate, "external input rate", "Hz"),
            "we": (p.we, "excitatory weight", "g_L | mV"),
            "wi": (p.wi, "inhibitory weight", "g_L | mV"),
        }
        for name, (value, long_name, units) in log.items():
            c.add(name, "chunk", np.array([value], np.float64), long_name, units)
        return c


def _grown(filled: np.ndarray, capacity: int) -> np.ndarray:
    out = np.empty(capacity, filled.dtype)
    out[: filled.size] = filled
    return out


def _title(cfg: SpikingConfig) -> str:
    p = cfg.params
    name = f"{cfg.model} {cfg.regime}".strip()
    return (
        f"{name}: N={p.n} ({p.n_exc} E, {p.n_inh} I), g={p.g:.3g}, eta={p.eta:.3g}, "
        f"drive={p.drive:g} mV, dt={cfg.dt:g} ms, seed={cfg.seed}"
    )


def run(config: SpikingConfig, *, backend: str = "numba") -> xr.Dataset:
    """The whole run in memory (the concatenation of its chunks)."""
    stream = SpikingStream(config, backend=backend)
    ds = concat(list(stream.chunks()), APPEND_DIMS).to_dataset()
    ds.attrs["sim_seconds"] = stream.sim_seconds
    return ds
