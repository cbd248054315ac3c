"""What the degeneracy dashboard draws, computed from a sweep dataset (no Panel, no Bokeh).

A sweep dataset is the store of :mod:`engine.rnn.sweep` opened with
``xr.open_zarr(path, consolidated=False)``: per condition (one value of the varied knob) and
network, the convergence flags, pairwise DSA and PIF matrices, OOD errors, hidden trajectories
on fixed test trials, and the trained weights. Only finished conditions (``done``) are shown,
and only converged networks enter the distances, the embeddings and the spreads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from engine.rnn.fixed_points import FixedPoints, find_fixed_points, network_step, sample_starts
from engine.rnn.metrics import mds
from engine.rnn.sweep import SWEEP_ATTR, TRAIN_KNOBS, SweepSpec, condition_model, network_means, train_config
from engine.rnn.tasks import TASKS

__all__ = [
    "FIXED_POINT_TASKS",
    "build_spec",
    "condition_label",
    "done_conditions",
    "fixed_points",
    "knobs_for",
    "levels",
    "mds_points",
    "network_states",
    "open_sweep",
    "parse_values",
    "sweep_spec",
]

FIXED_POINT_TASKS = ("flipflop",)  # tasks whose fixed points under zero input are drawn


def knobs_for(task: str) -> list[str]:
    """The knobs a sweep of ``task`` may vary: the task's own fields, then width and training knobs."""
    return [*TASKS[task].__dataclass_fields__, *TRAIN_KNOBS]


def parse_values(text: str) -> tuple:
    """``"1, 3"`` -> ``(1, 3)``: numbers (whole ones as int) or true/false, comma separated."""
    values: list = []
    for piece in (p.strip() for p in str(text).split(",")):
        if not piece:
            continue
        if piece.lower() in ("true", "false"):
            values.append(piece.lower() == "true")
            continue
        try:
            number = float(piece)
        except ValueError:
            raise ValueError(f"values={text!r}: {piece!r} is not a number") from None
        values.append(int(number) if number.is_integer() else number)
    return tuple(values)


def build_spec(
    *, task: str, knob: str, values: str, seeds: int, hidden: int, max_steps: int, lr: float, seed: int = 0
) -> SweepSpec:
    """The sweep typed in the dashboard (``ValueError`` naming the field, value and range if bad).

    Varying ``gamma`` needs the feature-learning parameterisation, so it is chosen with it.
    """
    return SweepSpec(
        task=task,
        knob=knob,
        values=parse_values(values),
        seeds=seeds,
        hidden=hidden,
        max_steps=max_steps,
        lr=lr,
        seed=seed,
        parameterisation="mup" if knob == "gamma" else "standard",
    )


def open_sweep(path: str | Path) -> xr.Dataset:
    """A sweep store, lazily (values are read when used)."""
    return xr.open_zarr(path, consolidated=False)


def sweep_spec(ds: xr.Dataset) -> SweepSpec:
    return SweepSpec.from_dict(json.loads(ds.attrs[SWEEP_ATTR]))


def done_conditions(ds: xr.Dataset) -> np.ndarray:
    """Indices of the finished conditions."""
    return np.flatnonzero(np.asarray(ds["done"].values, bool))


def condition_label(ds: xr.Dataset, index: int) -> str:
    """``knob=value`` of condition ``index``."""
    knob = ds.attrs["knob"]
    return f"{knob}={ds[knob].values[index].item()}"


def mds_points(ds: xr.Dataset, var: str) -> dict[str, np.ndarray]:
    """Classical MDS of each finished condition's ``var`` matrix (``dsa`` or ``pif``), converged networks only.

    Distances exist only within a condition, so each condition is embedded on its own (centred
    on the origin) and the conditions share the axes: a wider cloud is a more degenerate
    ensemble. Columns: ``x``, ``y``, ``net``, ``condition`` (index), ``label`` (``knob=value``).
    """
    cols: dict[str, list] = {"x": [], "y": [], "net": [], "condition": [], "label": []}
    matrices = np.asarray(ds[var].values, float)  # (condition, net, net2)
    converged = np.asarray(ds["converged"].values, bool)  # (condition, net)
    for i in done_conditions(ds):
        idx = np.flatnonzero(converged[i])
        if idx.size == 0:
            continue
        xy = mds(matrices[i][np.ix_(idx, idx)], dims=2) if idx.size > 1 else np.zeros((1, 2))  # (n_conv, 2)
        xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))  # fewer than two axes: zeros
        cols["x"].extend(xy[:, 0])
        cols["y"].extend(xy[:, 1])
        cols["net"].extend(idx.tolist())
        cols["condition"].extend([int(i)] * idx.size)
        cols["label"].extend([condition_label(ds, i)] * idx.size)
    return {
        "x": np.asarray(cols["x"], float),
        "y": np.asarray(cols["y"], float),
        "net": np.asarray(cols["net"], int),
        "condition": np.asarray(cols["condition"], int),
        "label": np.asarray(cols["label"], str),
    }


