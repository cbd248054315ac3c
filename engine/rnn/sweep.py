"""Degeneracy sweeps: one ensemble per condition, trained and measured on Dask, in one Zarr store.

A sweep varies one knob (a task knob such as ``channels``, or ``hidden`` for width) over a few
values; each condition trains ``seeds`` networks as one batched ensemble
(:mod:`engine.rnn.ensemble`) and measures, over its converged networks only, the three
degeneracy levels (:mod:`engine.rnn.metrics`). Conditions are independent Dask tasks
(``LocalCluster`` with one torch thread per worker process by default, or an existing cluster);
each writes its own region of the store (Zarr chunks of one condition), and marks itself done,
so an interrupted sweep resumes by skipping finished conditions.

Store variables (dims ``condition``, ``net``, ``net2``, ``unit``, ``unit2``):
``converged``, ``diverged``, ``train_steps``, ``final_loss``, ``ood_mse`` per network;
``dsa``, ``pif`` pairwise matrices (NaN outside converged networks); ``w_h`` recurrent
weights (padded with NaN to the widest condition); per condition ``n_converged``,
``dynamics_degeneracy`` (mean DSA), ``weight_degeneracy`` (mean PIF), ``sigma_ood``,
``weight_change`` (mean relative ||W_T - W_0||) and ``done``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.config import Config, bounded, choice, integer
from engine.rnn.ensemble import PARAMETERISATIONS, TrainConfig
from engine.rnn.tasks import TASKS, make_task
from engine.store import SWEEP_ATTR

__all__ = [
    "SweepSpec",
    "train_config",
    "condition_stream",
    "measure_condition",
    "run_condition",
    "write_condition",
    "condition_model",
    "network_means",
    "init_store",
    "local_cluster",
    "run_sweep",
    "sweep_summary",
    "SWEEP_ATTR",
    "TRAIN_KNOBS",
]


TRAIN_KNOBS = ("hidden", "gamma", "nuclear", "l1")  # knobs of the network and its training, not the task


@dataclass(frozen=True)
class SweepSpec(Config):
    task: str = choice("flipflop", tuple(TASKS), doc="task")
    knob: str = field(
        default="channels",
        metadata={"doc": "the varied knob: a task field, hidden (width), gamma, nuclear or l1"},
    )
    values: tuple = field(default=(1, 3), metadata={"doc": "its values, one condition each"})
    task_options: dict = field(default_factory=dict, metadata={"doc": "other task fields, fixed across conditions"})
    seeds: int = integer(8, 2, 4096, doc="networks per condition")
    hidden: int = integer(64, 2, 4096, doc="units per network (unless the knob is hidden)")
    parameterisation: str = choice("standard", PARAMETERISATIONS, doc="standard tanh RNN, or mup (needed for gamma)")
    gamma: float = bounded(1.0, 0.0, 1e4, lo_open=True, doc="feature-learning strength (mup only)")
    nuclear: float = bounded(0.0, 0.0, 1e3, doc="nuclear-norm penalty on W_h")
    l1: float = bounded(0.0, 0.0, 1e3, doc="L1 penalty on W_h")
    lr: float = bounded(
        1e-2,
        0.0,
        1.0,
        lo_open=True,
        doc="initial Adam learning rate (from ~2e-2 flip-flop nets can solve it by period-2 oscillation)",
    )
    lr_half_life: float = bounded(1500.0, 0.0, 1e9, doc="steps over which the learning rate halves (0: constant)")
    clip: float = bounded(1.0, 0.0, 1e6, doc="largest gradient norm of each network (0: no clipping)")
    batch: int = integer(32, 1, 100_000, doc="trials per step")
    max_steps: int = integer(8000, 1, 10_000_000, doc="cap on training steps")
    epoch_steps: int = integer(50, 1, 100_000, doc="steps per epoch of the stopping rule")
    seed: int = integer(0, 0, 2**31 - 1, doc="base seed: network j of condition c uses seed + 1000 c + j")
    test_trials: int = integer(16, 1, 10_000, doc="fixed test trials for trajectories (DSA)")
    ood_trials: int = integer(64, 1, 100_000, doc="out-of-distribution trials for sigma_OOD")
    dsa_delays: int = integer(10, 1, 1000, doc="DSA delay embedding")
    dsa_rank: int = integer(20, 1, 10_000, doc="DSA rank")
    dsa_pcs: int = integer(32, 0, 4096, doc="principal components of the states DSA sees (0: every unit)")

    def check(self) -> None:
        values = tuple(self.values)
        object.__setattr__(self, "values", values)
        if not values:
            raise ValueError("values=() is not allowed: give at least one value")
        task_fields = {f for f in TASKS[self.task].__dataclass_fields__}
        for name in self.task_options:
            if name not in task_fields or name == self.knob:
                raise ValueError(
                    f"task option {name!r} is not allowed for task {self.task}: choose among "
                    f"{', '.join(sorted(task_fields - {self.knob}))}"
                )
        if self.knob not in TRAIN_KNOBS and self.knob not in task_fields:
            raise ValueError(
                f"knob={self.knob!r} is not allowed for task {self.task}: choose one of "
                f"{', '.join(sorted(task_fields | set(TRAIN_KNOBS)))}"
            )
        if self.knob == "gamma" and self.parameterisation != "mup":
            raise ValueError("knob='gamma' needs parameterisation=mup (the feature-learning parameterisation)")
        for value in values:  # every condition must build: the task and training configs validate the knob
            task, train = self.condition(value)
            self._check_dsa(task, train["hidden"])

    def _check_dsa(self, task, width: int) -> None:
        """DSA's delay embedding must have fewer dimensions than samples (fail now, not after training)."""
        steps = task.generate(1, np.random.default_rng(0)).inputs.shape[1]
        dim = min(width, self.dsa_pcs) if self.dsa_pcs else width
        samples = self.test_trials * (steps - self.dsa_delays + 1)
        if self.dsa_delays * dim > samples:
            raise ValueError(
                f"dsa_delays={self.dsa_delays} x {dim} state dimensions exceed the {samples} delay-embedded "
                f"samples of {self.test_trials} test trials: lower dsa_pcs or dsa_delays, or raise test_trials"
            )

    def condition(self, value) -> tuple:
        """(task config, training knobs) of the condition with ``knob = value``."""
        train = {"hidden": self.hidden, "gamma": self.gamma, "nuclear": self.nuclear, "l1": self.l1}
        if self.knob in TRAIN_KNOBS:
            if self.knob == "hidden" and int(value) != value:
                raise ValueError(f"hidden={value} is not allowed: widths are whole numbers")
            train[self.knob] = int(value) if self.knob == "hidden" else float(value)
            probe = {k: v for k, v in train.items() if k != "gamma" or self.parameterisation == "mup"}
            TrainConfig(parameterisation=self.parameterisation, **probe)  # validates the value now
            return make_task(self.task, **self.task_options), train
        return make_task(self.task, **{**self.task_options, self.knob: value}), train


