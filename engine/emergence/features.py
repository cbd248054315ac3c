"""Feature visualisations of the MLP neurons of a :class:`~engine.transformer.model.Transformer`.

A neuron is one unit of ``blocks.{l}.mlp.hook_post``, the ReLU output of block ``l``'s MLP,
``a = relu(u)`` with ``u`` the unit of ``blocks.{l}.mlp.hook_pre``; a model of width ``d`` has
``mlp_ratio * d`` of them per block. Three views of what drives a neuron:

- Top-activating examples (:func:`top_activating`): over a batch of token sequences, the ``k``
  (sequence, position) pairs where the neuron's activation is largest, each shown as the token
  window ending at that position. Ties keep the lower flat index ``sample * T + position``.
- Activation maximisation (Erhan et al. 2009; Olah et al. 2017; :func:`activation_maximise`):
  gradient ascent on a continuous input ``x`` (L positions × d) that replaces the token
  embeddings at the hook point ``hook_embed``; the position embeddings are added as usual. The
  objective, maximised with Adam from a seeded start for a fixed number of steps, is

      J(x) = u_{L-1}(x) - l2 * mean_t dist(||x_t||, [r_min, r_max])² / r̄²

  the neuron's pre-activation at the last position minus a squared (L2) penalty on how far each
  position's norm lies outside the band of real token-embedding norms (r_min, r_max, mean r̄):
  every real token has zero penalty, so J equals u on any real token sequence, and the
  regulariser keeps the input where the model has seen inputs. The pre-activation is optimised
  rather than ``relu(u)`` so that a neuron that starts silent still has a gradient. The search
  runs in units of r̄ (``x = r̄ z``, Adam on ``z``), so ``lr`` does not depend on the model's
  scale. The result is the iterate with the highest J seen (the start included), read as text
  through the nearest real tokens by cosine similarity at each position.
- Multifaceted visualisation (Nguyen, Yosinski & Clune 2016; :func:`multifaceted`): the
  neuron's top examples are clustered with k-means (on the residual stream entering the MLP,
  ``blocks.{l}.hook_resid_mid``, at the example's position, or on its embedded token window),
  and one activation maximisation per cluster starts from the cluster's mean embedded window;
  distinct facets show the different inputs one neuron responds to.

Guarantee used by the tests: started from the embeddings of a real sequence with ``u > 0``,
the returned activation is at least that sequence's, since ``relu(u) >= u >= J`` everywhere,
``J = u`` at the start and the best J is kept.

Every array lives on the CPU as numpy; the model may live on any device. Nothing here changes
the model: parameters, their gradients and the hook points are as before each call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from engine.chunk import Chunk
from engine.transformer.model import Transformer

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "DEFAULT_LENGTH",
    "REPRESENTATIONS",
    "Facet",
    "MaxResult",
    "TopExamples",
    "activation_maximise",
    "multifaceted",
    "top_activating",
]

DEFAULT_LENGTH = 8  # positions of an optimised input when no start is given
REPRESENTATIONS = ("resid", "window")  # what multifaceted clusters: the MLP's input or the token window
PAD = -1  # token id of a window slot before the sequence start


# -- checks ---------------------------------------------------------------------------------
def _check_layer(model: Transformer, layer: int) -> int:
    cfg = model.cfg
    if cfg.mlp_ratio == 0:
        raise ValueError("mlp_ratio=0: an attention-only model has no MLP neurons to visualise")
    if cfg.input_dim:
        raise ValueError(f"input_dim={cfg.input_dim}: feature visualisation needs a model of integer tokens")
    if not (_is_int(layer) and 0 <= layer < cfg.layers):
        raise ValueError(f"layer={layer!r} is out of range: allowed 0..{cfg.layers - 1}")
    return int(layer)


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _units(model: Transformer) -> int:
    return model.cfg.mlp_ratio * model.cfg.width


def _check_neuron(model: Transformer, neuron: int) -> int:
    n = _units(model)
    if not (_is_int(neuron) and 0 <= neuron < n):
        raise ValueError(f"neuron={neuron!r} is out of range: allowed 0..{n - 1}")
    return int(neuron)


def _as_tokens(model: Transformer, tokens: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(B, T) integer tokens on the model's device, T <= context and ids < vocab."""
    t = torch.as_tensor(tokens)
    if t.ndim != 2 or t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(
            f"tokens of shape {tuple(t.shape)} and dtype {t.dtype}: expected a (batch, time) integer array"
        )
    if t.numel() == 0:
        raise ValueError(f"tokens of shape {tuple(t.shape)}: expected at least one sequence and one position")
    if t.shape[1] > model.cfg.context:
        raise ValueError(f"tokens have T={t.shape[1]} positions: allowed at most context={model.cfg.context}")
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= model.cfg.vocab:
        raise ValueError(f"token ids span {lo}..{hi}: allowed 0..{model.cfg.vocab - 1}")
    return t.to(device=_device(model), dtype=torch.int64)


