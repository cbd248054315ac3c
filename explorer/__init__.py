"""Dynascope's visual layer and command line, over the engines' datasets."""

from engine import __version__

__all__ = ["__version__"]
