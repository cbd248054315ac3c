"""Transformer task runs: Bigram-Backcopy language modelling and repeated random sequences.

- :class:`BigramRun` (tasks ``massive`` and ``sparsity``): a transformer with a ReLU MLP trained
  on next-token prediction over Bigram-Backcopy (:mod:`engine.transformer.tasks`), the language
  of the attention-sink studies. Its probe adds the losses on the probe batch, split into
  in-context (trigger) and bigram queries.
- :class:`InductionRun` (task ``induction``): an attention-only transformer trained on
  associative recall over random tokens: in each sequence of ``T = 2n + 1`` tokens (``n =
  repeat``) uniform over ``vocab``, ``n/2`` pairs ``a b`` are planted twice at random places (``a b
  ... a b``), and the loss is taken on the second ``b`` of each pair, which only the context can
  tell. The offsets are random, so no head can predict from positions alone; the circuit that
  solves it is the induction circuit (a previous-token head composing with an induction head;
  Olsson et al. 2022). The probes use the classic diagnostic, ``BOS, r_1..r_n, r_1..r_n``: the
  first copy is unpredictable (loss log vocab), the second predictable only in context, and the
  in-context accuracy and the heads' prefix-matching scores jump when an induction head forms.

Both expose the inputs that :func:`layer_measures` probes: ``probe_inputs`` (the task's own probe
batch) and ``repeat_inputs`` with ``repeat_n`` (repeated random sequences for the induction and
previous-token scores).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from engine.emergence.base import Probed, TaskRun
from engine.emergence.config import EmergenceConfig
from engine.emergence.measures import (
    induction_score,
    massive_share,
    nonzero_share,
    previous_token_score,
    top_location,
    top_median_ratio,
)
from engine.transformer.model import Transformer, TransformerConfig, make_optimizer
from engine.transformer.tasks import BigramBackcopy, query_masks

__all__ = ["BigramRun", "InductionRun", "layer_measures", "repeated_tokens"]


def repeated_tokens(n_seq: int, n: int, vocab: int, bos: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_seq, 2n + 1)`` int64: ``BOS, r_1..r_n, r_1..r_n`` with r uniform over ``0 .. vocab-1``."""
    r = rng.integers(0, vocab, size=(n_seq, n))  # (n_seq, n)
    return np.concatenate([np.full((n_seq, 1), bos), r, r], axis=1).astype(np.int64)


@torch.no_grad()
def layer_measures(
    model: Transformer, inputs: torch.Tensor, repeat_inputs: torch.Tensor, repeat_n: int
) -> tuple[dict[str, Probed], torch.Tensor]:
    """Per-layer activation measures on ``inputs`` and per-head scores on ``repeat_inputs``.

    Returns the measures and the logits of ``inputs``: ``top_ratio``, ``top_position``,
    ``top_dim``, ``top_value``, ``massive_share``, ``nonzero_share`` (layer,) from each block's
    output and MLP (``nonzero_share`` is NaN for attention-only blocks); ``induction``,
    ``prev_token`` (layer, head) on the repeated sequences. One forward pass when the two inputs
    are the same tensor, two otherwise.
    """
    layers = model.cfg.layers
    names = [f"blocks.{l}.hook_resid_post" for l in range(layers)]
    if model.cfg.mlp_ratio:
        names += [f"blocks.{l}.mlp.hook_post" for l in range(layers)]
    pattern_names = [f"blocks.{l}.attn.hook_pattern" for l in range(layers)]
    same = repeat_inputs is inputs
    logits, cache = model.run_with_cache(inputs, names=names + pattern_names if same else names)
    rep = cache if same else model.run_with_cache(repeat_inputs, names=pattern_names)[1]
    ratio, pos, dim, value, massive, nonzero = ([] for _ in range(6))
    for l in range(layers):
        hidden = cache[f"blocks.{l}.hook_resid_post"].numpy()  # (B, T, d)
        ratio.append(top_median_ratio(hidden))
        p, d, v = top_location(hidden)
        pos.append(p), dim.append(d), value.append(v)
        massive.append(massive_share(hidden))
        post = cache.get(f"blocks.{l}.mlp.hook_post")
        nonzero.append(nonzero_share(post.numpy()) if post is not None else np.nan)
    induction = [induction_score(rep[n].numpy(), repeat_n) for n in pattern_names]
    prev = [previous_token_score(rep[n].numpy()) for n in pattern_names]
    measures = {
        "top_ratio": Probed(("layer",), np.asarray(ratio), "top/median |activation| of the block output"),
        "top_position": Probed(("layer",), np.asarray(pos), "token position of the top activation"),
        "top_dim": Probed(("layer",), np.asarray(dim), "dimension of the top activation"),
        "top_value": Probed(("layer",), np.asarray(value), "top batch-mean |activation|"),
        "massive_share": Probed(("layer",), np.asarray(massive), "share of sequences with a massive activation"),
        "nonzero_share": Probed(("layer",), np.asarray(nonzero), "share of nonzero MLP activations"),
        "induction": Probed(("layer", "head"), np.stack(induction), "induction (prefix-matching) score"),
        "prev_token": Probed(("layer", "head"), np.stack(prev), "previous-token score"),
    }
    return measures, logits