def _device(model: Transformer) -> torch.device:
    return model.pos_embed.weight.device


def _post(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_post"


def _pre(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_pre"


def _mid(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_mid"


# -- top-activating examples ------------------------------------------------------------------
@dataclass(frozen=True)
class TopExamples:
    """The ``k`` largest activations of each chosen neuron over a token batch, with their windows.

    ``window[n, r]`` holds the tokens at positions ``position - context .. position`` of sequence
    ``sample[n, r]`` (offsets ``-context .. 0``), ``-1`` before the sequence start;
    ``window_value`` the neuron's activation at each of them (NaN before the start), for
    highlighting the text.
    """

    layer: int
    neuron: np.ndarray  # (neuron,) MLP unit index
    value: np.ndarray  # (neuron, rank) activation, descending along rank
    sample: np.ndarray  # (neuron, rank) sequence index in the batch
    position: np.ndarray  # (neuron, rank) position in the sequence
    window: np.ndarray  # (neuron, rank, offset) token ids, -1 before the start
    window_value: np.ndarray  # (neuron, rank, offset) activation at each window token, NaN before the start

    @property
    def context(self) -> int:
        """Tokens shown before each example's position."""
        return self.window.shape[-1] - 1

    @property
    def offset(self) -> np.ndarray:
        """(offset,) position of each window slot relative to the example: -context .. 0."""
        return np.arange(-self.context, 1)

    def to_chunk(self) -> Chunk:
        """The examples as named columns: coordinates ``neuron``, ``rank``, ``offset``."""
        c = Chunk(attrs={"layer": self.layer, "hook": _post(self.layer)})
        k = self.value.shape[1]
        c.add("neuron", "neuron", self.neuron, "MLP neuron", "", coord=True)
        c.add("rank", "rank", np.arange(k), "rank among the largest activations", "", coord=True)
        c.add("offset", "offset", self.offset, "position relative to the example", "tokens", coord=True)
        c.add("top_value", ("neuron", "rank"), self.value, f"activation of the neuron (layer {self.layer} MLP)", "")
        c.add("top_sample", ("neuron", "rank"), self.sample, "sequence of the example in the batch", "")
        c.add("top_position", ("neuron", "rank"), self.position, "position of the example in its sequence", "tokens")
        c.add("top_window", ("neuron", "rank", "offset"), self.window, "token id in the window (-1: before start)", "")
        c.add(
            "top_window_value",
            ("neuron", "rank", "offset"),
            self.window_value,
            "activation of the neuron at each window token",
            "",
        )
        return c

    def to_dataset(self) -> xr.Dataset:
        """:meth:`to_chunk` as an ``xr.Dataset``."""
        return self.to_chunk().to_dataset()


def _top_from(
    acts: torch.Tensor, tokens: torch.Tensor, chosen: np.ndarray, layer: int, k: int, context: int
) -> TopExamples:
    """The top examples from recorded activations ``acts`` (B, T, units) of the batch ``tokens`` (B, T)."""
    b, t = tokens.shape
    sub = acts[..., torch.as_tensor(chosen, device=acts.device)]  # (B, T, N)
    flat = sub.reshape(b * t, -1).T  # (N, B T)
    value, index = torch.sort(flat, dim=1, descending=True, stable=True)  # stable: ties keep the lower index
    value, index = value[:, :k].cpu().numpy(), index[:, :k].cpu().numpy()  # (N, k)
    sample, position = np.divmod(index, t)  # (N, k)
    pos = position[..., None] + np.arange(-context, 1)  # (N, k, W) window positions
    inside = pos >= 0
    pos_c = np.maximum(pos, 0)
    samples = np.broadcast_to(sample[..., None], pos.shape)
    tok = tokens.cpu().numpy()
    window = np.where(inside, tok[samples, pos_c], PAD).astype(np.int64)  # (N, k, W)
    sub_np = sub.cpu().numpy()  # (B, T, N)
    units = np.broadcast_to(np.arange(len(chosen))[:, None, None], pos.shape)
    window_value = np.where(inside, sub_np[samples, pos_c, units], np.nan).astype(np.float32)  # (N, k, W)
    return TopExamples(
        layer=layer,
        neuron=np.asarray(chosen, dtype=np.int64),
        value=value.astype(np.float32),
        sample=sample.astype(np.int64),
        position=position.astype(np.int64),
        window=window,
        window_value=window_value,
    )


def _chosen_neurons(model: Transformer, neurons: int | np.ndarray | list[int] | None) -> np.ndarray:
    n = _units(model)
    if neurons is None:
        return np.arange(n)
    chosen = np.atleast_1d(np.asarray(neurons))
    if chosen.ndim != 1 or chosen.size == 0 or chosen.dtype.kind not in "iu":
        raise ValueError(f"neurons={neurons!r}: expected MLP unit indices (a non-empty list of integers)")
    bad = chosen[(chosen < 0) | (chosen >= n)]
    if bad.size:
        raise ValueError(f"neuron {int(bad[0])} is out of range: allowed 0..{n - 1}")
    return chosen.astype(np.int64)


def _check_k_context(name: str, k: int, context: int, b: int, t: int) -> None:
    if not (_is_int(k) and 1 <= k <= b * t):
        raise ValueError(f"{name}={k!r} is out of range: allowed 1..{b * t} (batch × positions)")
    if not (_is_int(context) and context >= 0):
        raise ValueError(f"context={context!r} is out of range: allowed 0, 1, 2, …")


def top_activating(
    model: Transformer,
    tokens: torch.Tensor | np.ndarray,
    layer: int,
    *,
    k: int = 8,
    neurons: int | np.ndarray | list[int] | None = None,
    context: int = 6,
) -> TopExamples:
    """Each chosen neuron's ``k`` largest activations over ``tokens`` (B, T), with their windows.

    One forward pass records ``blocks.{layer}.mlp.hook_post`` (B, T, units); ``neurons`` picks
    units (default: all). Each example's window is the ``context`` tokens before its position
    and the token at it.
    """
    layer = _check_layer(model, layer)
    tokens = _as_tokens(model, tokens)
    chosen = _chosen_neurons(model, neurons)
    _check_k_context("k", k, context, *tokens.shape)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names=[_post(layer)])
    return _top_from(cache[_post(layer)], tokens, chosen, layer, int(k), int(context))


# -- activation maximisation --------------------------------------------------------------------
@dataclass(frozen=True)
class MaxResult:
    """An optimised input for one neuron, its activation, and its reading as real tokens.

    ``real_activation`` is the largest activation of the neuron at position ``length - 1`` over
    the probe batch given (NaN without one): the same length and position as the optimised
    input, whose search space contains every probe prefix of that length, so a result below it
    is an optimisation that fell short.
    """

    layer: int
    neuron: int
    embedding: np.ndarray  # (position, d) optimised input, in place of the token embeddings
    activation: float  # relu(u) at the last position
    pre_activation: float  # u at the last position
    start_activation: float  # relu(u) at the start
    trace: np.ndarray  # (step,) u at the last position at each iterate, start included (steps + 1)
    nearest_tokens: np.ndarray  # (position, nearest) token ids, most similar first
    nearest_cosine: np.ndarray  # (position, nearest) cosine similarity to those token embeddings
    decoded_activation: float  # relu(u) of the real sequence nearest_tokens[:, 0]
    real_activation: float  # best real activation at position length - 1 of the probe batch (NaN: none)
    real_tokens: np.ndarray  # (position,) the probe sequence prefix that reaches it (empty: none)
    seed: int

    @property
    def length(self) -> int:
        return self.embedding.shape[0]

    @property
    def decoded(self) -> np.ndarray:
        """(position,) the nearest real token at each position: the input read as text."""
        return self.nearest_tokens[:, 0]

    def to_chunk(self) -> Chunk:
        """The result as named columns: coordinates ``position``, ``nearest``, ``step``; scalars as 0-d variables."""
        c = Chunk(attrs={"layer": self.layer, "neuron": self.neuron, "hook": _post(self.layer), "seed": self.seed})
        c.add("position", "position", np.arange(self.length), "position of the optimised input", "tokens", coord=True)
        nearest = np.arange(self.nearest_tokens.shape[1])
        c.add("nearest", "nearest", nearest, "rank by cosine similarity", "", coord=True)
        c.add("step", "step", np.arange(len(self.trace)), "optimisation step", "", coord=True)
        c.add("max_embedding", ("position", "channel"), self.embedding, "optimised input embedding", "")
        c.add("max_trace", "step", self.trace, "pre-activation at the last position", "")
        c.add("max_nearest", ("position", "nearest"), self.nearest_tokens, "nearest real token id", "")
        c.add("max_cosine", ("position", "nearest"), self.nearest_cosine, "cosine similarity to the token", "")
        c.add("max_activation", (), np.float32(self.activation), "activation of the optimised input", "")
        c.add("max_pre_activation", (), np.float32(self.pre_activation), "pre-activation of the optimised input", "")
        c.add("start_activation", (), np.float32(self.start_activation), "activation at the start", "")
        c.add("decoded_activation", (), np.float32(self.decoded_activation), "activation of the nearest tokens", "")
        c.add("real_activation", (), np.float32(self.real_activation), "best real activation, same position", "")
        if len(self.real_tokens):
            c.add("real_tokens", "position", self.real_tokens, "probe prefix of the best real activation", "")
        return c

    def to_dataset(self) -> xr.Dataset:
        """:meth:`to_chunk` as an ``xr.Dataset``."""
        return self.to_chunk().to_dataset()


@dataclass(frozen=True)
class _Scale:
    """Norms of the real token embeddings: mean r̄ and the band [r_min, r_max]."""

    mean: float
    lo: float
    hi: float


def _scale(model: Transformer) -> _Scale:
    norms = model.embed.weight.detach().norm(dim=-1)  # (vocab,)
    return _Scale(float(norms.mean()), float(norms.min()), float(norms.max()))


class _Reached(Exception):
    """Raised at the recorded hook point: the blocks after it are not needed."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value


def _pre_last(model: Transformer, layer: int, neuron: int, x: torch.Tensor) -> torch.Tensor:
    """u at the last position for inputs ``x`` (F, L, d) in place of the token embeddings: (F,), in the graph.

    The forward pass stops at ``blocks.{layer}.mlp.hook_pre``; both interventions are removed on the way out.
    """
    f, length, _ = x.shape
    dummy = torch.zeros(f, length, dtype=torch.int64, device=x.device)  # replaced at hook_embed

    def replace(_: torch.Tensor, __: str) -> torch.Tensor:
        return x

    def stop(pre: torch.Tensor, _: str) -> None:
        raise _Reached(pre[:, -1, neuron])

    try:
        with model.hooks({"hook_embed": replace, _pre(layer): stop}):
            model(dummy)
    except _Reached as reached:
        return reached.value  # (F,)
    raise RuntimeError(f"the forward pass did not reach {_pre(layer)}")


def _objective(u: torch.Tensor, x: torch.Tensor, scale: _Scale, l2: float) -> torch.Tensor:
    """J = u - l2 * mean_t dist(||x_t||, [r_min, r_max])² / r̄², per input: (F,)."""
    norms = x.norm(dim=-1)  # (F, L)
    outside = torch.relu(norms - scale.hi) + torch.relu(scale.lo - norms)  # (F, L) distance to the band
    return u - l2 * (outside / scale.mean).square().mean(-1)


def _ascend(
    model: Transformer,
    layer: int,
    neuron: int,
    start: torch.Tensor,
    *,
    steps: int,
    lr: float,
    l2: float,
    scale: _Scale,
) -> tuple[torch.Tensor, np.ndarray]:
    """Adam on ``F`` independent inputs at once (Adam is elementwise, so rows do not interact).

    ``start`` (F, L, d) -> (best x (F, L, d) by J, trace of u (steps + 1, F)).
    """
    z = (start / scale.mean).clone().requires_grad_(True)  # (F, L, d) in units of r̄
    opt = torch.optim.Adam([z], lr=lr)
    best_x = start.detach().clone()
    best_j = torch.full((start.shape[0],), -torch.inf, device=start.device)
    trace = []
    for i in range(steps + 1):
        x = z * scale.mean  # (F, L, d)
        u = _pre_last(model, layer, neuron, x)  # (F,)
        j = _objective(u, x, scale, l2)  # (F,)
        trace.append(u.detach())
        better = j.detach() > best_j
        best_j = torch.where(better, j.detach(), best_j)
        best_x[better] = x.detach()[better]
        if i == steps:
            break
        (grad,) = torch.autograd.grad(-j.sum(), [z])  # the parameters' .grad stay untouched
        z.grad = grad
        opt.step()
    return best_x, torch.stack(trace).cpu().numpy()


def _nearest(model: Transformer, x: torch.Tensor, nearest: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and cosines of the ``nearest`` most similar token embeddings to each row of ``x`` (..., d)."""
    emb = torch.nn.functional.normalize(model.embed.weight.detach(), dim=-1)  # (vocab, d)
    cos = torch.nn.functional.normalize(x, dim=-1) @ emb.T  # (..., vocab)
    value, index = torch.sort(cos, dim=-1, descending=True, stable=True)
    return index[..., :nearest].cpu().numpy(), value[..., :nearest].cpu().numpy().astype(np.float32)


def _real_best(
    model: Transformer, layer: int, neuron: int, tokens: torch.Tensor | np.ndarray | None, length: int
) -> tuple[float, np.ndarray]:
    """Best activation at position ``length - 1`` over the probe batch, and that sequence's prefix."""
    if tokens is None:
        return float("nan"), np.zeros(0, dtype=np.int64)
    probe = _as_tokens(model, tokens)
    if probe.shape[1] < length:
        raise ValueError(f"probe sequences have T={probe.shape[1]} positions: fewer than length={length}")
    with torch.no_grad():
        _, cache = model.run_with_cache(probe[:, :length], names=[_post(layer)])
    acts = cache[_post(layer)][:, -1, neuron]  # (B,)
    best = int(torch.argmax(acts))  # the first of equal maxima
    return float(acts[best]), probe[best, :length].cpu().numpy().astype(np.int64)


def _check_optimisation(steps: int, lr: float, l2: float, nearest: int, vocab: int, seed: int) -> None:
    if not (_is_int(seed) and 0 <= seed < 2**32):
        raise ValueError(f"seed={seed!r} is out of range: allowed 0..{2**32 - 1}")
    if not (_is_int(steps) and 0 <= steps <= 1_000_000):
        raise ValueError(f"steps={steps!r} is out of range: allowed 0..1000000")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} is out of range: allowed (0, inf)")
    if not (np.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2={l2!r} is out of range: allowed [0, inf)")
    if not (_is_int(nearest) and 1 <= nearest <= vocab):
        raise ValueError(f"nearest={nearest!r} is out of range: allowed 1..{vocab}")


def _start(
    model: Transformer, init: torch.Tensor | np.ndarray | None, length: int | None, seed: int, scale: _Scale
) -> torch.Tensor:
    """The starting input (L, d): ``init`` embeddings (L, d) or tokens (L,), else seeded N(0, r̄²/d) rows."""
    cfg, device = model.cfg, _device(model)
    if init is None:
        length = DEFAULT_LENGTH if length is None else length
        if not (_is_int(length) and 1 <= length <= cfg.context):
            raise ValueError(f"length={length!r} is out of range: allowed 1..{cfg.context}")
        gen = torch.Generator().manual_seed(int(seed))
        z = torch.randn(int(length), cfg.width, generator=gen) / cfg.width**0.5  # (L, d), row norms ≈ 1
        return (z * scale.mean).to(device)
    start = torch.as_tensor(init)
    if start.ndim == 1 and not start.dtype.is_floating_point:  # token ids
        start = model.embed.weight.detach()[_as_tokens(model, start[None])[0]]  # (L, d)
    if start.ndim != 2 or start.shape[1] != cfg.width or not start.dtype.is_floating_point:
        raise ValueError(
            f"init of shape {tuple(start.shape)} and dtype {start.dtype}: expected embeddings (length, {cfg.width}) "
            "or token ids (length,)"
        )
    if not 1 <= start.shape[0] <= cfg.context:
        raise ValueError(f"init has {start.shape[0]} positions: allowed 1..{cfg.context}")
    if length is not None and length != start.shape[0]:
        raise ValueError(f"length={length!r} disagrees with init's {start.shape[0]} positions")
    if not torch.isfinite(start).all():
        raise ValueError("init holds non-finite values")
    return start.to(device=device, dtype=model.embed.weight.dtype)


def _maximise(
    model: Transformer,
    layer: int,
    neuron: int,
    starts: torch.Tensor,
    *,
    steps: int,
    lr: float,
    l2: float,
    nearest: int,
    seed: int,
    tokens: torch.Tensor | np.ndarray | None,
) -> list[MaxResult]:
    """One :class:`MaxResult` per start in ``starts`` (F, L, d), optimised together."""
    scale = _scale(model)
    length = starts.shape[1]
    real, real_tokens = _real_best(model, layer, neuron, tokens, length)
    best, trace = _ascend(model, layer, neuron, starts, steps=steps, lr=lr, l2=l2, scale=scale)  # (F, L, d)
    with torch.no_grad():
        u = _pre_last(model, layer, neuron, best)  # (F,)
        ids, cos = _nearest(model, best, nearest)  # (F, L, nearest)
        decoded = torch.as_tensor(ids[..., 0], device=starts.device)  # (F, L)
        _, cache = model.run_with_cache(decoded, names=[_post(layer)])
        decoded_act = cache[_post(layer)][:, -1, neuron].cpu().numpy()  # (F,)
    best_np, u_np = best.cpu().numpy().astype(np.float32), u.cpu().numpy()
    return [
        MaxResult(
            layer=layer,
            neuron=neuron,
            embedding=best_np[i],
            activation=float(max(u_np[i], 0.0)),
            pre_activation=float(u_np[i]),
            start_activation=float(max(trace[0, i], 0.0)),
            trace=trace[:, i].astype(np.float32),
            nearest_tokens=ids[i],
            nearest_cosine=cos[i],
            decoded_activation=float(decoded_act[i]),
            real_activation=real,
            real_tokens=real_tokens,
            seed=int(seed),
        )
        for i in range(starts.shape[0])
    ]


def activation_maximise(
    model: Transformer,
    layer: int,
    neuron: int,
    *,
    length: int | None = None,
    steps: int = 150,
    lr: float = 0.01,
    l2: float = 1.0,
    init: torch.Tensor | np.ndarray | None = None,
    tokens: torch.Tensor | np.ndarray | None = None,
    nearest: int = 3,
    seed: int,
) -> MaxResult:
    """Optimise an input of ``length`` positions to maximise ``neuron``'s activation at its last position.

    The start is ``init`` (embeddings (L, d) or token ids (L,)) or, without one, ``length``
    (default :data:`DEFAULT_LENGTH`) seeded Gaussian rows of the mean token-embedding norm.
    ``steps`` Adam steps of rate ``lr`` (in units of the mean token-embedding norm) on J (see
    the module docstring), with penalty weight ``l2``. ``tokens``, a probe batch (B, T >= L),
    gives the best real activation at the same position for comparison. ``nearest`` real tokens
    are reported per position. ``seed`` draws the random start (with ``init`` it is only recorded).
    """
    layer = _check_layer(model, layer)
    neuron = _check_neuron(model, neuron)
    _check_optimisation(steps, lr, l2, nearest, model.cfg.vocab, seed)
    start = _start(model, init, length, seed, _scale(model))
    kw = {"steps": int(steps), "lr": float(lr), "l2": float(l2), "nearest": int(nearest)}
    return _maximise(model, layer, neuron, start[None], **kw, seed=seed, tokens=tokens)[0]


# -- multifaceted visualisation -------------------------------------------------------------------
@dataclass(frozen=True)
class Facet:
    """One cluster of a neuron's top-activating examples and its activation maximisation.

    ``members`` are ranks in the neuron's top list (``top_activating(..., k=top, neurons=[neuron])``),
    ascending; the other arrays follow them.
    """

    index: int  # facets are numbered by size, largest first
    members: np.ndarray  # (member,) rank of each example among the neuron's top examples
    sample: np.ndarray  # (member,) sequence in the batch
    position: np.ndarray  # (member,) position in the sequence
    value: np.ndarray  # (member,) activation of the neuron there
    window: np.ndarray  # (member, offset) token window, -1 before the sequence start
    visualisation: MaxResult  # started from the mean embedded window of the members

    @property
    def size(self) -> int:
        return len(self.members)


def _mean_windows(model: Transformer, windows: np.ndarray) -> torch.Tensor:
    """Mean embedding at each offset of ``windows`` (m, W), padding left out: (W, d).

    An offset that is padding in every window gets the mean token embedding.
    """
    emb = model.embed.weight.detach()  # (vocab, d)
    w = torch.as_tensor(windows, device=emb.device)
    inside = (w >= 0).to(emb.dtype)  # (m, W)
    vecs = emb[w.clamp(min=0)] * inside[..., None]  # (m, W, d)
    count = inside.sum(0)[:, None]  # (W, 1)
    mean = vecs.sum(0) / count.clamp(min=1)  # (W, d)
    return torch.where(count > 0, mean, emb.mean(0))


def multifaceted(
    model: Transformer,
    tokens: torch.Tensor | np.ndarray,
    layer: int,
    neuron: int,
    *,
    facets: int = 3,
    top: int = 64,
    context: int = 6,
    represent: str = "resid",
    steps: int = 150,
    lr: float = 0.01,
    l2: float = 1.0,
    nearest: int = 3,
    seed: int,
) -> list[Facet]:
    """The facets of one neuron: its top examples clustered, one activation maximisation per cluster.

    The ``top`` largest activations over ``tokens`` (B, T) with activation > 0 (a silent example
    shows nothing) are clustered into ``facets`` groups by k-means (``random_state=seed``, 10
    starts) on ``represent``: ``resid``, the residual stream entering the MLP at the example's
    position, or ``window``, the embedded token window of ``context + 1`` tokens (padding as zero
    vectors). Each facet's input of ``context + 1`` positions starts from its members' mean
    embedded window; the facets are optimised together. Facets come largest first (ties: the
    one holding the better-ranked example first).
    """
    from sklearn.cluster import KMeans

    layer = _check_layer(model, layer)
    neuron = _check_neuron(model, neuron)
    tokens = _as_tokens(model, tokens)
    _check_k_context("top", top, context, *tokens.shape)
    _check_optimisation(steps, lr, l2, nearest, model.cfg.vocab, seed)
    if represent not in REPRESENTATIONS:
        raise ValueError(f"represent={represent!r} is not allowed: choose one of {', '.join(REPRESENTATIONS)}")
    if not (_is_int(facets) and facets >= 1):
        raise ValueError(f"facets={facets!r} is out of range: allowed 1, 2, 3, …")
    if context + 1 > model.cfg.context:
        raise ValueError(
            f"context={context} gives windows of {context + 1} tokens: allowed at most {model.cfg.context}"
        )
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names=[_mid(layer), _post(layer)])
    ex = _top_from(cache[_post(layer)], tokens, np.array([neuron]), layer, int(top), int(context))
    active = ex.value[0] > 0  # (top,)
    ranks = np.flatnonzero(active)
    if len(ranks) < facets:
        raise ValueError(
            f"neuron {neuron} of layer {layer} is active at {len(ranks)} of the top {top} examples of the batch: "
            f"fewer than facets={facets}"
        )
    sample, position = ex.sample[0, ranks], ex.position[0, ranks]  # (m,)
    windows = ex.window[0, ranks]  # (m, W)
    if represent == "resid":
        features = cache[_mid(layer)].cpu().numpy()[sample, position]  # (m, d)
    else:
        emb = model.embed.weight.detach().cpu().numpy()  # (vocab, d)
        features = np.where((windows >= 0)[..., None], emb[np.maximum(windows, 0)], 0.0).reshape(len(ranks), -1)
    features = features.astype(np.float64)
    distinct = len(np.unique(features, axis=0))
    if distinct < facets:
        raise ValueError(f"the top examples have {distinct} distinct representations: fewer than facets={facets}")
    labels = KMeans(n_clusters=int(facets), n_init=10, random_state=int(seed)).fit_predict(features)  # (m,)
    groups = [np.flatnonzero(labels == c) for c in range(facets)]
    groups.sort(key=lambda g: (-len(g), int(g[0])))
    starts = torch.stack([_mean_windows(model, windows[g]) for g in groups])  # (F, W, d)
    kw = {"steps": int(steps), "lr": float(lr), "l2": float(l2), "nearest": int(nearest)}
    probe = tokens if tokens.shape[1] >= context + 1 else None  # the real comparison needs windows' length
    results = _maximise(model, layer, neuron, starts, **kw, seed=seed, tokens=probe)
    return [
        Facet(
            index=i,
            members=ranks[g],
            sample=sample[g],
            position=position[g],
            value=ex.value[0, ranks[g]],
            window=windows[g],
            visualisation=res,
        )
        for i, (g, res) in enumerate(zip(groups, results, strict=True))
    ]
