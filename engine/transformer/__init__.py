"""Tiny transformers with named hook points, attention variants, synthetic tasks and probes."""

from engine.transformer.model import (
    ATTENTIONS,
    OPTIMIZERS,
    HookPoint,
    Transformer,
    TransformerConfig,
    make_optimizer,
)

__all__ = [
    "ATTENTIONS",
    "OPTIMIZERS",
    "HookPoint",
    "Transformer",
    "TransformerConfig",
    "make_optimizer",
]
