"""Configs validate on construction and name the field, the value and the allowed range."""

import math

import pytest

from engine.spiking import LIFParams, SpikingConfig, preset


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"scale": 0}, ["scale=0", "(0, 16]"]),
        ({"dt": -1}, ["dt=-1", "(0, 1] ms"]),
        ({"duration": math.nan}, ["duration=nan", "not finite"]),
        ({"model": "hh"}, ["model='hh'", "coba"]),
        ({"model": "brunel"}, ["regime", "A, B, C, D"]),
        ({"model": "coba", "regime": "B"}, ["regime='B'", "only model brunel"]),
        ({"seed": 1.5}, ["seed=1.5", "not an integer"]),
        ({"sample_interval": 0.25}, ["sample_interval=0.25", "whole number of time steps"]),
    ],
)
def test_bad_run_settings_raise_naming_field_value_range(kwargs, words):
    with pytest.raises(ValueError) as err:
        SpikingConfig(**kwargs)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"g": "nan"}, ["g=nan", "not finite"]),
        ({"g": -1.0}, ["g=-1", "[0, 10000]"]),
        ({"tau_m": 0}, ["tau_m=0", "(0, 10000] ms"]),
        ({"v_reset": -40.0}, ["v_reset=-40", "below v_th"]),
        ({"nope": 1}, ["unknown parameter 'nope'"]),
        ({"wi": -1.0}, ["wi=-1", "conductance"]),
    ],
)
def test_bad_network_parameters_raise(changes, words):
    with pytest.raises(ValueError) as err:
        SpikingConfig().with_settings(**changes)
    for word in words:
        assert word in str(err.value)


def test_presets_carry_published_parameters():
    coba = preset("coba")
    assert (coba.n_exc, coba.n_inh, coba.we, coba.wi, coba.drive, coba.delay) == (3200, 800, 0.6, 6.7, 20.0, 0.0)
    assert coba.p_conn * coba.n == pytest.approx(80.0)
    assert preset("coba", scale=4).p_conn * 16000 == pytest.approx(80.0)
    pynn = preset("coba-pynn")
    assert (pynn.we, pynn.wi, pynn.delay, pynn.kick_sources, pynn.kick_rate) == (0.4, 5.1, 0.2, 20, 100.0)
    cuba = preset("cuba")
    assert (cuba.v_rest, cuba.we, cuba.wi, cuba.synapse) == (-49.0, 1.62, -9.0, "cuba")
    for regime, (g, eta) in {"A": (3, 2), "B": (6, 4), "C": (5, 2), "D": (4.5, 0.9)}.items():
        b = preset("brunel", regime=regime)
        assert (b.n_exc, b.n_inh, b.c_exc, b.c_inh, b.delay, b.t_ref) == (10000, 2500, 1000, 250, 1.5, 2.0)
        assert b.g == pytest.approx(g) and b.eta == pytest.approx(eta)
        assert b.nu_thr == pytest.approx(10.0)


def test_derived_names_set_the_underlying_fields():
    p = preset("brunel", regime="C").with_changes(g=4.0, eta=1.5)
    assert p.wi == pytest.approx(-0.4) and p.ext_rate == pytest.approx(15.0)
    assert SpikingConfig().with_settings(g="10").params.wi == pytest.approx(6.0)


def test_config_round_trips_through_json():
    cfg = SpikingConfig(model="brunel", regime="D", scale=0.1, seed=7).with_settings(g=5.5)
    again = SpikingConfig.from_dict(__import__("json").loads(cfg.to_json()))
    assert again == cfg


def test_describe_lists_every_validated_field():
    names = {row["name"] for row in LIFParams.describe()}
    assert {"tau_m", "we", "wi", "delay", "ext_rate"} <= names


def test_recorded_neurons_can_be_chosen():
    from engine.spiking import run

    cfg = SpikingConfig(model="coba", scale=0.1, duration=0.02).with_settings(record_ids="7, 3,399")
    assert cfg.record_ids == (3, 7, 399)
    ds = run(cfg)
    assert list(ds["recorded"].values) == [3, 7, 399] and ds["v"].shape == (20, 3)
    with pytest.raises(ValueError, match="record_ids contains 400"):
        SpikingConfig(model="coba", scale=0.1, record_ids=(400,))
    with pytest.raises(ValueError, match="record_ids='a'"):
        SpikingConfig(model="coba", scale=0.1).with_settings(record_ids="a")
