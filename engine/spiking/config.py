"""Configs of spiking runs: the LIF network parameters and the run settings around them.

Units: time in ms, voltage in mV, rates in Hz. Conductances (``synapse="coba"``) are in units
of the leak conductance g_L, so ``dv/dt = (ge (E_exc - v) + gi (E_inh - v) - (v - E_L) + I) / tau_m``;
current (``"cuba"``) weights are in mV of the synaptic variables, and delta (``"delta"``)
weights are instantaneous jumps of v in mV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from engine.config import Config, bounded, check_value, choice, integer, parse_text

__all__ = ["LIFParams", "SpikingConfig", "MODELS", "REGIMES", "UPDATABLE", "preset"]

MODELS = ("coba", "coba-pynn", "cuba", "brunel")
REGIMES = {  # Brunel (2000) figure 8: (g, eta) per panel
    "A": (3.0, 2.0),  # synchronous regular
    "B": (6.0, 4.0),  # asynchronous irregular
    "C": (5.0, 2.0),  # synchronous irregular, fast oscillation
    "D": (4.5, 0.9),  # synchronous irregular, slow oscillation
}
# Parameters a running network accepts between chunks (g and eta are derived names).
UPDATABLE = ("g", "eta", "drive", "ext_rate", "we", "wi", "ext_weight")
MAX_SYNAPSES = 400_000_000


@dataclass(frozen=True)
class LIFParams(Config):
    """A network of two populations (E then I) of leaky integrate-and-fire neurons."""

    n_exc: int = integer(3200, 1, 2_000_000, doc="excitatory neurons")
    n_inh: int = integer(800, 0, 500_000, doc="inhibitory neurons")
    synapse: str = choice("coba", ("coba", "cuba", "delta"), doc="synapse type")
    tau_m: float = bounded(20.0, 0.0, 1e4, lo_open=True, units="ms", doc="membrane time constant")
    v_rest: float = bounded(-60.0, -200.0, 200.0, units="mV", doc="leak reversal E_L")
    v_th: float = bounded(-50.0, -200.0, 200.0, units="mV", doc="spike threshold")
    v_reset: float = bounded(-60.0, -200.0, 200.0, units="mV", doc="reset potential")
    t_ref: float = bounded(5.0, 0.0, 1e3, units="ms", doc="refractory period (v clamped at reset)")
    tau_e: float = bounded(5.0, 0.0, 1e4, lo_open=True, units="ms", doc="excitatory synaptic decay")
    tau_i: float = bounded(10.0, 0.0, 1e4, lo_open=True, units="ms", doc="inhibitory synaptic decay")
    e_exc: float = bounded(0.0, -200.0, 200.0, units="mV", doc="excitatory reversal (coba)")
    e_inh: float = bounded(-80.0, -200.0, 200.0, units="mV", doc="inhibitory reversal (coba)")
    we: float = bounded(0.6, 0.0, 1e3, units="g_L | mV", doc="excitatory weight")
    wi: float = bounded(6.7, -1e3, 1e3, units="g_L | mV", doc="inhibitory weight (coba: >= 0; else <= 0)")
    drive: float = bounded(20.0, -1e3, 1e3, units="mV", doc="constant drive I in the voltage equation")
    delay: float = bounded(0.0, 0.0, 100.0, units="ms", doc="synaptic delay")
    connectivity: str = choice("probability", ("probability", "indegree"), doc="random graph kind")
    p_conn: float = bounded(0.02, 0.0, 1.0, units="", doc="connection probability (probability graphs)")
    c_exc: int = integer(0, 0, 2_000_000, doc="excitatory inputs per neuron (indegree graphs)")
    c_inh: int = integer(0, 0, 500_000, doc="inhibitory inputs per neuron (indegree graphs)")
    ext_inputs: int = integer(0, 0, 1_000_000, doc="independent Poisson inputs per neuron")
    ext_rate: float = bounded(0.0, 0.0, 1e5, units="Hz", doc="rate of each external Poisson input")
    ext_weight: float = bounded(0.0, 0.0, 1e3, units="g_L | mV", doc="weight of an external input")
    kick_sources: int = integer(0, 0, 100_000, doc="shared Poisson sources of an initial kick")
    kick_rate: float = bounded(0.0, 0.0, 1e4, units="Hz", doc="rate of each kick source")
    kick_duration: float = bounded(0.0, 0.0, 1e6, units="ms", doc="kick lasts from t=0 to this")
    kick_p: float = bounded(0.0, 0.0, 1.0, doc="connection probability of kick sources")
    kick_weight: float = bounded(0.0, 0.0, 1e3, units="g_L | mV", doc="weight of a kick synapse")
    v_init: str = choice("uniform", ("uniform", "normal"), doc="initial membrane potential law")
    v_init_a: float = bounded(-60.0, -200.0, 200.0, units="mV", doc="uniform low / normal mean")
    v_init_b: float = bounded(-50.0, -200.0, 200.0, units="mV", doc="uniform high / normal std")

    def check(self) -> None:
        if self.v_reset >= self.v_th:
            raise ValueError(f"v_reset={self.v_reset:g} is out of range: must be below v_th={self.v_th:g} mV")
        if self.synapse == "coba" and self.wi < 0:
            raise ValueError(f"wi={self.wi:g} is out of range: conductance weights must be >= 0")
        if self.synapse != "coba" and self.wi > 0:
            raise ValueError(f"wi={self.wi:g} is out of range: inhibitory {self.synapse} weights must be <= 0")
        if self.connectivity == "indegree":
            if self.c_exc > self.n_exc:
                raise ValueError(f"c_exc={self.c_exc} is out of range: allowed [0, n_exc={self.n_exc}]")
            if self.c_inh > self.n_inh:
                raise ValueError(f"c_inh={self.c_inh} is out of range: allowed [0, n_inh={self.n_inh}]")
        if self.v_init == "normal" and self.v_init_b < 0:
            raise ValueError(f"v_init_b={self.v_init_b:g} is out of range: a standard deviation must be >= 0")
        if self.n_synapses > MAX_SYNAPSES:
            raise ValueError(
                f"n_synapses={self.n_synapses:.3g} is out of range: allowed up to {MAX_SYNAPSES:.0e} "
                "(lower scale, p_conn or in-degrees)"
            )

    @property
    def n(self) -> int:
        return self.n_exc + self.n_inh

    @property
    def n_synapses(self) -> float:
        """Expected number of recurrent synapses."""
        if self.connectivity == "indegree":
            return float(self.n) * (self.c_exc + self.c_inh)
        return float(self.n) * self.n * self.p_conn

    @property
    def exc_indegree(self) -> float:
        return float(self.c_exc) if self.connectivity == "indegree" else self.p_conn * self.n_exc

    @property
    def g(self) -> float:
        """Relative strength of inhibition, |wi| / we."""
        return abs(self.wi) / self.we if self.we > 0 else math.inf

    @property
    def nu_thr(self) -> float:
        """External rate (Hz, per input) that alone brings the mean input to threshold (Brunel)."""
        c = self.ext_inputs if self.ext_inputs > 0 else self.exc_indegree
        denom = self.ext_weight * c * self.tau_m * 1e-3
        return (self.v_th - self.v_rest) / denom if denom > 0 else math.inf

    @property
    def eta(self) -> float:
        """External rate in units of the threshold rate nu_thr."""
        return self.ext_rate / self.nu_thr if math.isfinite(self.nu_thr) else 0.0

    def with_changes(self, **changes: float | str) -> LIFParams:
        """Validated copy; accepts the derived names ``g`` and ``eta`` as well as fields.

        String values are parsed as the field's type (command-line ``--set``).
        """
        changes = dict(changes)
        specs = {f.name: f.metadata.get("spec") for f in fields(self)}
        for name, value in list(changes.items()):
            if isinstance(value, str) and name in specs:
                changes[name] = parse_text(name, value, specs[name])
        derived = {}
        for name in ("g", "eta"):
            if name in changes:
                value = changes.pop(name)
                if isinstance(value, str):
                    value = parse_text(name, value, {"kind": "real"})
                spec = {"kind": "real", "lo": 0.0, "hi": 1e4, "lo_open": False, "hi_open": False}
                derived[name] = check_value(name, value, spec)
        out = self.replace(**changes) if changes else self
        if "g" in derived:
            sign = 1.0 if out.synapse == "coba" else -1.0
            out = out.replace(wi=sign * derived["g"] * out.we)
        if "eta" in derived:
            if not math.isfinite(out.nu_thr):
                raise ValueError("eta cannot be set: this network has no external input weight")
            out = out.replace(ext_rate=derived["eta"] * out.nu_thr)
        return out


# fmt: off
def preset(model: str, *, regime: str = "", scale: float = 1.0) -> LIFParams:
    """The exact published parameters of a model (see the reference notes on each)."""
    if model in ("coba", "coba-pynn", "cuba"):
        # Benchmarks 1 and 2 of Brette et al. (2007): 4000 x scale cells, 80% excitatory,
        # tau_m 20 ms, threshold -50 mV, reset -60 mV, refractory 5 ms, tau_e 5 ms, tau_i 10 ms.
        n = round(4000 * scale)
        cells = dict(n_exc=round(0.8 * n), n_inh=n - round(0.8 * n), tau_m=20.0, v_th=-50.0, v_reset=-60.0,
                     t_ref=5.0, tau_e=5.0, tau_i=10.0, connectivity="probability")
        conductance = dict(synapse="coba", v_rest=-60.0, e_exc=0.0, e_inh=-80.0)
        uniform_v = dict(v_init="uniform", v_init_a=-60.0, v_init_b=-50.0)
        if model == "coba":
            # Brian2/BrainPy speed-comparison variant of Vogels & Abbott (2005): constant drive
            # I = 20 mV, weights in units of g_L, no delay, every neuron keeps ~80 inputs at any N.
            return LIFParams(**cells, **conductance, we=0.6, wi=6.7, drive=20.0, delay=0.0,
                             p_conn=min(1.0, 80.0 / n), v_init="normal", v_init_a=-55.0, v_init_b=5.0)
        if model == "coba-pynn":
            # PyNN examples/VAbenchmarks.py: G_exc 4 nS, G_inh 51 nS (g_L = 10 nS), delay 0.2 ms,
            # 20 Poisson sources at 100 Hz kick the network for 50 ms (p 0.01, 0.1 uS).
            return LIFParams(**cells, **conductance, **uniform_v, we=0.4, wi=5.1, drive=0.0, delay=0.2,
                             p_conn=0.02, kick_sources=20, kick_rate=100.0, kick_duration=50.0, kick_p=0.01,
                             kick_weight=10.0)
        # Brian2 examples/CUBA.py (benchmark 2).
        return LIFParams(**cells, **uniform_v, synapse="cuba", v_rest=-49.0, we=1.62, wi=-9.0, drive=0.0,
                         delay=0.0, p_conn=0.02)
    if model == "brunel":
        # Brunel (2000) model A: theta 20 mV, V_r 10 mV, tau_rp 2 ms, J 0.1 mV, D 1.5 ms,
        # epsilon 0.1 (fixed in-degree C_E, C_I), C_ext = C_E inputs at eta * nu_thr.
        if regime not in REGIMES:
            raise ValueError(f"regime={regime!r} is not allowed: choose one of {', '.join(REGIMES)}")
        g, eta = REGIMES[regime]
        n_exc, n_inh = round(10000 * scale), round(2500 * scale)
        c_exc, c_inh = max(1, round(0.1 * n_exc)), round(0.1 * n_inh)
        j = 0.1
        nu_thr = 20.0 / (j * c_exc * 20e-3)
        return LIFParams(n_exc=n_exc, n_inh=n_inh, synapse="delta", tau_m=20.0, v_rest=0.0, v_th=20.0,
                         v_reset=10.0, t_ref=2.0, we=j, wi=-g * j, drive=0.0, delay=1.5, connectivity="indegree",
                         c_exc=c_exc, c_inh=c_inh, ext_inputs=c_exc, ext_rate=eta * nu_thr, ext_weight=j,
                         v_init="uniform", v_init_a=10.0, v_init_b=20.0)
    raise ValueError(f"model={model!r} is not allowed: choose one of {', '.join(MODELS)}")
# fmt: on


def _neuron_ids(value: object, n: int) -> tuple[int, ...]:
    """Neuron indices from a sequence or comma-separated text, each in [0, n)."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        ids = tuple(int(str(v).strip()) for v in items if str(v).strip())
    except (TypeError, ValueError):
        raise ValueError(f"record_ids={value!r} is not allowed: give neuron indices like 0,5,42") from None
    bad = [i for i in ids if not 0 <= i < n]
    if bad:
        raise ValueError(f"record_ids contains {bad[0]}: out of range, allowed [0, {n - 1}]")
    return tuple(sorted(set(ids)))


