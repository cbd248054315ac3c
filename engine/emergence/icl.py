"""In-context classification with bursty sequences (Reddy 2023): abrupt in-context learning.

The task of Reddy (2023, "The mechanistic basis of data dependence and abrupt learning in an
in-context classification task", ICLR 2024), with K classes, L labels, N pairs, burstiness B,
bursty share p_B, Zipf exponent α, within-class noise ε and dimension D:

- Class centres ``μ_k ~ N(0, I_D / D)`` for ``k = 0 .. K-1`` and label vectors
  ``ℓ_j ~ N(0, I_D / D)`` for ``j = 0 .. L-1`` are drawn once from the task's seed. Class ``k`` has
  label ``k mod L``.
- An item of class ``k`` is ``x = (μ_k + ε η) / sqrt(1 + ε²)`` with a fresh ``η ~ N(0, I_D / D)``,
  so every item is marginally ``N(0, I_D / D)`` (``E|x|² = 1``) and its cosine with its centre is
  close to ``1 / sqrt(1 + ε²)``.
- A sequence is N item–label pairs then a query item: ``2N + 1`` vectors
  ``x_1, ℓ(x_1), …, x_N, ℓ(x_N), x_q`` in R^D; the target is the query's label (one of L).
- Bursty sequences (a share p_B): the context holds N/B distinct classes, drawn from the Zipf law
  below without replacement (successive sampling: each from the law renormalised over the classes
  not yet drawn), each B times in random order; the query's class is one of them (uniformly).
- The other sequences: the N context classes and the query class are drawn i.i.d. from the Zipf
  law ``p(k) ∝ (k + 1)^-α`` (α = 0: uniform), so with large K the query's class is rarely in
  context and only memorised class→label maps can tell its label.

Evaluation sets (fixed by their seed):

- in-context (``icl``): bursty sequences (N/B classes, each B times) of *new* classes, whose
  centres are drawn afresh for every sequence (never trained on) and given N/B distinct labels
  drawn at random from L for that sequence; only the context can tell the query's label. New
  classes are numbered ``K, K+1, …`` within each sequence.
- in-weights (``iwl``): the query from the trained classes (Zipf law), the N context classes i.i.d.
  from the Zipf law but never the query's class; only memorised class→label maps can tell.
- swapped labels (``swap``): trained classes in the bursty format with every label shifted by the
  same random nonzero amount c (per sequence): ``label = (k + c) mod L``. The target is the
  shifted label, which only the context gives; the memorised label is always wrong.

The model is :class:`engine.transformer.model.Transformer` with real inputs (``input_dim = D``),
learned position embeddings over the ``2N + 1`` positions (which also tell items from labels),
``vocab = L`` output classes and, by default, attention-only blocks (``mlp_ratio = 0``), as in
Reddy's network. Reddy followed the attention layers by a three-layer MLP classifier "to ensure
perfect IWL is feasible"; here the readout is the model's own (final LayerNorm and a linear
unembedding of the query position), and ``mlp_ratio > 0`` adds an MLP to every block where a
deeper readout is wanted. The loss is the cross-entropy of the query's logits only.

Induction-mechanism measures (Reddy's circuit: in layer 0 each label position attends to the item
just before it, copying the item into the label's residual; in layer 1 the query attends to the
label positions whose copied item matches it and reads their label), on the in-context set:

- ``query_to_match (layer, head)``: the total attention the query pays to the label positions of
  the context pairs of its own class, averaged over sequences. Uniform attention over the
  ``2N + 1`` positions would give ``B / (2N + 1)``.
- ``label_to_item (layer, head)``: the attention each label position pays to the item just before
  it, averaged over the N label positions and the sequences. Uniform attention would give the
  mean of ``1 / (2i + 2)`` over ``i = 0 .. N-1``.

Readout. The final LayerNorm and linear unembedding suffice for in-weights learning to compete:
with K = 256 (the task defaults otherwise, seed 0) in-weights accuracy reached 0.98 within 1500
steps while in-context accuracy peaked at 0.18 and fell to 0.05, so no MLP classifier is added.

What the task defaults show (:data:`engine.emergence.config.TASK_DEFAULTS`: K 768, L 32, N 8,
D 63, ε 0.1, p_B 0.9, α 0; 2 attention-only layers × 1 head, d 32; AdamW lr 1e-3, batch 64;
2000 steps, 20–35 s on one CPU thread; seeds 0–2, mean ± sd, the last three probes):

- an abrupt rise: at B = 2 the in-context accuracy sits at about 0.2 from step ~100 (just below
  1/4, the level of picking one of the N/B labels shown), then rises with a 10–90 % width of
  204 ± 36 steps (logistic fit from step 100; onset 399 ± 114) to 0.92 ± 0.02, while layer 0's
  ``label_to_item`` reaches 0.95 ± 0.01 and layer 1's ``query_to_match`` 0.70 ± 0.02 with it.
- burstiness: onsets 631 ± 124 (B = 1), 399 ± 114 (B = 2), 305 ± 91 (B = 4) and final in-context
  accuracies 0.90 ± 0.03, 0.92 ± 0.02, 0.95 ± 0.01 on each B's own evaluation set, in-weights
  0.17 ± 0.05, 0.20 ± 0.03, 0.22 ± 0.01 (no clear trend). With K = 512, where memorising competes,
  Reddy's trade-off appears in full: in-context 0.27 ± 0.03, 0.69 ± 0.02, 0.72 ± 0.04 and
  in-weights 0.62 ± 0.04, 0.40 ± 0.03, 0.38 ± 0.04 for B = 1, 2, 4.

At this scale the onset ordering depends on the width: with d 64 (K 768) B = 1 rose first and
more sharply (onset 435 ± 129, 10–90 % width 88 ± 7 steps, against 538 ± 110 and 380 ± 84 for
B = 4). The K = 512 trade-off keeps its direction at d 64 but weakens: in-context 0.37 ± 0.02
(B = 1) against 0.59 ± 0.08 (B = 4), in-weights 0.70 ± 0.05 against 0.55 ± 0.01. A B = 1
network that does learn in context is at least as accurate on two-class contexts (0.97 ± 0.01
at d 32, K 768) as a B = 4 one (0.93 ± 0.00): burstiness decides whether and when the
induction head forms, more than how well it works once formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.emergence.base import Probed, TaskRun
from engine.emergence.config import EmergenceConfig
from engine.transformer.model import Transformer, TransformerConfig, make_optimizer

__all__ = ["BurstyICL", "ICLBatch", "ICLRun", "induction_scores"]

REDRAWS = 16  # rejection rounds per drawn class before falling back to the renormalised law


@dataclass(frozen=True, eq=False)
class ICLBatch:
    """A batch of in-context classification sequences and what they were built from."""

    inputs: np.ndarray  # (n, 2N + 1, D) float32: item, label, item, label, …, query item
    target: np.ndarray  # (n,) int64: the label of the query
    context_class: np.ndarray  # (n, N) int64: the class of each context item (>= K: a new class)
    context_label: np.ndarray  # (n, N) int64: the label shown after each context item
    query_class: np.ndarray  # (n,) int64: the class of the query item

    @property
    def n(self) -> int:
        return self.inputs.shape[0]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs (n, 2N + 1, D) float32, target (n,) int64)`` as torch tensors."""
        return torch.from_numpy(self.inputs), torch.from_numpy(self.target)