def train_config(spec: SweepSpec, index: int) -> TrainConfig:
    """The training config of condition ``index``: network j uses seed ``spec.seed + 1000 index + j``."""
    _, train = spec.condition(spec.values[index])
    if spec.parameterisation != "mup":
        train.pop("gamma")
    return TrainConfig(
        networks=spec.seeds,
        seed=spec.seed + 1000 * index,
        lr=spec.lr,
        batch=spec.batch,
        max_steps=spec.max_steps,
        epoch_steps=spec.epoch_steps,
        clip=spec.clip,
        lr_half_life=spec.lr_half_life,
        parameterisation=spec.parameterisation,
        **train,
    )


def condition_stream(spec: SweepSpec, index: int, chunk_steps: int = 100):
    """The training stream of condition ``index`` (a dashboard watches it; workers drain it)."""
    from engine.rnn.training import StreamConfig, TrainingStream

    task, _ = spec.condition(spec.values[index])
    stream = StreamConfig(chunk_steps=chunk_steps, test_trials=spec.test_trials, test_seed=spec.seed + 7)
    return TrainingStream(task, train_config(spec, index), stream)


def measure_condition(spec: SweepSpec, index: int, stream, final) -> dict:
    """The degeneracy measures of a trained condition, over its converged networks only.

    ``stream``: the finished :class:`~engine.rnn.training.TrainingStream`; ``final``: its last chunk.
    """
    import torch

    from engine.rnn.ensemble import masked_mse
    from engine.rnn.metrics import dsa_matrix, mean_offdiag, pif_matrix, sigma_ood, weight_change

    res = stream.result()
    task = stream.task
    k = spec.seeds
    conv = np.flatnonzero(res.converged)
    ood = task.generate(spec.ood_trials, np.random.default_rng(spec.seed + 8), ood=True)

    def stacked(a):
        return torch.from_numpy(np.repeat(a[None], k, 0))

    with torch.no_grad():
        ood_mse = masked_mse(res.model(stacked(ood.inputs)), stacked(ood.targets), stacked(ood.mask)).numpy()
    hidden = final["hidden"].values[0]  # (net, trial, time, unit)
    w_h = final["w_h"].values[0]
    dsa = np.full((k, k), np.nan)
    pif = np.full((k, k), np.nan)
    t1 = time.perf_counter()
    if conv.size >= 2:
        dsa[np.ix_(conv, conv)] = dsa_matrix(
            [hidden[j] for j in conv], n_delays=spec.dsa_delays, rank=spec.dsa_rank, pcs=spec.dsa_pcs
        )
        pif[np.ix_(conv, conv)] = pif_matrix([w_h[j] for j in conv])
    metric_seconds = time.perf_counter() - t1
    change = [weight_change(w_h[j], res.init["w_h"][j]) for j in conv]
    return {
        "index": index,
        "converged": res.converged,
        "diverged": res.diverged,
        "train_steps": res.steps_done,
        "final_loss": res.losses[-1] if len(res.losses) else np.full(k, np.nan),
        "ood_mse": ood_mse,
        "dsa": dsa,
        "pif": pif,
        "w_h": w_h,
        "w_h_init": res.init["w_h"],
        **{name: getattr(res.model, name).detach().numpy() for name in ("w_x", "b", "w_o", "b_o")},
        "states": hidden,
        "inputs": final["inputs"].values,
        "targets": final["targets"].values,
        "n_converged": int(conv.size),
        "dynamics_degeneracy": mean_offdiag(dsa[np.ix_(conv, conv)]) if conv.size >= 2 else np.nan,
        "weight_degeneracy": mean_offdiag(pif[np.ix_(conv, conv)]) if conv.size >= 2 else np.nan,
        "sigma_ood": sigma_ood(ood_mse[conv]) if conv.size >= 2 else np.nan,
        "weight_change": float(np.mean(change)) if change else np.nan,
        "metric_seconds": metric_seconds,
    }