def _layer_head_coords(cfg: EmergenceConfig) -> dict[str, tuple[Probed, bool]]:
    return {
        "layer": (Probed(("layer",), np.arange(cfg.layers), "layer"), True),
        "head": (Probed(("head",), np.arange(cfg.heads), "head"), True),
    }


class _TransformerRun(TaskRun):
    """Shared next-token training of a token transformer."""

    def __init__(self, cfg: EmergenceConfig, model_cfg: TransformerConfig) -> None:
        self.cfg = cfg
        self.model = Transformer(model_cfg, seed=cfg.seed)
        self.optimizer = make_optimizer(self.model, cfg.optimizer, cfg.lr, weight_decay=cfg.weight_decay)
        self.rng = np.random.default_rng(cfg.seed + 1)  # training batches
        self.probe_rng = np.random.default_rng(cfg.seed + 2)  # the fixed probe sets

    def batch(self) -> torch.Tensor:
        raise NotImplementedError

    def train_step(self, step: int) -> float:
        tokens = self.batch()  # (B, T + 1)
        logits = self.model(tokens[:, :-1])  # (B, T, vocab)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        return self.descend(loss)

    def measure(self) -> tuple[dict[str, Probed], torch.Tensor]:
        """The layer measures and the logits of ``probe_inputs``."""
        return layer_measures(self.model, self.probe_inputs, self.repeat_inputs, self.repeat_n)

    def static(self) -> dict[str, tuple[Probed, bool]]:
        return _layer_head_coords(self.cfg)


class BigramRun(_TransformerRun):
    """Bigram-Backcopy language modelling (tasks ``massive`` and ``sparsity``)."""

    def __init__(self, cfg: EmergenceConfig) -> None:
        self.task = BigramBackcopy(source=cfg.source, length=cfg.length + 1)
        model_cfg = TransformerConfig(
            vocab=self.task.vocab,
            context=cfg.length,
            layers=cfg.layers,
            heads=cfg.heads,
            width=cfg.width,
            mlp_ratio=cfg.mlp_ratio,
        )
        super().__init__(cfg, model_cfg)
        probe = self.task.generate(cfg.probe_batch, self.probe_rng)
        self.probe_tokens = torch.from_numpy(probe.tokens)  # (B, T + 1)
        self.trigger_q, self.bigram_q = query_masks(probe)  # (B, T)
        self.probe_inputs = self.probe_tokens[:, :-1]
        self.repeat_n = (cfg.length - 1) // 2
        ordinary = self.task.ordinary
        self.repeat_inputs = torch.from_numpy(
            repeated_tokens(cfg.probe_batch, self.repeat_n, ordinary, self.task.bos, self.probe_rng)
        )

    def batch(self) -> torch.Tensor:
        return torch.from_numpy(self.task.generate(self.cfg.batch, self.rng).tokens)

    def probe(self) -> dict[str, Probed]:
        out, logits = self.measure()  # logits (B, T, vocab) of the probe batch
        nll = F.cross_entropy(logits.transpose(1, 2), self.probe_tokens[:, 1:], reduction="none").numpy()  # (B, T)
        out["probe_loss"] = Probed((), np.float64(nll.mean()), "probe cross-entropy", "nats")
        out["icl_loss"] = Probed((), np.float64(nll[self.trigger_q].mean()), "in-context (trigger) loss", "nats")
        out["bigram_loss"] = Probed((), np.float64(nll[self.bigram_q].mean()), "bigram loss", "nats")
        return out