@dataclass(frozen=True)
class SpikingConfig(Config):
    """A spiking run: which network, for how long, how it is recorded."""

    model: str = choice("coba", MODELS, doc="network preset")
    regime: str = choice("", ("", *REGIMES), doc="Brunel (2000) figure-8 panel (brunel only)")
    scale: float = bounded(1.0, 0.0, 16.0, lo_open=True, doc="network size relative to the preset")
    duration: float = bounded(1.0, 0.0, 86400.0, lo_open=True, units="s", doc="biological time")
    dt: float = bounded(0.1, 0.0, 1.0, lo_open=True, units="ms", doc="integration time step")
    seed: int = integer(1, 0, 2**31 - 1, doc="random seed (network, initial state, inputs)")
    chunk: float = bounded(100.0, 0.0, 600_000.0, lo_open=True, units="ms", doc="biological time per chunk")
    sample_interval: float = bounded(
        1.0, 0.0, 1000.0, lo_open=True, units="ms", doc="population-rate bin and membrane-potential sampling interval"
    )
    record_v: int = integer(20, 0, 10_000, doc="neurons whose membrane potential is sampled (spread over E and I)")
    record_ids: tuple[int, ...] = field(default=(), metadata={"doc": "these neurons instead of record_v (0,5,…)"})
    precision: str = choice("float32", ("float32", "float64"), doc="floating-point type of the state")
    max_rate: float = bounded(
        1000.0,
        0.0,
        1e5,
        lo_open=True,
        units="Hz",
        doc="a chunk whose mean rate exceeds this stops the run as a blow-up",
    )
    params: LIFParams | None = field(default=None, metadata={"doc": "network parameters (preset if omitted)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.params is None:
            object.__setattr__(self, "params", preset(self.model, regime=self.regime, scale=self.scale))
        elif isinstance(self.params, dict):
            object.__setattr__(self, "params", LIFParams.from_dict(self.params))
        object.__setattr__(self, "record_ids", _neuron_ids(self.record_ids, self.params.n))
        self._check_steps()

    def check(self) -> None:
        if self.model == "brunel" and not self.regime:
            raise ValueError("regime='' is not allowed for model brunel: choose one of A, B, C, D")
        if self.model != "brunel" and self.regime:
            raise ValueError(f"regime={self.regime!r} is not allowed: only model brunel has regimes")

    def _check_steps(self) -> None:
        ratio = self.sample_interval / self.dt
        if abs(ratio - round(ratio)) > 1e-6 * ratio:
            raise ValueError(
                f"sample_interval={self.sample_interval:g} is not allowed: "
                f"must be a whole number of time steps (dt={self.dt:g} ms)"
            )
        ratio = self.chunk / self.sample_interval
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-6 * ratio:
            raise ValueError(
                f"chunk={self.chunk:g} is not allowed: must be a whole number of "
                f"sample intervals ({self.sample_interval:g} ms)"
            )
        if self.record_v > self.params.n:
            raise ValueError(f"record_v={self.record_v} is out of range: allowed [0, {self.params.n}] neurons")

    @property
    def steps_per_sample(self) -> int:
        return round(self.sample_interval / self.dt)

    @property
    def samples_per_chunk(self) -> int:
        return round(self.chunk / self.sample_interval)

    @property
    def total_samples(self) -> int:
        return max(1, round(self.duration * 1000.0 / self.sample_interval))

    def with_settings(self, **texts: str | float) -> SpikingConfig:
        """Apply ``name=value`` settings: run fields and network parameters alike."""
        own = {f.name for f in fields(self)} - {"params"}
        run = {k: v for k, v in texts.items() if k in own and k != "record_ids"}
        net = {k: v for k, v in texts.items() if k not in own}
        out = self
        if "record_ids" in texts:
            out = out.replace(record_ids=texts["record_ids"])
        if run:
            out = out.replace_text(**{k: str(v) for k, v in run.items()})
            if {"model", "regime", "scale"} & set(run):
                out = out.replace(params=preset(out.model, regime=out.regime, scale=out.scale))
        if net:
            out = out.replace(params=out.params.with_changes(**net))
        return out

    @classmethod
    def from_dict(cls, data: dict) -> SpikingConfig:
        data = dict(data)
        params = data.pop("params", None)
        return cls(**data, params=LIFParams.from_dict(params) if params else None)
