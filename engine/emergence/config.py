"""The configuration of an emergence run: one task, its model, its training and its probes.

One flat, frozen config covers the five tasks, so the command line (``--set name=value``) and the
dashboard address every field the same way; each task reads the fields it needs and ignores the
others. :meth:`EmergenceConfig.for_task` starts from the task's own defaults (the model and
training of the study the task comes from) and applies overrides on top.

Tasks:

- ``massive`` and ``sparsity``: a transformer with a ReLU MLP trained on Bigram-Backcopy
  (:mod:`engine.transformer.tasks`); the top/median activation ratio of each block's output and
  the share of nonzero MLP activations over training (Sun et al. 2024; Li et al. 2022).
- ``induction``: an attention-only transformer trained on associative recall over random tokens
  (pairs ``a b`` planted twice at random places); the induction (prefix-matching) and
  previous-token scores of every head on repeated random sequences (Olsson et al. 2022).
- ``icl-bursty``: Reddy's (2023) in-context classification with burstiness B; in-context
  accuracy on new classes and in-weights accuracy.
- ``grokking``: modular addition (a + b) mod p with a two-layer network and weight decay (Tian
  2025); train and test accuracy and the Fourier spectrum of the embeddings.

Intervention (in the spirit of Singh et al. 2024): ``clamp`` names heads (``"0.1,1.0"`` = layer 0
head 1 and layer 1 head 0) whose output is clamped (set to zero, or to its mean over the batch)
during training steps ``clamp_start <= step < clamp_end``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from engine.config import Config, bounded, choice, integer

__all__ = ["TASKS", "TASK_DEFAULTS", "EmergenceConfig", "is_prime", "parse_heads"]

TASKS = ("massive", "sparsity", "induction", "icl-bursty", "grokking")

# The study each task reproduces fixes its model and training; these differ from the field defaults.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "massive": {"layers": 4, "heads": 2, "width": 64, "mlp_ratio": 4, "lr": 3e-3, "steps": 2000, "probe_every": 25},
    "sparsity": {"layers": 2, "heads": 2, "width": 64, "mlp_ratio": 4, "lr": 3e-3, "steps": 1000, "probe_every": 25},
    "induction": {"layers": 2, "heads": 4, "width": 64, "mlp_ratio": 0, "lr": 1e-3, "steps": 1500, "probe_every": 25},
    "icl-bursty": {
        "layers": 2,
        "heads": 1,
        "width": 32,
        "mlp_ratio": 0,
        "lr": 1e-3,
        "batch": 64,
        "classes": 768,
        "burstiness": 2,
        "steps": 2000,
        "probe_every": 50,
        "probe_batch": 256,
    },
    "grokking": {
        "modulus": 59,
        "train_fraction": 0.4,
        "hidden": 128,
        "activation": "quadratic",
        "lr": 3e-3,
        "weight_decay": 1.0,
        "steps": 2000,
        "probe_every": 25,
    },
}


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    k = 2
    while k * k <= n:
        if n % k == 0:
            return False
        k += 1
    return True


def parse_heads(text: str) -> tuple[tuple[int, int], ...]:
    """``"0.1,1.0"`` -> ((0, 1), (1, 0)); ``""`` -> (). ``ValueError`` on anything else."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        layer, sep, head = part.partition(".")
        if not sep or not layer.strip().isdigit() or not head.strip().isdigit():
            raise ValueError(f"clamp={text!r} is not allowed: name heads as LAYER.HEAD, comma-separated (e.g. 0.1,1.0)")
        out.append((int(layer), int(head)))
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class EmergenceConfig(Config):
    task: str = choice("induction", TASKS, doc="massive, sparsity, induction, icl-bursty or grokking")
    # transformer (every task but grokking)
    layers: int = integer(2, 1, 24, doc="transformer blocks")
    heads: int = integer(2, 1, 64, doc="attention heads per block")
    width: int = integer(64, 4, 4096, doc="residual width d (a multiple of heads)")
    mlp_ratio: int = integer(4, 0, 16, doc="MLP width as a multiple of d; 0: attention-only")
    # training
    optimizer: str = choice("adamw", ("adamw", "adam", "sgd"), doc="adamw, adam or sgd (momentum 0.9)")
    lr: float = bounded(1e-3, 0.0, 10.0, lo_open=True, doc="learning rate")
    weight_decay: float = bounded(1e-4, 0.0, 10.0, doc="weight decay (decoupled under AdamW)")
    batch: int = integer(32, 1, 100_000, doc="sequences per step (grokking: full batch)")
    steps: int = integer(1500, 1, 10_000_000, doc="training steps")
    probe_every: int = integer(25, 1, 1_000_000, doc="training steps between probes")
    probe_batch: int = integer(64, 1, 100_000, doc="fixed probe sequences")
    seed: int = integer(0, 0, 2**31 - 1, doc="seed of the weights, the data and the probes")
    # massive, sparsity: Bigram-Backcopy
    source: str = choice("shakespeare", ("shakespeare", "zipf"), doc="bigram table (massive, sparsity)")
    length: int = integer(32, 3, 4096, doc="tokens per sequence, BOS included (massive, sparsity)")
    # induction: associative recall over random tokens; probes on repeated random sequences
    vocab: int = integer(64, 4, 65_536, doc="random tokens to draw from (induction)")
    repeat: int = integer(
        16, 2, 2048, doc="n: sequences of 2n + 1 tokens with n/2 planted pairs; probes repeat n tokens (induction)"
    )
    # icl-bursty (Reddy 2023)
    classes: int = integer(256, 2, 1_000_000, doc="K item classes seen in training (icl-bursty)")
    labels: int = integer(32, 2, 4096, doc="L labels; class k has label k mod L (icl-bursty)")
    pairs: int = integer(8, 1, 512, doc="N item-label pairs before the query (icl-bursty)")
    burstiness: int = integer(4, 1, 512, doc="B: copies of each class in a bursty context; divides pairs (icl-bursty)")
    bursty_fraction: float = bounded(0.9, 0.0, 1.0, doc="p_B: share of bursty training sequences (icl-bursty)")
    zipf: float = bounded(0.0, 0.0, 10.0, doc="Zipf exponent of the class frequencies (icl-bursty)")
    noise: float = bounded(0.1, 0.0, 10.0, doc="within-class noise epsilon (icl-bursty)")
    dim: int = integer(63, 2, 4096, doc="D: item and label dimension (icl-bursty)")
    # grokking (Tian 2025)
    modulus: int = integer(59, 3, 1000, doc="p of (a + b) mod p; prime (grokking)")
    train_fraction: float = bounded(0.4, 0.0, 1.0, lo_open=True, hi_open=True, doc="share of the p² pairs trained on")
    hidden: int = integer(256, 4, 100_000, doc="hidden units of the two-layer network (grokking)")
    activation: str = choice("quadratic", ("quadratic", "relu"), doc="hidden nonlinearity (grokking)")
    # intervention (Singh et al. 2024)
    clamp: str = field(default="", metadata={"doc": "heads clamped during the window: LAYER.HEAD,…"})
    clamp_mode: str = choice("zero", ("zero", "mean"), doc="clamp a head's output to zero or to its batch mean")
    clamp_start: int = integer(0, 0, 10_000_000, doc="first clamped training step")
    clamp_end: int = integer(0, 0, 10_000_000, doc="first step after the clamped window")

    def check(self) -> None:
        if self.width % self.heads:
            raise ValueError(
                f"width={self.width} is not divisible by heads={self.heads}: choose a width that is a multiple of heads"
            )
        if self.task == "icl-bursty" and self.pairs % self.burstiness:
            raise ValueError(
                f"burstiness={self.burstiness} does not divide pairs={self.pairs}: choose B among the divisors of "
                f"{self.pairs} ({', '.join(str(b) for b in range(1, self.pairs + 1) if self.pairs % b == 0)})"
            )
        if self.task == "icl-bursty" and self.pairs // self.burstiness > self.classes:
            raise ValueError(f"pairs/burstiness={self.pairs // self.burstiness} exceeds classes={self.classes}")
        if self.task == "grokking" and not is_prime(self.modulus):
            raise ValueError(f"modulus={self.modulus} is not prime: grokking needs a prime p (e.g. 23, 59, 97, 113)")
        if self.task == "sparsity" and self.mlp_ratio == 0:
            raise ValueError("mlp_ratio=0 is not allowed for the sparsity task: it measures the MLP's ReLU")
        if not isinstance(self.clamp, str):
            raise ValueError(f"clamp={self.clamp!r} is not allowed: name heads as LAYER.HEAD, comma-separated")
        for layer, head in self.clamped_heads:
            if layer >= self.layers or head >= self.heads:
                raise ValueError(
                    f"clamp={self.clamp!r} names head {layer}.{head}: allowed layers 0..{self.layers - 1}, "
                    f"heads 0..{self.heads - 1}"
                )
        if self.clamped_heads and self.task == "grokking":
            raise ValueError("clamp is not allowed for the grokking task: its network has no attention heads")
        if self.clamp_end < self.clamp_start:
            raise ValueError(f"clamp_end={self.clamp_end} is before clamp_start={self.clamp_start}")

    @property
    def clamped_heads(self) -> tuple[tuple[int, int], ...]:
        return parse_heads(self.clamp)

    @property
    def uses_transformer(self) -> bool:
        return self.task != "grokking"

    @classmethod
    def for_task(cls, task: str, **overrides: Any) -> Self:
        """The task's defaults (:data:`TASK_DEFAULTS`), then ``overrides``; validated."""
        if task not in TASKS:
            raise ValueError(f"task={task!r} is not allowed: choose one of {', '.join(TASKS)}")
        return cls(**{"task": task, **TASK_DEFAULTS[task], **overrides})
