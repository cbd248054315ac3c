"""Data helpers of the attention dashboard: pooled attention maps, head mosaics, curve rows, token labels,
the probe history of a run and the tables of a real-model probe (numpy only; no Panel, no Bokeh).

Attention patterns are ``(..., query, key)`` arrays. Long sequences are pooled before they reach the
browser: query bins are averaged and key bins summed, so a pooled row is still an attention
distribution (over coarser key bins) and a sink on key 0 keeps its weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MAX_SERIES",
    "DISPLAY_MAX",
    "HISTORY_FLOATS",
    "GRID_PIXELS",
    "bin_edges",
    "pool",
    "tile_size",
    "mosaic",
    "head_series",
    "probe_rows",
    "step_rows",
    "token_labels",
    "bin_labels",
    "bin_ticks",
    "ProbeHistory",
    "real_model_tables",
]

MAX_SERIES = 16  # curves per run: one per head up to this many heads, else one per layer (its top head)
DISPLAY_MAX = 256  # largest enlarged map sent to the browser (query and key bins)
HISTORY_FLOATS = 500_000  # floats kept per probe in a run's history (all heads' pooled maps): 2 MB
GRID_PIXELS = 200_000  # pixels of a head mosaic, gaps aside


# -- pooling and mosaics ------------------------------------------------------------------
def bin_edges(n: int, size: int) -> np.ndarray:
    """Edges of ``min(n, size)`` contiguous bins covering ``0 .. n``: (bins + 1,) int."""
    bins = max(1, min(n, size))
    return np.linspace(0, n, bins + 1).round().astype(np.int64)


def pool(pattern: np.ndarray, size: int) -> np.ndarray:
    """``(..., Q, K)`` -> ``(..., q, k)``, ``q = min(Q, size)``, ``k = min(K, size)``.

    Query bins are averaged and key bins summed: each pooled row sums to what the rows it
    averages sum to. Returns float32; a pattern already small enough comes back unchanged.
    """
    x = np.asarray(pattern, dtype=np.float32)
    nq, nk = x.shape[-2], x.shape[-1]
    if nq <= size and nk <= size:
        return x
    if nk > size:
        x = np.add.reduceat(x, bin_edges(nk, size)[:-1], axis=-1)  # (..., Q, k)
    if nq > size:
        eq = bin_edges(nq, size)
        x = np.add.reduceat(x, eq[:-1], axis=-2) / np.diff(eq)[:, None].astype(np.float32)  # (..., q, k)
    return x.astype(np.float32, copy=False)


def tile_size(layers: int, heads: int, positions: int, *, pixels: int = GRID_PIXELS, cap: int = 64) -> int:
    """Side of one thumbnail in a ``layers x heads`` mosaic: at most ``cap`` and ``pixels`` in all."""
    fit = int(np.sqrt(pixels / max(1, layers * heads)))
    return max(1, min(positions, cap, max(8, fit)))


def mosaic(patterns: np.ndarray, tile: int, gap: int = 1) -> np.ndarray:
    """Thumbnails of every head in one image: ``(L, H, Q, K)`` -> ``(L*(t+gap)-gap, H*(t+gap)-gap)``.

    Head ``(l, h)`` occupies rows ``l*(t+gap) ..`` and columns ``h*(t+gap) ..`` (``t`` the pooled
    size); gaps are NaN. Row 0 of a thumbnail is query 0.
    """
    p = pool(patterns, tile)  # (L, H, q, k)
    n_layers, n_heads, q, k = p.shape
    out = np.full((n_layers * (q + gap) - gap, n_heads * (k + gap) - gap), np.nan, np.float32)
    for layer in range(n_layers):
        for head in range(n_heads):
            r, c = layer * (q + gap), head * (k + gap)
            out[r : r + q, c : c + k] = p[layer, head]
    return out


# -- curves -------------------------------------------------------------------------------
def head_series(layers: int, heads: int, cap: int = MAX_SERIES) -> list[tuple[str, str]]:
    """The curves of one run as ``(key, label)``: every head (``"1_0"``, ``L1 H0``) up to ``cap``
    heads, else one per layer (``"1_top"``): the head of that layer with the strongest sink."""
    if layers * heads <= cap:
        return [(f"{layer}_{head}", f"L{layer} H{head}") for layer in range(layers) for head in range(heads)]
    return [(f"{layer}_top", f"L{layer} top head") for layer in range(layers)]


def _values(data, name: str) -> np.ndarray:
    return np.asarray(data[name].values)


def probe_rows(data, cap: int = MAX_SERIES) -> dict[str, np.ndarray]:
    """Curve rows of every probe in a chunk or dataset: ``step`` and, per series key ``s`` of
    :func:`head_series`, ``nt_s`` / ``tr_s`` (sink score on non-trigger / trigger queries) and
    ``vd_s`` (value drain); per layer ``rp_l`` (residual peak); ``icl``, ``bigram`` (losses) and
    ``rate`` (sink rate). Each column is ``(probe,)``."""
    nt = _values(data, "sink_nontrigger").astype(float)  # (probe, layer, head)
    tr = _values(data, "sink_trigger").astype(float)
    vd = _values(data, "value_drain").astype(float)
    n_probe, n_layers, n_heads = nt.shape
    rows: dict[str, np.ndarray] = {"step": _values(data, "probe").astype(np.int64)}
    if n_layers * n_heads <= cap:
        for layer in range(n_layers):
            for head in range(n_heads):
                key = f"{layer}_{head}"
                rows[f"nt_{key}"], rows[f"tr_{key}"] = nt[:, layer, head], tr[:, layer, head]
                rows[f"vd_{key}"] = vd[:, layer, head]
    else:
        safe = np.where(np.isfinite(nt), nt, -np.inf)
        top = safe.argmax(-1)  # (probe, layer): the head with the strongest sink
        pick = np.arange(n_probe)[:, None], np.arange(n_layers)[None, :], top
        for layer in range(n_layers):
            rows[f"nt_{layer}_top"] = nt[pick][:, layer]
            rows[f"tr_{layer}_top"] = tr[pick][:, layer]
            rows[f"vd_{layer}_top"] = vd[pick][:, layer]
    rp = _values(data, "resid_peak").astype(float)  # (probe, layer)
    for layer in range(n_layers):
        rows[f"rp_{layer}"] = rp[:, layer]
    rows["icl"] = _values(data, "icl_loss").astype(float)
    rows["bigram"] = _values(data, "bigram_loss").astype(float)
    rows["rate"] = _values(data, "sink_rate").astype(float)
    return rows


def step_rows(data) -> dict[str, np.ndarray]:
    """Training-loss rows: ``step``, ``loss`` (step,)."""
    if "step" not in data or "loss" not in data:
        return {"step": np.zeros(0, np.int64), "loss": np.zeros(0)}
    return {"step": _values(data, "step").astype(np.int64), "loss": _values(data, "loss").astype(float)}


# -- tokens -------------------------------------------------------------------------------
def token_labels(tokens: np.ndarray, names, trigger: np.ndarray | None = None) -> list[str]:
    """One label per position: ``"5 'e'"``, ``"· trigger"`` appended at trigger positions.

    ``tokens`` (position,) ids into ``names``, or ``None`` with ``names`` the texts themselves.
    """
    texts = [str(t) for t in names] if tokens is None else [str(names[int(t)]) for t in tokens]
    out = []
    for i, text in enumerate(texts):
        label = f"{i} {text!r}"
        if trigger is not None and i < len(trigger) and bool(trigger[i]):
            label += " · trigger"
        out.append(label)
    return out


def bin_labels(labels: list[str], n: int, size: int) -> list[str]:
    """Labels of the bins of :func:`bin_edges` over the first ``n`` positions: a position's own
    label when a bin holds one, else ``"positions a–b"``."""
    edges = bin_edges(n, size)
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b - a == 1:
            out.append(labels[a] if a < len(labels) else str(a))
        else:
            out.append(f"positions {a}–{b - 1}")
    return out


def bin_ticks(n: int, size: int, texts: list[str] | None = None) -> list[str]:
    """Short axis labels of the bins of :func:`bin_edges`: ``texts[i]`` when every bin is one
    position ``i`` and texts are given, else the first position of each bin."""
    edges = bin_edges(n, size)
    if texts is not None and len(edges) == n + 1:
        return [texts[i] if i < len(texts) else str(i) for i in range(n)]
    return [str(int(a)) for a in edges[:-1]]


# -- a run's probes, kept in memory ---------------------------------------------------------
@dataclass
class ProbeHistory:
    """Every probe of one run so far: its step and every head's attention map (pooled to ``size``).

    ``size`` is fixed by the first probe so that all heads of one probe hold at most
    :data:`HISTORY_FLOATS` floats (and at most :data:`DISPLAY_MAX` bins a side).
    """

    steps: list[int] = field(default_factory=list)
    patterns: list[np.ndarray] = field(default_factory=list)  # each (layer, head, q, k) float32
    size: int = 0
    positions: int = 0  # query positions before pooling

    def extend(self, data) -> int:
        """Append the probes of a chunk or dataset; returns how many were added."""
        pattern = np.asarray(data["pattern"].values)  # (probe, layer, head, query, key)
        steps = _values(data, "probe")
        if not self.size:
            _, n_layers, n_heads, nq, _ = pattern.shape
            fit = int(np.sqrt(HISTORY_FLOATS / max(1, n_layers * n_heads)))
            self.size, self.positions = max(8, min(DISPLAY_MAX, fit)), nq
        for k, step in enumerate(steps):
            self.steps.append(int(step))
            self.patterns.append(pool(pattern[k], self.size))
        return len(steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def last_step(self) -> int:
        """The step of the newest probe (0 before the first)."""
        return self.steps[-1] if self.steps else 0

    def index_at(self, step: int) -> int:
        """Index of the last probe taken at or before ``step`` (0 if none)."""
        return max(0, int(np.searchsorted(np.asarray(self.steps), step, side="right")) - 1)

    @property
    def pooled(self) -> bool:
        return bool(self.patterns) and self.patterns[0].shape[-2] < self.positions


# -- a real model's probe -------------------------------------------------------------------
def _first(data, name: str) -> np.ndarray | None:
    """A variable with its ``probe`` and ``sample`` dims reduced to their first entry, or None."""
    if name not in data:
        return None
    var = data[name]
    values, dims = np.asarray(var.values), list(var.dims)
    for dim in ("probe", "sample"):
        if dim in dims:
            axis = dims.index(dim)
            values = values[(slice(None),) * axis + (0,)]  # a view: a real model's patterns are large
            dims.pop(axis)
    return values


def real_model_tables(ds) -> dict:
    """The pictures of one analysed text, from a dataset of the attention schema (probe length 1).

    Returns ``first_token`` (layer, head): attention to the first token averaged over queries;
    ``sink_rate`` (float) and ``sink_rate_head`` (layer, head); ``top_median`` (layer,) the
    largest activation over the median one, ``top_token`` / ``top_dim`` (layer,) where the largest
    sits and ``top_value`` its value (``None`` when the dataset lacks them); ``resid_norm`` (layer,
    position) or ``None``;
    ``tokens`` (position,) labels; ``pattern`` (layer, head, query, key).
    """
    tables: dict = {
        "first_token": _first(ds, "sink_nontrigger").astype(float),
        "sink_rate": float(_first(ds, "sink_rate")),
        "sink_rate_head": _first(ds, "sink_rate_head"),
        "pattern": _first(ds, "pattern"),
    }
    for name in ("top_median", "top_value", "top_token", "top_dim", "resid_norm", "resid_peak"):
        tables[name] = _first(ds, name)
    if "token_text" in ds:
        texts = [str(t) for t in np.asarray(ds["token_text"].values)]
        tables["tokens"] = token_labels(None, texts)
    elif "probe_tokens" in ds and "token_name" in ds:
        tokens = _first(ds, "probe_tokens")
        trigger = _first(ds, "probe_trigger")
        tables["tokens"] = token_labels(tokens, np.asarray(ds["token_name"].values), trigger)
    else:
        tables["tokens"] = [str(i) for i in range(tables["pattern"].shape[-1])]
    return tables
