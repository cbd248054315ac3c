"""Where dashboards store runs, and which typed paths they may open.

Live runs and sweeps are written under :func:`runs_dir`. A path typed in a dashboard is opened
only inside the allowed folders: the server's working folder, the runs folder, and the folder
of the store given at start (``DYNASCOPE_OPEN``).
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.store import StoreError, is_sweep_store

__all__ = ["runs_dir", "allowed_roots", "check_allowed", "is_sweep_store"]


def runs_dir() -> Path:
    """Where live runs are stored: ``$DYNASCOPE_RUNS`` or ``./runs``."""
    return Path(os.environ.get("DYNASCOPE_RUNS", "runs")).expanduser()


def allowed_roots() -> list[Path]:
    """The folders a dashboard may read stores from (resolved)."""
    roots = [Path.cwd(), runs_dir()]
    extra = os.environ.get("DYNASCOPE_OPEN")
    if extra:
        roots.append(Path(extra).expanduser().absolute().parent)
    return [r.resolve() for r in roots]


def check_allowed(text: str, what: str = "run store") -> Path:
    """A path typed by a user, resolved; :class:`StoreError` if empty or outside the allowed folders."""
    if not text.strip():
        raise StoreError(f"type the path of a {what}")
    path = Path(text.strip()).expanduser()
    resolved = path.resolve()
    if not any(resolved == root or root in resolved.parents for root in allowed_roots()):
        raise StoreError(f"{path} is outside the folders this server may read")
    return resolved
