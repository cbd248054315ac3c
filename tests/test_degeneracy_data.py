"""What the degeneracy dashboard draws, from a hand-built sweep dataset: typed values, the knobs
of a task, MDS points and degeneracy levels over converged networks of finished conditions only,
and trajectories with their NaN padding cut off."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from engine.rnn.sweep import network_means
from explorer.degeneracy_data import (
    build_spec,
    done_conditions,
    knobs_for,
    levels,
    mds_points,
    network_states,
    parse_values,
)


def make_sweep(seed: int = 0) -> xr.Dataset:
    """Three conditions of four networks: the last not finished, network 3 of condition 0 not converged."""
    rng = np.random.default_rng(seed)
    c, k, trials, steps, width = 3, 4, 2, 5, 6
    conv = np.ones((c, k), bool)
    conv[0, 3] = False
    mats = {}
    for var in ("dsa", "pif"):
        m = rng.uniform(0.1, 1.0, (c, k, k))
        m = 0.5 * (m + m.transpose(0, 2, 1))
        m[:, np.arange(k), np.arange(k)] = 0.0
        m[~conv[:, :, None] | ~conv[:, None, :]] = np.nan  # NaN outside converged networks
        mats[var] = (("condition", "net", "net2"), m, {"long_name": f"{var} distance", "units": ""})
    states = rng.standard_normal((c, k, trials, steps, width)).astype(np.float32)
    states[1, :, :, :, 4:] = np.nan  # a narrower condition
    states[1, :, :, 3:, :] = np.nan  # with shorter trials
    return xr.Dataset(
        {
            **mats,
            "converged": (("condition", "net"), conv),
            "ood_mse": (("condition", "net"), rng.uniform(1e-4, 1e-3, (c, k)), {"long_name": "OOD", "units": "MSE"}),
            "sigma_ood": (("condition",), rng.uniform(1e-5, 1e-4, c)),
            "n_converged": (("condition",), conv.sum(1)),
            "done": (("condition",), np.array([True, True, False])),
            "states": (("condition", "net", "trial", "time", "unit"), states),
        },
        coords={"channels": ("condition", [1, 2, 3])},
        attrs={"knob": "channels", "task": "flipflop"},
    )


@pytest.mark.parametrize(
    ("text", "values"),
    [("1,3", (1, 3)), (" 0.5, 2 ,", (0.5, 2)), ("1e-3,0", (0.001, 0)), ("true,false", (True, False)), ("", ())],
)
def test_typed_values(text, values):
    assert parse_values(text) == values


def test_bad_typed_values_name_the_field():
    with pytest.raises(ValueError, match=r"values='1,x': 'x' is not a number"):
        parse_values("1,x")
    with pytest.raises(ValueError, match=r"channels=0 is out of range"):
        build_spec(task="flipflop", knob="channels", values="0,1", seeds=3, hidden=16, max_steps=10, lr=0.01)
    with pytest.raises(ValueError, match=r"seeds=1 is out of range"):
        build_spec(task="flipflop", knob="channels", values="1", seeds=1, hidden=16, max_steps=10, lr=0.01)


def test_gamma_sweeps_use_the_feature_learning_parameterisation():
    spec = build_spec(task="sine", knob="gamma", values="0.5,2", seeds=2, hidden=8, max_steps=10, lr=0.01)
    assert spec.parameterisation == "mup" and spec.values == (0.5, 2)


def test_knobs_of_a_task():
    assert knobs_for("flipflop")[:2] == ["channels", "steps"]
    assert knobs_for("path")[-4:] == ["hidden", "gamma", "nuclear", "l1"]


def test_mds_points_cover_converged_networks_of_finished_conditions():
    ds = make_sweep()
    assert list(done_conditions(ds)) == [0, 1]
    pts = mds_points(ds, "dsa")
    assert list(pts["condition"]) == [0, 0, 0, 1, 1, 1, 1]
    assert list(pts["net"]) == [0, 1, 2, 0, 1, 2, 3]
    assert set(pts["label"]) == {"channels=1", "channels=2"}
    # each condition is embedded on its own: its points keep the condition's distances
    first = np.stack([pts["x"][:3], pts["y"][:3]], 1)
    d = np.linalg.norm(first[:, None] - first[None], axis=-1)
    m = ds["dsa"].values[0][:3, :3]
    assert np.corrcoef(d[np.triu_indices(3, 1)], m[np.triu_indices(3, 1)])[0, 1] > 0.9


def test_levels_give_mean_and_spread_of_network_means():
    ds = make_sweep()
    per_condition, per_network = levels(ds)
    assert list(per_condition["condition"]) == [0, 1]
    assert list(per_condition["n_converged"]) == [3, 4]
    for i in (0, 1):
        means = network_means(ds["dsa"].values[i], ds["converged"].values[i])
        assert per_condition["dsa_mean"][i] == pytest.approx(means.mean())
        assert per_condition["dsa_hi"][i] - per_condition["dsa_mean"][i] == pytest.approx(means.std(ddof=1))
    assert per_condition["sigma_ood"][1] == pytest.approx(ds["sigma_ood"].values[1])
    assert len(per_network["ood_mse"]) == 7 and 3 not in per_network["net"][per_network["condition"] == 0]


def test_network_states_cut_the_padding():
    ds = make_sweep()
    assert network_states(ds, 0, 1).shape == (2, 5, 6)
    narrow = network_states(ds, 1, 2)
    assert narrow.shape == (2, 3, 4) and np.isfinite(narrow).all()
