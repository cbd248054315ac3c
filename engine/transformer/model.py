"""A tiny decoder-only transformer with named hook points and four attention variants.

The model of the attention-sink studies (Guo et al. 2024): learned token and position
embeddings, ``layers`` pre-LayerNorm blocks (causal self-attention, then a ReLU MLP of width
``mlp_ratio * width``), a final LayerNorm and an untied unembedding. There are no biases
anywhere: every linear map is ``bias=False`` and every LayerNorm has a gain only.

Attention variants (``TransformerConfig.attention``), with ``s = q kᵀ / sqrt(d_h)`` and the
causal mask setting the scores of future keys to ``-inf``:

- ``softmax``: ``A = softmax(s)`` over the keys ``j <= i``.
- ``relu``: ``A = relu(s) / (i + 1)`` for the query at position ``i`` (0-based); no softmax, so a
  row need not sum to 1 and a head can attend to nothing.
- ``gated-head`` / ``gated-elem`` (Qiu et al. 2025): softmax attention whose per-head output
  ``z = A v`` is multiplied by ``sigmoid(g)`` before the output projection, the gate ``g`` a
  bias-free linear map of the attention layer's input (the LayerNormed residual): one scalar per
  head (``Linear(d, H)``) or one per channel (``Linear(d, d)``).

Two options serve the in-context-learning studies (Reddy 2023; Singh et al. 2024):
``mlp_ratio=0`` gives attention-only blocks (no MLP and no second LayerNorm), and ``input_dim > 0``
takes real input vectors ``(B, T, input_dim)`` through a bias-free linear map ``embed_in``
instead of integer tokens (``vocab`` is then the number of output classes).

Initialisation (nanoGPT-style): every weight matrix (embeddings, linear maps) ~ N(0, 0.02²),
every LayerNorm gain = 1; there is no residual-projection rescaling. Each matrix is drawn from its own
``torch.Generator``, seeded from the keyword-only ``seed`` and the parameter's name: the same
config and seed give identical weights whatever the global random state (which construction
leaves untouched), and two attention variants at one seed share every weight they have in common
(the gate is the only extra), so a comparison isolates the variant.

Hook points (TransformerLens naming) sit on every internal value; ``model.hook_names()`` lists
them in forward order. Per block ``l``, with B batch, T positions, d width, H heads, d_h head
width::

    hook_embed, hook_pos_embed                       (B, T, d)
    blocks.{l}.hook_resid_pre                        (B, T, d)
    blocks.{l}.attn.hook_q / hook_k / hook_v         (B, H, T, d_h)
    blocks.{l}.attn.hook_attn_scores                 (B, H, T_q, T_k)  scaled, future keys -inf
    blocks.{l}.attn.hook_pattern                     (B, H, T_q, T_k)  the attention weights A
    blocks.{l}.attn.hook_gate                        (B, H, T, 1) gated-head, (B, H, T, d_h) gated-elem
    blocks.{l}.attn.hook_z                           (B, H, T, d_h)    A v, after the gate
    blocks.{l}.hook_attn_out                         (B, T, d)
    blocks.{l}.hook_resid_mid                        (B, T, d)
    blocks.{l}.mlp.hook_pre / hook_post              (B, T, mlp_ratio d)  before / after the ReLU
    blocks.{l}.hook_mlp_out                          (B, T, d)
    blocks.{l}.hook_resid_post                       (B, T, d)
    hook_ln_final                                    (B, T, d)

``hook_gate`` exists only in the gated variants; the MLP hook points and ``hook_resid_mid`` only
when ``mlp_ratio > 0``. Recording is opt-in through a name filter
(:meth:`Transformer.run_with_cache`, :meth:`Transformer.recording`); interventions are
functions ``fn(tensor, name) -> tensor | None`` added with :meth:`Transformer.add_hook` or the
:meth:`Transformer.hooks` context, and take part in autograd. With nothing recorded and no
interventions, a hook point costs one attribute check.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from engine.config import Config, choice, integer

__all__ = [
    "ATTENTIONS",
    "OPTIMIZERS",
    "HookFn",
    "HookPoint",
    "Transformer",
    "TransformerConfig",
    "make_optimizer",
]

ATTENTIONS = ("softmax", "relu", "gated-head", "gated-elem")
OPTIMIZERS = ("adamw", "adam", "sgd")
INIT_STD = 0.02  # standard deviation of every initial weight matrix

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]
NameFilter = str | Iterable[str] | Callable[[str], bool]


@dataclass(frozen=True)
class TransformerConfig(Config):
    """Shape and attention variant of a :class:`Transformer` (the seed is given to the model)."""

    vocab: int = integer(67, 2, 1_000_000, doc="token vocabulary size (65 characters + BOS 65 + delimiter 66)")
    context: int = integer(64, 1, 65_536, doc="largest number of positions (learned position embeddings)")
    layers: int = integer(2, 1, 48, doc="transformer blocks")
    heads: int = integer(2, 1, 1024, doc="attention heads per block")
    width: int = integer(64, 1, 65_536, doc="residual stream width d (a multiple of heads)")
    mlp_ratio: int = integer(4, 0, 64, doc="MLP hidden width as a multiple of d; 0: attention-only blocks")
    input_dim: int = integer(0, 0, 65_536, doc="0: integer tokens; > 0: real input vectors of this size")
    attention: str = choice("softmax", ATTENTIONS, doc="attention variant: softmax, relu, gated-head, gated-elem")

    def check(self) -> None:
        if self.width % self.heads:
            raise ValueError(
                f"width={self.width} is not divisible by heads={self.heads}: choose a width that is a multiple of heads"
            )

    @property
    def head_dim(self) -> int:
        """Width of one head, d_h = width / heads."""
        return self.width // self.heads


class HookPoint(nn.Module):
    """An identity on a named value that can record it and run interventions on it.

    A disabled hook point returns its input after one attribute check. When active it first
    applies its interventions in the order they were added (each ``fn(x, name)`` returns a
    replacement tensor or ``None`` to keep ``x``), then, if recording, stores the resulting
    tensor in the cache under its name (detached unless asked otherwise). The model sets
    ``name``; use the model's ``add_hook``/``hooks``/``recording`` rather than torch's
    ``register_forward_hook``, which a hook point bypasses for speed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name = ""  # full dotted name, set by the owning model
        self.active = False  # the only thing the fast path reads
        self._fns: list[HookFn] = []
        self._cache: dict[str, torch.Tensor] | None = None
        self._detach = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        for fn in self._fns:
            out = fn(x, self.name)
            if out is not None:
                x = out
        if self._cache is not None:
            self._cache[self.name] = x.detach() if self._detach else x
        return x

    __call__ = forward  # skip nn.Module's hook dispatch: a plain call and one attribute check

    def add_hook(self, fn: HookFn) -> None:
        """Run ``fn(x, name)`` on this value at every forward pass until removed."""
        self._fns.append(fn)
        self._update()

    def remove_hooks(self, fn: HookFn | None = None) -> None:
        """Remove ``fn`` (every occurrence), or all interventions when ``fn`` is None."""
        self._fns = [] if fn is None else [f for f in self._fns if f is not fn]
        self._update()

    def _remove_last(self, fn: HookFn) -> None:
        """Remove the most recently added occurrence of ``fn`` (one only)."""
        for i in range(len(self._fns) - 1, -1, -1):
            if self._fns[i] is fn:
                del self._fns[i]
                break
        self._update()

    def _set_cache(self, cache: dict[str, torch.Tensor] | None, detach: bool = True) -> None:
        self._cache, self._detach = cache, detach
        self._update()

    def _update(self) -> None:
        self.active = bool(self._fns) or self._cache is not None

    def extra_repr(self) -> str:
        return f"name={self.name!r}, hooks={len(self._fns)}, recording={self._cache is not None}"