def run_condition(spec_json: str, index: int, *, on_chunk=None, should_stop=None) -> dict | None:
    """Train and measure one condition (in a Dask worker with one torch thread, or a dashboard).

    ``on_chunk(chunk)`` sees every training chunk; ``should_stop()`` returning true abandons the
    condition (``None`` is returned and nothing is measured).
    """
    from engine.stream import RunStopped

    spec = SweepSpec.from_dict(json.loads(spec_json))
    stream = condition_stream(spec, index)
    t0 = time.perf_counter()
    final = None
    losses = []
    try:
        for chunk in stream.chunks():
            final = chunk
            losses.append(chunk["loss"].values)
            if on_chunk is not None:
                on_chunk(chunk)
            if should_stop is not None and should_stop():
                return None
    except RunStopped:  # every network blew up: measured as a condition with none converged
        pass
    train_seconds = time.perf_counter() - t0
    result = measure_condition(spec, index, stream, final)
    result["train_seconds"] = train_seconds
    result["epoch_loss"] = epoch_means(np.concatenate(losses), spec.epoch_steps)
    return result


def epoch_means(losses: np.ndarray, epoch_steps: int) -> np.ndarray:
    """Mean training loss per epoch (epoch, net) from per-step losses (step, net); a last partial epoch counts."""
    n = losses.shape[0]
    edges = np.arange(0, n, epoch_steps)
    return np.add.reduceat(losses, edges, axis=0) / np.diff(np.append(edges, n))[:, None]


