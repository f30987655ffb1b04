"""The one module that builds file paths for caches and results.

Caches (trained models, solution stores) live under ``cache_root()``; results that are meant to be
committed live under ``results/<experiment>/`` of the working directory unless an ``--out`` is given.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Root of every on-disk cache: ``$SLTH_CACHE_DIR`` or ``~/.cache/slth-milp``."""
    root = os.environ.get("SLTH_CACHE_DIR")
    path = Path(root) if root else Path.home() / ".cache" / "slth-milp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_cache_dir() -> Path:
    """Where trained target networks are cached (one file per config hash)."""
    path = cache_root() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_dir() -> Path:
    """Where SQLite solution stores live by default."""
    path = cache_root() / "stores"
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(experiment: str, out: str | os.PathLike | None = None) -> Path:
    """``out`` if given, else ``results/<experiment>`` under the current directory."""
    path = Path(out) if out is not None else Path("results") / experiment
    path.mkdir(parents=True, exist_ok=True)
    return path