class Attention(nn.Module):
    """Causal multi-head self-attention in one of the four variants, without biases."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d, h = cfg.width, cfg.heads
        self.heads, self.head_dim, self.kind = h, cfg.head_dim, cfg.attention
        self.scale = 1.0 / math.sqrt(cfg.head_dim)
        self.query = nn.Linear(d, d, bias=False)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d, bias=False)
        self.gate = None
        if cfg.attention == "gated-head":
            self.gate = nn.Linear(d, h, bias=False)  # one gate per head
        elif cfg.attention == "gated-elem":
            self.gate = nn.Linear(d, d, bias=False)  # one gate per channel
        self.out = nn.Linear(d, d, bias=False)
        self.hook_q = HookPoint()
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()
        if self.gate is not None:
            self.hook_gate = HookPoint()
        self.hook_z = HookPoint()

    def forward(self, x: torch.Tensor, future: torch.Tensor, inv_count: torch.Tensor) -> torch.Tensor:
        """x (B, T, d) LayerNormed residual; future (T, T) True above the diagonal; inv_count (T, 1) = 1/(i+1)."""
        b, t, d = x.shape
        h, dh = self.heads, self.head_dim
        q = self.hook_q(self.query(x).view(b, t, h, dh).transpose(1, 2))  # (B, H, T, d_h)
        k = self.hook_k(self.key(x).view(b, t, h, dh).transpose(1, 2))  # (B, H, T, d_h)
        v = self.hook_v(self.value(x).view(b, t, h, dh).transpose(1, 2))  # (B, H, T, d_h)
        scores = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, T_q, T_k)
        scores = self.hook_attn_scores(scores.masked_fill(future, float("-inf")))
        if self.kind == "relu":
            pattern = torch.relu(scores) * inv_count  # (B, H, T_q, T_k); masked keys give relu(-inf) = 0
        else:
            pattern = torch.softmax(scores, dim=-1)  # (B, H, T_q, T_k); rows sum to 1 over j <= i
        pattern = self.hook_pattern(pattern)
        z = pattern @ v  # (B, H, T, d_h)
        if self.gate is not None:
            g = torch.sigmoid(self.gate(x))  # (B, T, H) or (B, T, d)
            g = g.transpose(1, 2).unsqueeze(-1) if self.kind == "gated-head" else g.view(b, t, h, dh).transpose(1, 2)
            z = z * self.hook_gate(g)  # (B, H, T, 1 or d_h) broadcast over (B, H, T, d_h)
        z = self.hook_z(z)  # (B, H, T, d_h)
        return self.out(z.transpose(1, 2).reshape(b, t, d))  # (B, T, d)


class MLP(nn.Module):
    """Bias-free ReLU MLP d -> mlp_ratio d -> d."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.up = nn.Linear(cfg.width, cfg.mlp_ratio * cfg.width, bias=False)
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()
        self.down = nn.Linear(cfg.mlp_ratio * cfg.width, cfg.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(self.up(x))  # (B, T, mlp_ratio d)
        post = self.hook_post(torch.relu(pre))  # (B, T, mlp_ratio d)
        return self.down(post)  # (B, T, d)


class Block(nn.Module):
    """Pre-LayerNorm block: x + attn(ln1(x)), then + mlp(ln2(.))."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.ln1 = nn.LayerNorm(cfg.width, bias=False)
        self.attn = Attention(cfg)
        self.hook_attn_out = HookPoint()
        self.mlp = None
        if cfg.mlp_ratio:
            self.hook_resid_mid = HookPoint()
            self.ln2 = nn.LayerNorm(cfg.width, bias=False)
            self.mlp = MLP(cfg)
            self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor, future: torch.Tensor, inv_count: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)  # (B, T, d)
        x = x + self.hook_attn_out(self.attn(self.ln1(x), future, inv_count))  # (B, T, d)
        if self.mlp is None:  # attention-only block
            return self.hook_resid_post(x)
        x = self.hook_resid_mid(x)
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln2(x))))  # (B, T, d)


class Transformer(nn.Module):
    """Decoder-only transformer: ``model(tokens (B, T) int64) -> logits (B, T, vocab)``.

    ``seed`` (keyword-only) fixes every initial weight; ``device`` is where the weights live
    (they are drawn on the CPU first, so a seed gives the same weights on any device).
    """

    def __init__(self, cfg: TransformerConfig, *, seed: int, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.cfg = cfg
        with torch.device("meta"):  # shapes only: no default init, no draws from the global RNG
            if cfg.input_dim:
                self.embed_in = nn.Linear(cfg.input_dim, cfg.width, bias=False)  # real input vectors
            else:
                self.embed = nn.Embedding(cfg.vocab, cfg.width)
            self.pos_embed = nn.Embedding(cfg.context, cfg.width)
            self.hook_embed = HookPoint()
            self.hook_pos_embed = HookPoint()
            self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
            self.ln_final = nn.LayerNorm(cfg.width, bias=False)
            self.hook_ln_final = HookPoint()
            self.unembed = nn.Linear(cfg.width, cfg.vocab, bias=False)
        self.to_empty(device="cpu")
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.ndim >= 2:  # each matrix from its own stream: variants share every common weight
                    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(name.encode()))
                    p.normal_(0.0, INIT_STD, generator=gen)
                else:
                    p.fill_(1.0)  # LayerNorm gains
        n = cfg.context
        future = torch.ones(n, n, dtype=torch.bool).triu(1)  # (T_q, T_k) True where the key is in the future
        inv_count = 1.0 / torch.arange(1, n + 1, dtype=torch.float32).unsqueeze(1)  # (T_q, 1) = 1/(i+1)
        self.register_buffer("future", future, persistent=False)
        self.register_buffer("inv_count", inv_count, persistent=False)
        self.hook_points: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_points[name] = module
        self.to(device)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) ints, or (B, T, input_dim) reals when input_dim > 0; T <= context -> logits (B, T, vocab)."""
        if self.cfg.input_dim:
            if tokens.ndim != 3 or tokens.shape[-1] != self.cfg.input_dim or not tokens.dtype.is_floating_point:
                raise ValueError(
                    f"inputs of shape {tuple(tokens.shape)} and dtype {tokens.dtype}: "
                    f"expected a (batch, time, {self.cfg.input_dim}) real tensor"
                )
        elif tokens.ndim != 2 or tokens.dtype.is_floating_point or tokens.dtype.is_complex:
            raise ValueError(
                f"tokens of shape {tuple(tokens.shape)} and dtype {tokens.dtype}: "
                "expected a (batch, time) integer tensor"
            )
        b, t = tokens.shape[:2]
        if t > self.cfg.context:
            raise ValueError(f"tokens have T={t} positions: allowed at most context={self.cfg.context}")
        x = self.hook_embed(self.embed_in(tokens) if self.cfg.input_dim else self.embed(tokens))  # (B, T, d)
        x = x + self.hook_pos_embed(self.pos_embed.weight[:t].expand(b, t, -1))  # (B, T, d)
        future, inv_count = self.future[:t, :t], self.inv_count[:t]
        for block in self.blocks:
            x = block(x, future, inv_count)  # (B, T, d)
        return self.unembed(self.hook_ln_final(self.ln_final(x)))  # (B, T, vocab)

    # -- hook points ------------------------------------------------------------------------
    def hook_names(self) -> list[str]:
        """Every hook point name, in forward order."""
        return list(self.hook_points)

    def _select(self, names: NameFilter | None) -> list[HookPoint]:
        """The hook points picked by ``names``: None (all), a name, names, or a predicate on names."""
        if names is None:
            return list(self.hook_points.values())
        if callable(names):
            return [hp for name, hp in self.hook_points.items() if names(name)]
        wanted = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in wanted if n not in self.hook_points]
        if unknown:
            raise ValueError(f"unknown hook point {unknown[0]!r}: known are {', '.join(self.hook_points)}")
        return [self.hook_points[n] for n in dict.fromkeys(wanted)]

    def add_hook(self, names: NameFilter, fn: HookFn) -> None:
        """Run the intervention ``fn(tensor, name) -> tensor | None`` at the chosen hook points."""
        for hp in self._select(names):
            hp.add_hook(fn)

    def remove_hooks(self, names: NameFilter | None = None, fn: HookFn | None = None) -> None:
        """Remove interventions: ``fn`` only or all of them, at the chosen hook points (default: all)."""
        for hp in self._select(names):
            hp.remove_hooks(fn)

    @contextmanager
    def hooks(self, fns: Mapping[str, HookFn] | Iterable[tuple[NameFilter, HookFn]]) -> Iterator[Transformer]:
        """Interventions for the duration of a ``with`` block: ``{name: fn}`` or ``[(names, fn), ...]``.

        On exit exactly the interventions added here are removed (others stay), even on error.
        """
        pairs = list(fns.items()) if isinstance(fns, Mapping) else list(fns)
        added: list[tuple[HookPoint, HookFn]] = []
        try:
            for names, fn in pairs:
                for hp in self._select(names):
                    hp.add_hook(fn)
                    added.append((hp, fn))
            yield self
        finally:
            for hp, fn in reversed(added):
                hp._remove_last(fn)

    @contextmanager
    def recording(self, names: NameFilter | None = None, *, detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
        """Record the chosen hook points during a ``with`` block into the yielded dict (name -> tensor).

        Values are detached unless ``detach=False``, which keeps them in the autograd graph.
        """
        cache: dict[str, torch.Tensor] = {}
        chosen = self._select(names)
        previous = [(hp, hp._cache, hp._detach) for hp in chosen]
        for hp in chosen:
            hp._set_cache(cache, detach)
        try:
            yield cache
        finally:
            for hp, old, old_detach in previous:
                hp._set_cache(old, old_detach)

    def run_with_cache(
        self, tokens: torch.Tensor, names: NameFilter | None = None, *, detach: bool = True
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward pass that also returns the values at the chosen hook points (default: all).

        ``names`` is None, a name, an iterable of names or a predicate ``name -> bool``. Returns
        ``(logits (B, T, vocab), cache)``; the cache is in forward order. Recording does not
        change the logits.
        """
        with self.recording(names, detach=detach) as cache:
            logits = self(tokens)
        return logits, cache


def make_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    *,
    weight_decay: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.99),
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """An optimizer over ``model``'s parameters: ``adamw``, ``adam`` or ``sgd`` (with momentum).

    As in nanoGPT, weight decay applies to the weight matrices (embeddings, linear maps) and not
    to the LayerNorm gains. AdamW decays decoupled from the gradient; Adam and SGD add it to the
    gradient as an L2 penalty (pass ``weight_decay=0`` for none). ``betas`` apply to the Adams,
    ``momentum`` to SGD.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r} is not allowed: choose one of {', '.join(OPTIMIZERS)}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} is out of range: allowed (0, inf)")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay={weight_decay!r} is out of range: allowed [0, inf)")
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)