class InductionRun(_TransformerRun):
    """Repeated random sequences (task ``induction``); BOS is token ``vocab``."""

    def __init__(self, cfg: EmergenceConfig) -> None:
        n = cfg.repeat
        model_cfg = TransformerConfig(
            vocab=cfg.vocab + 1,
            context=2 * n + 1,
            layers=cfg.layers,
            heads=cfg.heads,
            width=cfg.width,
            mlp_ratio=cfg.mlp_ratio,
        )
        super().__init__(cfg, model_cfg)
        self.repeat_n = n
        self.pairs = max(1, n // 2)  # planted pairs per training sequence
        self.probe_tokens = torch.from_numpy(repeated_tokens(cfg.probe_batch, n, cfg.vocab, cfg.vocab, self.probe_rng))
        self.probe_inputs = self.repeat_inputs = self.probe_tokens

    def recall_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, T + 1) with planted pairs, and the recall targets (B, T) bool (see the module docstring)."""
        b, t_len = self.cfg.batch, 2 * self.repeat_n + 1
        tokens = self.rng.integers(0, self.cfg.vocab, size=(b, t_len + 1))  # (B, T + 1)
        tokens[:, 0] = self.cfg.vocab  # BOS
        recall = np.zeros((b, t_len), dtype=bool)  # query t predicts tokens[:, t + 1]
        rows = np.arange(b)
        for _ in range(self.pairs):
            first = self.rng.integers(1, t_len - 2, size=b)  # (B,) a at first, b at first + 1
            again = self.rng.integers(first + 2, t_len, size=b)  # (B,) a again, b follows
            tokens[rows, again] = tokens[rows, first]
            tokens[rows, again + 1] = tokens[rows, first + 1]
            recall[rows, again] = True
        return torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(recall)

    def train_step(self, step: int) -> float:
        tokens, recall = self.recall_batch()
        logits = self.model(tokens[:, :-1])  # (B, T, vocab)
        loss = F.cross_entropy(logits[recall], tokens[:, 1:][recall])  # the recall targets only
        return self.descend(loss)

    def probe(self) -> dict[str, Probed]:
        out, logits = self.measure()  # one pass: logits (B, 2n + 1, vocab) of the repeated sequences
        n = self.repeat_n
        tokens = torch.cat([self.probe_tokens, self.probe_tokens[:, 1:2]], dim=1)  # (B, 2n + 2): r_1 follows
        nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none").numpy()
        correct = (logits.argmax(-1) == tokens[:, 1:]).numpy()
        first, second = slice(0, n + 1), slice(n + 1, 2 * n + 1)  # unpredictable / predictable in context
        out["first_loss"] = Probed((), np.float64(nll[:, first].mean()), "loss on the first copy", "nats")
        out["icl_loss"] = Probed((), np.float64(nll[:, second].mean()), "in-context loss (second copy)", "nats")
        out["icl_acc"] = Probed((), np.float64(correct[:, second].mean()), "in-context accuracy (second copy)")
        return out
