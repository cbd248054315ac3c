"""Spiking networks: LIF (COBA, CUBA, Brunel) in numba, streamed chunk by chunk."""

from engine.spiking.analysis import cv_isi, oscillation, population_rates, rate_histogram, summary, synchrony
from engine.spiking.config import MODELS, REGIMES, UPDATABLE, LIFParams, SpikingConfig, preset
from engine.spiking.simulate import APPEND_DIMS, SpikingStream, run

__all__ = [
    "APPEND_DIMS",
    "MODELS",
    "REGIMES",
    "UPDATABLE",
    "LIFParams",
    "SpikingConfig",
    "SpikingStream",
    "cv_isi",
    "oscillation",
    "population_rates",
    "preset",
    "rate_histogram",
    "run",
    "summary",
    "synchrony",
]