PER_NET = ("converged", "diverged", "train_steps", "final_loss", "ood_mse")
PADDED = (
    "epoch_loss",
    "w_h",
    "w_h_init",
    "w_x",
    "b",
    "w_o",
    "b_o",
    "states",
    "inputs",
    "targets",
)  # float32, NaN-padded to the largest condition
PER_CONDITION = (
    "n_converged",
    "dynamics_degeneracy",
    "weight_degeneracy",
    "sigma_ood",
    "weight_change",
    "train_seconds",
    "metric_seconds",
)
UNITS = {"final_loss": "MSE", "ood_mse": "MSE", "epoch_loss": "MSE", "train_seconds": "s", "metric_seconds": "s"}
LONG = {
    "converged": "reached the loss threshold",
    "diverged": "loss blew up",
    "train_steps": "training steps",
    "final_loss": "last training loss",
    "ood_mse": "out-of-distribution MSE",
    "dsa": "DSA distance (angular)",
    "pif": "permutation-invariant weight distance",
    "w_h": "recurrent weights",
    "w_h_init": "recurrent weights at step 0",
    "epoch_loss": "epoch-mean training MSE",
    "w_x": "input weights",
    "b": "hidden bias",
    "w_o": "readout weights",
    "b_o": "readout bias",
    "states": "hidden state on test trials",
    "inputs": "test input",
    "targets": "test target",
    "n_converged": "converged networks",
    "dynamics_degeneracy": "mean pairwise DSA",
    "weight_degeneracy": "mean pairwise PIF distance",
    "sigma_ood": "std of OOD MSE",
    "weight_change": "mean relative weight change",
    "train_seconds": "training time",
    "metric_seconds": "pairwise-metric time",
    "done": "condition finished",
}


