"""A tiny transformer trained on Bigram-Backcopy, as a stream of probe chunks.

:class:`AttentionStream` trains ``probe_every`` steps, then records a forward pass over a fixed
probe batch and measures, per layer and head, the extreme-token phenomena of
:mod:`engine.transformer.sinks`. Each chunk carries, along its append dims:

- ``step``: ``loss (step,)`` the training cross-entropy, ``lr (step,)``;
- ``probe`` (coordinate: the training step it was taken at; the first chunk also holds the
  probe at step 0): ``sink_nontrigger``, ``sink_trigger`` (probe, layer, head) sink scores on
  the two query types, ``sink_rate (probe,)`` and ``sink_rate_head (probe, layer, head)`` (share
  of samples with alpha_0 > 0.3), ``value_drain (probe, layer, head)``, ``resid_peak (probe,
  layer)``, ``pattern (probe, layer, head, query, key)`` the mean attention pattern over the
  probe batch, ``icl_loss`` and ``bigram_loss (probe,)`` on trigger and bigram queries.

and, in every chunk, the probe batch itself (``probe_tokens (sample, position)``, ``probe_trigger``)
and the vocabulary (``token_name (token,)``). A non-finite loss stops the run
(:class:`~engine.stream.RunStopped`) before the chunk that shows it; the chunks already emitted stand.
Mid-run, ``update(lr=..., probe_every=...)`` takes effect at the next chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import engine
from engine.chunk import Chunk, concat
from engine.config import Config, bounded, choice, integer
from engine.stream import TrainingStream
from engine.transformer.model import ATTENTIONS, OPTIMIZERS, Transformer, TransformerConfig, make_optimizer
from engine.transformer.sinks import residual_peak, sink_alpha, sink_scores, value_drain
from engine.transformer.tasks import BigramBackcopy, query_masks

__all__ = ["AttentionConfig", "AttentionStream", "APPEND_DIMS", "UPDATABLE", "train_run", "summary"]

APPEND_DIMS = ("step", "probe")
UPDATABLE = TrainingStream.updatable


@dataclass(frozen=True)
class AttentionConfig(Config):
    # model
    layers: int = integer(2, 1, 48, doc="transformer blocks")
    heads: int = integer(2, 1, 64, doc="attention heads per block")
    width: int = integer(64, 4, 4096, doc="residual width d (a multiple of heads)")
    attention: str = choice("softmax", ATTENTIONS, doc="softmax, relu, gated-head or gated-elem")
    # task
    source: str = choice("shakespeare", ("shakespeare", "zipf"), doc="bigram table: the paper's or a Zipfian one")
    length: int = integer(32, 3, 4096, doc="tokens per sequence, BOS included")
    triggers: int = integer(3, 1, 64, doc="the most frequent tokens that trigger a back-copy")
    # training
    optimizer: str = choice("adamw", OPTIMIZERS, doc="adamw, adam or sgd (momentum 0.9)")
    lr: float = bounded(3e-3, 0.0, 10.0, lo_open=True, doc="learning rate (a sink forms in ~200 steps at 3e-3)")
    weight_decay: float = bounded(1e-4, 0.0, 1.0, doc="AdamW weight decay")
    batch: int = integer(32, 1, 100_000, doc="sequences per step")
    steps: int = integer(1500, 1, 10_000_000, doc="training steps")
    probe_every: int = integer(25, 1, 1_000_000, doc="training steps between probes")
    probe_batch: int = integer(64, 1, 100_000, doc="fixed probe sequences")
    seed: int = integer(0, 0, 2**31 - 1, doc="seed of the weights, the training data and the probe batch")

    def check(self) -> None:
        self.model_config()  # width divisible by heads, …

    def task(self) -> BigramBackcopy:
        return BigramBackcopy(source=self.source, length=self.length, triggers=self.triggers)

    def model_config(self) -> TransformerConfig:
        return TransformerConfig(
            vocab=self.task().vocab,
            context=self.length,
            layers=self.layers,
            heads=self.heads,
            width=self.width,
            attention=self.attention,
        )


def _probe_names(layers: int) -> set[str]:
    names = set()
    for layer in range(layers):
        names |= {f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.attn.hook_v", f"blocks.{layer}.hook_resid_post"}
    return names


class AttentionStream(TrainingStream):
    engine = "attention"
    append_dims = APPEND_DIMS

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__(config)
        self.task = config.task()
        self.model_cfg = config.model_config()
        self.model = Transformer(self.model_cfg, seed=config.seed)
        self.lr = config.lr
        self.probe_every = config.probe_every
        self.optimizer = make_optimizer(self.model, config.optimizer, config.lr, weight_decay=config.weight_decay)
        self.rng = np.random.default_rng(config.seed + 1)  # training sequences
        probe = self.task.generate(config.probe_batch, np.random.default_rng(config.seed + 2))
        self.probe_tokens = torch.from_numpy(probe.tokens)
        self.probe_trigger = probe.trigger
        self.trigger_q, self.bigram_q = query_masks(probe)  # (B, T): the query types of the probe batch
        self.step = 0
        self.train_seconds = 0.0
        self._names = _probe_names(config.layers)
        self._static = self._static_chunk()

    # -- training and probing ---------------------------------------------------------------
    def _train_step(self) -> float:
        tokens = torch.from_numpy(self.task.generate(self.config.batch, self.rng).tokens)  # (B, T + 1)
        logits = self.model(tokens[:, :-1])  # (B, T, vocab)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    @torch.no_grad()
    def probe(self) -> dict[str, np.ndarray]:
        """The measures on the probe batch at the current weights."""
        tokens = self.probe_tokens
        logits, cache = self.model.run_with_cache(tokens[:, :-1], names=self._names)
        trigger_q, bigram_q = self.trigger_q, self.bigram_q  # the BOS query belongs to neither type
        nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none").numpy()  # (B, T)
        out: dict[str, list] = {k: [] for k in ("sink_nontrigger", "sink_trigger", "alpha", "value_drain", "resid")}
        for layer in range(self.model_cfg.layers):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"].numpy()  # (B, H, T, T)
            out["sink_nontrigger"].append(sink_scores(pattern, bigram_q))
            out["sink_trigger"].append(sink_scores(pattern, trigger_q))
            out["alpha"].append(sink_alpha(pattern))  # (B, H)
            out["value_drain"].append(value_drain(cache[f"blocks.{layer}.attn.hook_v"].numpy()))
            out["resid"].append(residual_peak(cache[f"blocks.{layer}.hook_resid_post"].numpy()))
        alpha = np.stack(out["alpha"], 1)  # (B, layer, head)
        layers = range(self.model_cfg.layers)
        patterns = [cache[f"blocks.{layer}.attn.hook_pattern"].mean(0).numpy() for layer in layers]
        return {
            "sink_nontrigger": np.stack(out["sink_nontrigger"]),
            "sink_trigger": np.stack(out["sink_trigger"]),
            "sink_rate": np.float64(np.mean(alpha > 0.3)),
            "sink_rate_head": (alpha > 0.3).mean(0),
            "value_drain": np.stack(out["value_drain"]),
            "resid_peak": np.asarray(out["resid"]),
            "pattern": np.stack(patterns).astype(np.float32),
            "icl_loss": np.float64(nll[trigger_q].mean()) if trigger_q.any() else np.float64(np.nan),
            "bigram_loss": np.float64(nll[bigram_q].mean()),
        }

    # -- chunks -----------------------------------------------------------------------------
    def _static_chunk(self) -> Chunk:
        cfg = self.config
        c = Chunk(attrs=self._attrs())
        c.add("layer", "layer", np.arange(cfg.layers), "layer", "", coord=True)
        c.add("head", "head", np.arange(cfg.heads), "head", "", coord=True)
        c.add("token_name", "token", np.asarray(self.task.itos), "token", "")
        c.add("probe_tokens", ("sample", "position"), self.probe_tokens.numpy(), "probe sequence token", "")
        c.add("probe_trigger", ("sample", "position"), self.probe_trigger, "trigger position", "")
        return c

    def _attrs(self) -> dict:
        cfg = self.config
        return {
            "engine": "attention",
            "version": engine.__version__,
            "config": cfg.to_json(),
            "seed": cfg.seed,
            "attention": cfg.attention,
            "optimizer": cfg.optimizer,
            "trigger_tokens": " ".join(repr(self.task.itos[t]) for t in self.task.trigger_ids),
            "title": f"{cfg.attention} attention, {cfg.optimizer}: {cfg.layers} layers × {cfg.heads} heads, "
            f"d {cfg.width}, Bigram-Backcopy ({cfg.source}, length {cfg.length}), seed {cfg.seed}",
        }

    def _next_chunk(self) -> Chunk:
        probes = [(0, self.probe())] if self.step == 0 else []
        first = self.step
        n = min(self.probe_every, self.config.steps - self.step)
        losses, lrs = self._train_steps(n, self._train_step)
        probes.append((self.step, self.probe()))
        self.done = self.step >= self.config.steps
        return self._make_chunk(first, losses, lrs, probes)

    def _make_chunk(self, first: int, losses: list, lrs: list, probes: list) -> Chunk:
        c = Chunk(dict(self._static.columns), self._static.coords, dict(self._static.attrs))
        c.add("step", "step", np.arange(first + 1, first + 1 + len(losses)), "training step", "", coord=True)
        c.add("loss", "step", np.asarray(losses), "training cross-entropy", "nats")
        c.add("lr", "step", np.asarray(lrs), "learning rate", "")
        c.add("probe", "probe", np.asarray([s for s, _ in probes]), "training step of the probe", "", coord=True)

        def stack(name):
            return np.stack([p[name] for _, p in probes])

        lh = ("probe", "layer", "head")
        c.add("sink_nontrigger", lh, stack("sink_nontrigger"), "sink score, non-trigger queries", "")
        c.add("sink_trigger", lh, stack("sink_trigger"), "sink score, trigger queries", "")
        c.add("sink_rate", "probe", stack("sink_rate"), "sink rate (alpha_0 > 0.3)", "")
        c.add("sink_rate_head", lh, stack("sink_rate_head"), "share of samples with alpha_0 > 0.3", "")
        c.add("value_drain", lh, stack("value_drain"), "BOS value norm / others", "")
        c.add("resid_peak", ("probe", "layer"), stack("resid_peak"), "BOS residual norm / others", "")
        c.add(
            "pattern",
            ("probe", "layer", "head", "query", "key"),
            stack("pattern"),
            "mean attention over the probe batch",
            "",
        )
        c.add("icl_loss", "probe", stack("icl_loss"), "in-context loss (trigger queries)", "nats")
        c.add("bigram_loss", "probe", stack("bigram_loss"), "bigram loss (other queries)", "nats")
        return c


def train_run(config: AttentionConfig):
    """The whole run in memory: (the concatenated ``xr.Dataset``, the trained stream)."""
    stream = AttentionStream(config)
    ds = concat(list(stream.chunks()), APPEND_DIMS).to_dataset()
    return ds, stream


def summary(ds) -> dict:
    """Final sink scores per layer and head on both query types, and the final losses."""
    last = {name: ds[name].values[-1] for name in ("sink_nontrigger", "sink_trigger", "value_drain", "resid_peak")}
    heads = []
    for layer in range(last["sink_nontrigger"].shape[0]):
        for head in range(last["sink_nontrigger"].shape[1]):
            heads.append(
                {
                    "layer": layer,
                    "head": head,
                    "sink_nontrigger": float(last["sink_nontrigger"][layer, head]),
                    "sink_trigger": float(last["sink_trigger"][layer, head]),
                    "value_drain": float(last["value_drain"][layer, head]),
                }
            )
    return {
        "engine": "attention",
        "steps": int(ds["step"].values[-1]) if ds.sizes.get("step") else 0,
        "attention": ds.attrs.get("attention"),
        "optimizer": ds.attrs.get("optimizer"),
        "heads": heads,
        "resid_peak": [float(x) for x in last["resid_peak"]],
        "sink_rate": float(ds["sink_rate"].values[-1]),
        "icl_loss": float(ds["icl_loss"].values[-1]),
        "bigram_loss": float(ds["bigram_loss"].values[-1]),
        "final_loss": float(ds["loss"].values[-1]) if ds.sizes.get("step") else float("nan"),
        "run_status": ds.attrs.get("run_status", "complete"),
    }
