"""Fitted summaries of an emergence run: emergence laws per layer, onsets of abrupt transitions.

Works on a whole run or on the part of it stored so far (a live run, an interrupted store): the
fits (:mod:`engine.emergence.fits`) return "insufficient data" rather than fail on short curves.

- Emergence law per layer (Gallego-Feliciano et al. 2025), fitted to the top/median activation
  ratio of each block's output (``top_ratio``) and, where the blocks have an MLP, to the share of
  nonzero MLP activations (``nonzero_share``).
- Logistic onsets (:data:`ONSET_CURVES`) of the task's abrupt transitions: in-context accuracy
  and the strongest head's induction score (``induction``), in-context and in-weights accuracy
  (``icl-bursty``), train and test accuracy (``grokking``, with the grokking delay: the test
  midpoint over the train midpoint), the in-context (trigger) loss (``massive``, ``sparsity``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from engine.emergence.fits import LawFit, LogisticFit, fit_emergence_law, fit_logistic

__all__ = ["LAW_CURVES", "ONSET_CURVES", "curve", "law_fits", "onset_fits", "summary"]

LAW_CURVES = ("top_ratio", "nonzero_share")
ONSET_CURVES: dict[str, tuple[str, ...]] = {
    "massive": ("icl_loss",),
    "sparsity": ("icl_loss",),
    "induction": ("icl_acc", "induction_max"),
    "icl-bursty": ("icl_acc", "iwl_acc"),
    "grokking": ("train_acc", "test_acc"),
}
FINAL = ("icl_acc", "iwl_acc", "icl_loss", "iwl_loss", "bigram_loss", "first_loss", "train_acc", "test_acc",
         "fourier_concentration")  # fmt: skip


def curve(ds, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(probe steps, values) of a scalar curve; ``induction_max`` is the largest head's induction score."""
    steps = np.asarray(ds["probe"].values, dtype=np.float64)
    if name == "induction_max":
        return steps, np.asarray(ds["induction"].values).reshape(len(steps), -1).max(axis=1)
    return steps, np.asarray(ds[name].values, dtype=np.float64)


def law_fits(ds, name: str = "top_ratio") -> list[LawFit]:
    """The emergence law fitted to ``name`` (probe, layer) of each layer."""
    steps = np.asarray(ds["probe"].values, dtype=np.float64)
    values = np.asarray(ds[name].values, dtype=np.float64)  # (probe, layer)
    return [fit_emergence_law(steps, values[:, layer]) for layer in range(values.shape[1])]


def onset_fits(ds) -> dict[str, LogisticFit]:
    """Logistic fits of the task's abrupt curves (:data:`ONSET_CURVES`) present in ``ds``."""
    task = ds.attrs.get("task", "")
    names = [n for n in ONSET_CURVES.get(task, ()) if n == "induction_max" and "induction" in ds or n in ds]
    return {name: fit_logistic(*curve(ds, name)) for name in names}


def _last(ds, name: str, index=-1):
    return float(np.asarray(ds[name].values)[index]) if name in ds else None


def summary(ds) -> dict[str, Any]:
    """Final measures, the emergence-law fit per layer and the onsets, JSON-ready."""
    config = json.loads(ds.attrs.get("config", "{}"))
    n_steps = ds.sizes.get("step", 0)
    out: dict[str, Any] = {
        "engine": "emergence",
        "task": ds.attrs.get("task"),
        "title": ds.attrs.get("title", ""),
        "seed": config.get("seed"),
        "steps": int(ds["step"].values[-1]) if n_steps else 0,
        "probes": int(ds.sizes.get("probe", 0)),
        "final_loss": float(ds["loss"].values[-1]) if n_steps else float("nan"),
        "run_status": ds.attrs.get("run_status", "complete"),
        "final": {name: _last(ds, name) for name in FINAL if name in ds},
        "layers": [],
        "onsets": {name: fit.to_dict() for name, fit in onset_fits(ds).items()},
    }
    if "top_ratio" in ds:
        laws = {name: law_fits(ds, name) for name in LAW_CURVES if name in ds}
        for layer in range(ds.sizes["layer"]):
            row = {
                "layer": layer,
                "top_ratio": _last(ds, "top_ratio", (-1, layer)),
                "top_ratio_initial": _last(ds, "top_ratio", (0, layer)),
                "top_position": int(ds["top_position"].values[-1, layer]),
                "top_dim": int(ds["top_dim"].values[-1, layer]),
                "top_value": _last(ds, "top_value", (-1, layer)),
                "massive_share": _last(ds, "massive_share", (-1, layer)),
                "nonzero_share": _last(ds, "nonzero_share", (-1, layer)),
                "nonzero_share_initial": _last(ds, "nonzero_share", (0, layer)),
                "law": laws["top_ratio"][layer].to_dict(),
            }
            if "nonzero_share" in laws and np.isfinite(ds["nonzero_share"].values[:, layer]).any():
                row["sparsity_law"] = laws["nonzero_share"][layer].to_dict()
            out["layers"].append(row)
    if "induction" in ds:
        ind, prev = ds["induction"].values[-1], ds["prev_token"].values[-1]  # (layer, head)
        out["heads"] = [
            {"layer": l, "head": h, "induction": float(ind[l, h]), "prev_token": float(prev[l, h])}
            for l in range(ind.shape[0])
            for h in range(ind.shape[1])
        ]
    onsets = out["onsets"]
    if "train_acc" in onsets and "test_acc" in onsets:
        train_mid, test_mid = onsets["train_acc"]["midpoint"], onsets["test_acc"]["midpoint"]
        ok = train_mid == train_mid and test_mid == test_mid and train_mid > 0
        out["grokking_delay"] = test_mid / train_mid if ok else float("nan")
    return out