def _draw(cdf: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Indices i.i.d. from the law whose cumulative sums are ``cdf`` (K,), by inverse-CDF sampling."""
    return np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), cdf.size - 1)


def _draw_distinct(p: np.ndarray, cdf: np.ndarray, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, m)`` indices per row drawn without replacement by successive sampling from the law ``p`` (K,).

    Column j is drawn from ``p`` renormalised over the indices not yet in its row (as
    ``Generator.choice(replace=False, p=...)`` does): an index already in the row is drawn again,
    from ``cdf`` = cumsum(p), until it is new, which leaves exactly that conditional law. Rows
    still unlucky after ``REDRAWS`` tries (a steep law whose likely indices are taken) are drawn
    from the renormalised law directly.
    """
    out = np.empty((n, m), dtype=np.int64)
    for j in range(m):
        pick = _draw(cdf, (n,), rng)  # (n,)
        seen = (out[:, :j] == pick[:, None]).any(axis=1)
        for _ in range(REDRAWS):
            if not seen.any():
                break
            pick[seen] = _draw(cdf, (int(seen.sum()),), rng)
            seen = (out[:, :j] == pick[:, None]).any(axis=1)
        for row in np.flatnonzero(seen):
            rest = p.copy()
            rest[out[row, :j]] = 0.0
            pick[row] = _draw(np.cumsum(rest / rest.sum()), (), rng)
        out[:, j] = pick
    return out


class BurstyICL:
    """Reddy's (2023) in-context classification data (see the module docstring).

    The class centres and label vectors are drawn from ``numpy.random.default_rng(seed)`` on
    construction; every batch is drawn from the ``numpy.random.Generator`` passed to it.
    """

    def __init__(
        self,
        *,
        classes: int,
        labels: int,
        pairs: int,
        burstiness: int,
        bursty_fraction: float,
        zipf: float,
        noise: float,
        dim: int,
        seed: int,
    ) -> None:
        self.classes, self.labels, self.pairs, self.burstiness = classes, labels, pairs, burstiness
        self.bursty_fraction, self.zipf, self.noise, self.dim = bursty_fraction, zipf, noise, dim
        self._check_burstiness(None)
        rng = np.random.default_rng(seed)
        scale = 1.0 / np.sqrt(dim)
        self.centres = rng.normal(0.0, scale, (classes, dim))  # (K, D) μ_k
        self.label_vectors = rng.normal(0.0, scale, (labels, dim))  # (L, D) ℓ_j
        self.class_label = np.arange(classes) % labels  # (K,) label of class k
        weights = np.arange(1, classes + 1, dtype=float) ** -zipf  # (K,) rank^-α
        self.class_p = weights / weights.sum()  # (K,) Zipf law over the classes
        self._cdf = np.cumsum(self.class_p)  # (K,) for inverse-CDF draws
        for a in (self.centres, self.label_vectors, self.class_label, self.class_p):
            a.flags.writeable = False

    @classmethod
    def from_config(cls, cfg: EmergenceConfig) -> BurstyICL:
        """The task of an ``icl-bursty`` config, its centres drawn from ``cfg.seed``."""
        return cls(
            classes=cfg.classes,
            labels=cfg.labels,
            pairs=cfg.pairs,
            burstiness=cfg.burstiness,
            bursty_fraction=cfg.bursty_fraction,
            zipf=cfg.zipf,
            noise=cfg.noise,
            dim=cfg.dim,
            seed=cfg.seed,
        )

    @property
    def length(self) -> int:
        """Vectors per sequence, ``2N + 1``."""
        return 2 * self.pairs + 1

    # -- building blocks ------------------------------------------------------------------
    def items(self, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noisy items ``(μ + ε η) / sqrt(1 + ε²)`` of the given centres ``(..., D)``, same shape."""
        eta = rng.normal(0.0, 1.0 / np.sqrt(self.dim), centres.shape)  # (..., D)
        return (centres + self.noise * eta) / np.sqrt(1.0 + self.noise**2)

    def _assemble(
        self,
        context_centres: np.ndarray,
        context_label: np.ndarray,
        query_centre: np.ndarray,
        target: np.ndarray,
        context_class: np.ndarray,
        query_class: np.ndarray,
        rng: np.random.Generator,
    ) -> ICLBatch:
        n, big_n = context_label.shape
        inputs = np.empty((n, 2 * big_n + 1, self.dim))  # (n, 2N + 1, D)
        inputs[:, 0:-1:2] = self.items(context_centres, rng)  # (n, N, D) items at even positions
        inputs[:, 1:-1:2] = self.label_vectors[context_label]  # (n, N, D) labels at odd positions
        inputs[:, -1] = self.items(query_centre, rng)  # (n, D) the query item
        return ICLBatch(
            inputs=inputs.astype(np.float32),
            target=target.astype(np.int64),
            context_class=context_class.astype(np.int64),
            context_label=context_label.astype(np.int64),
            query_class=query_class.astype(np.int64),
        )

    def _trained(self, context: np.ndarray, query: np.ndarray, rng: np.random.Generator) -> ICLBatch:
        """Sequences of trained classes ``context (n, N)`` and ``query (n,)``, each shown with its label k mod L."""
        return self._assemble(
            self.centres[context],
            self.class_label[context],
            self.centres[query],
            self.class_label[query],
            context,
            query,
            rng,
        )

    def _check_burstiness(self, burstiness: int | None) -> int:
        """The task's B, or ``burstiness`` once checked to divide N into at most K classes."""
        b = self.burstiness if burstiness is None else int(burstiness)
        if b < 1 or self.pairs % b:
            raise ValueError(f"burstiness={b} does not divide pairs={self.pairs}")
        if self.pairs // b > self.classes:
            raise ValueError(f"pairs/burstiness={self.pairs // b} exceeds classes={self.classes}")
        return b

    def _bursty_classes(self, n: int, burstiness: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(context slot (n, N), query slot (n,))``: N/B slots 0..N/B-1, each B times, shuffled."""
        m = self.pairs // burstiness
        slots = rng.permuted(np.tile(np.repeat(np.arange(m), burstiness), (n, 1)), axis=1)  # (n, N)
        return slots, rng.integers(0, m, n)

    # -- training sequences ---------------------------------------------------------------
    def bursty(self, n: int, rng: np.random.Generator, *, burstiness: int | None = None) -> ICLBatch:
        """``n`` bursty sequences of trained classes: N/B Zipf-drawn classes, each B times."""
        b = self._check_burstiness(burstiness)
        slots, q = self._bursty_classes(n, b, rng)  # (n, N), (n,)
        chosen = _draw_distinct(self.class_p, self._cdf, n, self.pairs // b, rng)  # (n, N/B) distinct classes
        context = np.take_along_axis(chosen, slots, axis=1)  # (n, N)
        query = chosen[np.arange(n), q]  # (n,)
        return self._trained(context, query, rng)

    def iid(self, n: int, rng: np.random.Generator) -> ICLBatch:
        """``n`` non-bursty sequences: context and query classes i.i.d. from the Zipf law."""
        context = _draw(self._cdf, (n, self.pairs), rng)  # (n, N)
        query = _draw(self._cdf, (n,), rng)  # (n,)
        return self._trained(context, query, rng)

    def sample(self, n: int, rng: np.random.Generator) -> ICLBatch:
        """``n`` training sequences: each bursty with probability p_B, otherwise i.i.d."""
        is_bursty = rng.random(n) < self.bursty_fraction  # (n,)
        parts = [self.bursty(int(is_bursty.sum()), rng), self.iid(int((~is_bursty).sum()), rng)]
        order = np.argsort(~is_bursty, kind="stable")  # bursty rows first, as concatenated
        merged = {
            f: np.empty_like(np.concatenate([getattr(p, f) for p in parts]))
            for f in ("inputs", "target", "context_class", "context_label", "query_class")
        }
        for f in merged:
            merged[f][order] = np.concatenate([getattr(p, f) for p in parts])
        return ICLBatch(**merged)

    # -- evaluation sets ------------------------------------------------------------------
    def icl_eval(self, n: int, rng: np.random.Generator, *, burstiness: int | None = None) -> ICLBatch:
        """``n`` bursty sequences of new classes (fresh centres, labels drawn per sequence)."""
        b = self._check_burstiness(burstiness)
        m = self.pairs // b
        slots, q = self._bursty_classes(n, b, rng)  # (n, N), (n,)
        centres = rng.normal(0.0, 1.0 / np.sqrt(self.dim), (n, m, self.dim))  # (n, N/B, D) new classes
        if m <= self.labels:  # distinct labels within a sequence
            new_label = np.argsort(rng.random((n, self.labels)), axis=1)[:, :m]  # (n, N/B)
        else:
            new_label = rng.integers(0, self.labels, (n, m))
        rows = np.arange(n)
        context_centres = np.take_along_axis(centres, slots[:, :, None], axis=1)  # (n, N, D)
        context_label = np.take_along_axis(new_label, slots, axis=1)  # (n, N)
        query_centre, target = centres[rows, q], new_label[rows, q]  # (n, D), (n,)
        context, query = self.classes + slots, self.classes + q  # new classes numbered K, K+1, ...
        return self._assemble(context_centres, context_label, query_centre, target, context, query, rng)

    def iwl_eval(self, n: int, rng: np.random.Generator) -> ICLBatch:
        """``n`` sequences whose query is a trained class that never occurs in the context."""
        query = _draw(self._cdf, (n,), rng)  # (n,)
        context = _draw(self._cdf, (n, self.pairs), rng)  # (n, N)
        clash = context == query[:, None]
        while clash.any():  # redraw the context items of the query's class
            context[clash] = _draw(self._cdf, (int(clash.sum()),), rng)
            clash = context == query[:, None]
        return self._trained(context, query, rng)

    def swap_eval(self, n: int, rng: np.random.Generator) -> ICLBatch:
        """``n`` bursty sequences of trained classes with every label shifted by one random c in 1..L-1."""
        base = self.bursty(n, rng)
        shift = rng.integers(1, self.labels, n)  # (n,)
        context_label = (base.context_label + shift[:, None]) % self.labels  # (n, N)
        inputs = base.inputs.copy()
        inputs[:, 1:-1:2] = self.label_vectors[context_label]
        return ICLBatch(
            inputs=inputs,
            target=(base.target + shift) % self.labels,
            context_class=base.context_class,
            context_label=context_label,
            query_class=base.query_class,
        )


def induction_scores(pattern: np.ndarray, batch: ICLBatch) -> tuple[np.ndarray, np.ndarray]:
    """Reddy's two attention roles of each head on ``batch``, from one layer's pattern.

    ``pattern`` (n, H, T, T) with T = 2N + 1. Returns ``(query_to_match (H,), label_to_item (H,))``:
    the query's total attention to the label positions of the pairs of its own class, and each
    label position's attention to the item just before it, both averaged over the batch (the
    latter also over the N label positions).
    """
    big_n = batch.context_class.shape[1]
    match = batch.context_class == batch.query_class[:, None]  # (n, N) pairs of the query's class
    to_labels = pattern[:, :, -1, 1:-1:2]  # (n, H, N): query -> label positions
    query_to_match = (to_labels * match[:, None, :]).sum(-1).mean(0)  # (H,)
    label_pos = 2 * np.arange(big_n) + 1  # (N,)
    label_to_item = pattern[:, :, label_pos, label_pos - 1].mean((0, 2))  # (H,)
    return query_to_match, label_to_item


class ICLRun(TaskRun):
    """The ``icl-bursty`` task: a transformer trained on :class:`BurstyICL`, probed on fixed sets.

    ``probe()`` gives ``icl_acc``, ``icl_loss`` (the new-class set), ``iwl_acc``, ``iwl_loss`` (the
    in-weights set), ``swap_acc`` (the swapped-label set, scored against the context's labels) and,
    per layer and head, ``query_to_match`` and ``label_to_item`` on the new-class set; each
    evaluation set holds ``cfg.probe_batch`` sequences. ``model`` is the
    :class:`~engine.transformer.model.Transformer` (hook points and interventions included),
    ``optimizer`` its optimiser.

    Seeds: the class centres and label vectors from ``cfg.seed``, the weights from ``cfg.seed``
    (:class:`Transformer`'s own per-parameter streams), the training sequences from ``cfg.seed + 1``,
    the evaluation sets from ``cfg.seed + 2``.
    """

    def __init__(self, cfg: EmergenceConfig) -> None:
        if cfg.task != "icl-bursty":
            raise ValueError(f"task={cfg.task!r} is not allowed here: ICLRun runs the icl-bursty task")
        self.cfg = cfg
        self.data = BurstyICL.from_config(cfg)
        self.model_cfg = TransformerConfig(
            vocab=cfg.labels,
            context=self.data.length,
            layers=cfg.layers,
            heads=cfg.heads,
            width=cfg.width,
            mlp_ratio=cfg.mlp_ratio,
            input_dim=cfg.dim,
        )
        self.model = Transformer(self.model_cfg, seed=cfg.seed)
        self.optimizer = make_optimizer(self.model, cfg.optimizer, cfg.lr, weight_decay=cfg.weight_decay)
        self.rng = np.random.default_rng(cfg.seed + 1)  # training sequences
        eval_rng = np.random.default_rng(cfg.seed + 2)
        self.icl_set = self.data.icl_eval(cfg.probe_batch, eval_rng)
        self.iwl_set = self.data.iwl_eval(cfg.probe_batch, eval_rng)
        self.swap_set = self.data.swap_eval(cfg.probe_batch, eval_rng)
        self._patterns = [f"blocks.{layer}.attn.hook_pattern" for layer in range(cfg.layers)]

    def train_step(self, step: int) -> float:
        inputs, target = self.data.sample(self.cfg.batch, self.rng).tensors()  # (B, T, D), (B,)
        self.model.train()
        logits = self.model(inputs)[:, -1]  # (B, L): the query position
        loss = F.cross_entropy(logits, target)
        return self.descend(loss)

    @torch.no_grad()
    def evaluate(self, batch: ICLBatch) -> tuple[float, float]:
        """``(accuracy, cross-entropy in nats)`` of the query label on ``batch``."""
        self.model.eval()
        inputs, target = batch.tensors()
        logits = self.model(inputs)[:, -1]  # (n, L)
        acc = (logits.argmax(-1) == target).float().mean()
        return float(acc), float(F.cross_entropy(logits, target))

    @torch.no_grad()
    def probe(self) -> dict[str, Probed]:
        self.model.eval()
        inputs, target = self.icl_set.tensors()
        logits, cache = self.model.run_with_cache(inputs, names=self._patterns)
        logits = logits[:, -1]  # (n, L)
        icl_acc, icl_loss = float((logits.argmax(-1) == target).float().mean()), float(F.cross_entropy(logits, target))
        q2m, l2i = zip(*(induction_scores(cache[name].numpy(), self.icl_set) for name in self._patterns), strict=True)
        iwl_acc, iwl_loss = self.evaluate(self.iwl_set)
        swap_acc, _ = self.evaluate(self.swap_set)
        return {
            "icl_acc": Probed((), np.float64(icl_acc), "in-context accuracy (new classes)", "1"),
            "iwl_acc": Probed((), np.float64(iwl_acc), "in-weights accuracy (query class not in context)", "1"),
            "icl_loss": Probed((), np.float64(icl_loss), "in-context loss (new classes)", "nats"),
            "iwl_loss": Probed((), np.float64(iwl_loss), "in-weights loss (query class not in context)", "nats"),
            "swap_acc": Probed((), np.float64(swap_acc), "accuracy on the context's swapped labels", "1"),
            "query_to_match": Probed(
                ("layer", "head"), np.stack(q2m), "query attention to the labels of its class's pairs", "1"
            ),
            "label_to_item": Probed(("layer", "head"), np.stack(l2i), "label attention to the item before it", "1"),
        }

    def static(self) -> dict[str, tuple[Probed, bool]]:
        return {
            "layer": (Probed(("layer",), np.arange(self.cfg.layers), "layer"), True),
            "head": (Probed(("head",), np.arange(self.cfg.heads), "head"), True),
        }