def _template(spec: SweepSpec):
    """The empty sweep dataset (lazy, so creating the store writes metadata only)."""
    import dask.array as da
    import xarray as xr

    c, k = len(spec.values), spec.seeds
    width = max(spec.condition(v)[1]["hidden"] for v in spec.values)
    trials = [spec.condition(v)[0].generate(1, np.random.default_rng(0)) for v in spec.values]
    steps = max(t.inputs.shape[1] for t in trials)
    n_in = max(t.inputs.shape[2] for t in trials)
    n_out = max(t.targets.shape[2] for t in trials)
    shapes = {name: ("condition", "net") for name in PER_NET}
    shapes.update(
        {
            "dsa": ("condition", "net", "net2"),
            "pif": ("condition", "net", "net2"),
            "w_h": ("condition", "net", "unit", "unit2"),
            "w_h_init": ("condition", "net", "unit", "unit2"),
            "epoch_loss": ("condition", "epoch", "net"),
            "w_x": ("condition", "net", "unit", "in"),
            "b": ("condition", "net", "unit"),
            "w_o": ("condition", "net", "out", "unit"),
            "b_o": ("condition", "net", "out"),
            "states": ("condition", "net", "trial", "time", "unit"),
            "inputs": ("condition", "trial", "time", "in"),
            "targets": ("condition", "trial", "time", "out"),
        }
    )
    shapes.update({name: ("condition",) for name in (*PER_CONDITION, "done")})
    sizes = {
        "condition": c,
        "net": k,
        "net2": k,
        "unit": width,
        "unit2": width,
        "trial": spec.test_trials,
        "epoch": -(-spec.max_steps // spec.epoch_steps),
        "time": steps,
        "in": n_in,
        "out": n_out,
    }
    data = {}
    for name, dims in shapes.items():
        dtype = (
            bool
            if name in ("converged", "diverged", "done")
            else np.int64
            if name in ("train_steps", "n_converged")
            else np.float32
            if name in PADDED
            else np.float64
        )
        fill = False if dtype is bool else (0 if dtype is np.int64 else np.nan)
        shape = tuple(sizes[d] for d in dims)
        chunks = tuple(1 if d == "condition" else sizes[d] for d in dims)
        arr = da.full(shape, fill, dtype=dtype, chunks=chunks)
        data[name] = (dims, arr, {"long_name": LONG[name], "units": UNITS.get(name, "")})
    coords = {
        "condition": ("condition", np.arange(c), {"long_name": "condition", "units": ""}),
        spec.knob: ("condition", np.asarray(spec.values), {"long_name": spec.knob, "units": ""}),
        "net": ("net", np.arange(k), {"long_name": "network", "units": ""}),
    }
    return xr.Dataset(
        data,
        coords=coords,
        attrs={SWEEP_ATTR: spec.to_json(), "engine": "rnn-sweep", "task": spec.task, "knob": spec.knob},
    )


def init_store(spec: SweepSpec, path: str | Path) -> None:
    """Create the store, or check that an existing one holds the same sweep (to resume it)."""
    from engine.store import check_out_path

    p = Path(path).expanduser()
    if (p / ".zattrs").exists():
        attrs = json.loads((p / ".zattrs").read_text())
        if SWEEP_ATTR in attrs:
            if json.loads(attrs[SWEEP_ATTR]) != json.loads(spec.to_json()):
                raise ValueError(f"{p} holds a different sweep; choose another --out to start a new one")
            return
    check_out_path(p, overwrite=False)
    # metadata and coordinates now; the (lazy) data stay unwritten until each condition's region
    _template(spec).to_zarr(p, mode="w-", compute=False, consolidated=False, zarr_format=2)


def write_condition(path: str | Path, result: dict) -> None:
    """Write one condition's region of the sweep store (from a worker or a dashboard)."""
    import xarray as xr

    i = result["index"]
    data = {}
    for name in PER_NET:
        data[name] = (("condition", "net"), np.asarray(result[name])[None])
    data["dsa"] = (("condition", "net", "net2"), result["dsa"][None])
    data["pif"] = (("condition", "net", "net2"), result["pif"][None])
    template = xr.open_zarr(path, consolidated=False)
    for name in PADDED:  # narrower or shorter conditions: NaN beyond their own extent
        dims = template[name].dims
        full = np.full((1, *template[name].shape[1:]), np.nan, np.float32)
        value = np.asarray(result[name], np.float32)
        full[(0, *(slice(0, n) for n in value.shape))] = value
        data[name] = (dims, full)
    for name in PER_CONDITION:
        data[name] = (("condition",), np.asarray([result[name]]))
    data["done"] = (("condition",), np.array([True]))
    ds = xr.Dataset(data)
    ds["train_steps"] = ds["train_steps"].astype(np.int64)
    ds["n_converged"] = ds["n_converged"].astype(np.int64)
    ds.to_zarr(path, region={"condition": slice(i, i + 1)}, consolidated=False)


def _condition_task(spec_json: str, index: int, path: str) -> dict:
    import torch

    torch.set_num_threads(1)  # a worker process: parallelism comes from the workers
    result = run_condition(spec_json, index)
    write_condition(path, result)
    return {k: result[k] for k in ("index", "n_converged", "train_seconds", "metric_seconds")}


def local_cluster(workers: int):
    """A Dask cluster on this machine: worker processes with one thread (torch, BLAS) each."""
    from dask.distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )


def run_sweep(
    spec: SweepSpec, path: str | Path, *, scheduler: str | None = None, workers: int = 2, progress=None
) -> list[dict]:
    """Run the unfinished conditions of ``spec`` on Dask; returns per-condition timings."""
    import xarray as xr
    from dask.distributed import Client, as_completed

    path = str(Path(path).expanduser())
    init_store(spec, path)
    done = xr.open_zarr(path, consolidated=False)["done"].values
    todo = [i for i in range(len(spec.values)) if not done[i]]
    if not todo:
        return []
    if scheduler:
        client = Client(scheduler, timeout="3s")
        cluster = None
    else:
        cluster = local_cluster(workers)
        client = Client(cluster)
    try:
        futures = [client.submit(_condition_task, spec.to_json(), i, path, pure=False) for i in todo]
        out = []
        for fut in as_completed(futures):
            out.append(fut.result())
            if progress is not None:
                progress(out[-1])
        return out
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def condition_model(ds, index: int):
    """The trained networks of condition ``index`` of a sweep dataset, rebuilt as an ``EnsembleRNN``."""
    import torch

    from engine.rnn.ensemble import EnsembleRNN

    spec = SweepSpec.from_dict(json.loads(ds.attrs[SWEEP_ATTR]))
    task, _ = spec.condition(spec.values[index])
    cfg = train_config(spec, index)
    n, k = cfg.hidden, spec.seeds
    model = EnsembleRNN.for_task(task, cfg, [0] * k)
    cut = {"w_h": (n, n), "w_x": (n, task.n_in), "b": (n,), "w_o": (task.n_out, n), "b_o": (task.n_out,)}
    with torch.no_grad():
        for name, shape in cut.items():
            value = ds[name].values[index][(slice(None), *(slice(0, m) for m in shape))]
            getattr(model, name).copy_(torch.from_numpy(np.ascontiguousarray(value, np.float32)))
    return model


def network_means(matrix: np.ndarray, converged: np.ndarray) -> np.ndarray:
    """Each converged network's mean distance to the other converged networks (the seed spread)."""
    idx = np.flatnonzero(converged)
    if idx.size < 2:
        return np.zeros(0)
    m = np.asarray(matrix, float)[np.ix_(idx, idx)]
    return m.sum(1) / (idx.size - 1)


def sweep_summary(path: str | Path) -> dict:
    """Per condition: knob value, done, converged count, the three degeneracy values and their spread.

    ``dynamics_sd`` and ``weights_sd`` are the standard deviations across converged networks of
    each network's mean distance to the others.
    """
    import xarray as xr

    ds = xr.open_zarr(path, consolidated=False)
    spec = json.loads(ds.attrs[SWEEP_ATTR])
    rows = []
    for i in range(ds.sizes["condition"]):
        row = {spec["knob"]: ds[spec["knob"]].values[i].item(), "done": bool(ds["done"].values[i])}
        for name in ("n_converged", "dynamics_degeneracy", "weight_degeneracy", "sigma_ood", "weight_change"):
            value = ds[name].values[i].item()
            row[name] = None if isinstance(value, float) and not np.isfinite(value) else value
        conv = ds["converged"].values[i]
        for name, key in (("dsa", "dynamics_sd"), ("pif", "weights_sd")):
            means = network_means(ds[name].values[i], conv)
            row[key] = float(np.std(means, ddof=1)) if means.size >= 2 else None
        rows.append(row)
    return {
        "engine": "rnn-sweep",
        "task": spec["task"],
        "knob": spec["knob"],
        "seeds": spec["seeds"],
        "complete": all(r["done"] for r in rows),
        "conditions": rows,
    }
