"""Shared visual constants."""

COLORS = {"E": "#c0392b", "I": "#2471a3"}  # excitatory, inhibitory