def _mean_sd(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return np.nan, np.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0


def levels(ds: xr.Dataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The three degeneracy levels against the knob, with their seed spread.

    Per finished condition (first dict): ``condition``, ``label``, ``n_converged``, and for
    ``dsa`` and ``pif`` the mean and sd across converged networks of each network's mean
    distance to the others (:func:`engine.rnn.sweep.network_means`), as ``dsa_mean``,
    ``dsa_lo``, ``dsa_hi`` (mean -/+ sd) and the same for ``pif``; ``sigma_ood``.
    Per converged network (second dict): ``condition``, ``net``, ``dsa``, ``pif`` (its mean
    distance) and ``ood_mse``.
    """
    conv = np.asarray(ds["converged"].values, bool)  # (condition, net)
    ood = np.asarray(ds["ood_mse"].values, float)  # (condition, net)
    sigma = np.asarray(ds["sigma_ood"].values, float)  # (condition,)
    mats = {var: np.asarray(ds[var].values, float) for var in ("dsa", "pif")}  # (condition, net, net2)
    per_cond: dict[str, list] = {"condition": [], "label": [], "n_converged": [], "sigma_ood": []}
    per_net: dict[str, list] = {"condition": [], "net": [], "dsa": [], "pif": [], "ood_mse": []}
    for var in mats:
        for key in ("mean", "lo", "hi"):
            per_cond[f"{var}_{key}"] = []
    for i in done_conditions(ds):
        idx = np.flatnonzero(conv[i])
        per_cond["condition"].append(int(i))
        per_cond["label"].append(condition_label(ds, i))
        per_cond["n_converged"].append(int(idx.size))
        per_cond["sigma_ood"].append(float(sigma[i]))
        means = {}
        for var, m in mats.items():
            means[var] = network_means(m[i], conv[i])  # (n_conv,) or empty below two networks
            mean, sd = _mean_sd(means[var])
            per_cond[f"{var}_mean"].append(mean)
            per_cond[f"{var}_lo"].append(mean - sd)
            per_cond[f"{var}_hi"].append(mean + sd)
        if idx.size:
            per_net["condition"].extend([int(i)] * idx.size)
            per_net["net"].extend(idx.tolist())
            for var in mats:
                per_net[var].extend(means[var] if means[var].size else [np.nan] * idx.size)
            per_net["ood_mse"].extend(ood[i, idx])
    as_arrays = {k: np.asarray(v) for k, v in per_cond.items()}
    return as_arrays, {k: np.asarray(v) for k, v in per_net.items()}


def network_states(ds: xr.Dataset, index: int, net: int) -> np.ndarray:
    """Hidden trajectories (trial, time, unit) of one network on the test trials, NaN padding cut off."""
    states = np.asarray(ds["states"].isel(condition=index, net=net).values, float)  # (trial, time, unit)
    units = np.isfinite(states).any(axis=(0, 1))
    times = np.isfinite(states[:, :, units]).all(axis=(0, 2))
    return states[:, times][:, :, units]


def fixed_points(
    path: str | Path, index: int, net: int, *, starts: int = 256, seed: int = 0, iters: int = 2000
) -> FixedPoints:
    """Fixed points under zero input of network ``net`` of condition ``index`` (a few seconds for n 64).

    Starts are states the network visits on the test trials, plus a little noise.
    """
    ds = open_sweep(path)
    hidden = network_states(ds, index, net)  # (trial, time, unit)
    width = train_config(sweep_spec(ds), index).hidden
    if hidden.shape[-1] != width:
        raise ValueError(f"stored states have {hidden.shape[-1]} units, the network {width}")
    model = condition_model(ds, index)
    return find_fixed_points(
        network_step(model, net), sample_starts(hidden, starts, noise=0.01, seed=seed), iters=iters
    )
