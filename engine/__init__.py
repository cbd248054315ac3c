"""Dynascope engines: simulation and training that stream ``xr.Dataset`` chunks.

The engines never import the visual layer (``explorer``).
"""

__version__ = "0.1.0"
