"""The one module that builds file paths for caches and results.

Caches (trained models, solution stores) live under ``cache_root()``. A run of an experiment writes to
its own folder ``slth-runs/<experiment>/<config key>/`` under the current directory (:func:`run_dir`),
so it never writes over committed results or another run's output; ``--out DIR`` chooses the folder
explicitly (e.g. ``--out results/iclr-lenet5`` to refresh the committed results, which the run then
announces as replacing them).
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


#: where runs go by default, under the current directory (ignored by git)
RUNS_ROOT = "slth-runs"


def run_dir(experiment: str, key: str, out: str | os.PathLike | None = None) -> Path:
    """``out`` if given, else ``slth-runs/<experiment>/<key>`` under the current directory (created)."""
    path = Path(out) if out is not None else Path(RUNS_ROOT) / experiment / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(experiment: str, out: str | os.PathLike | None = None) -> Path:
    """``out`` if given, else ``results/<experiment>`` under the current directory."""
    path = Path(out) if out is not None else Path("results") / experiment
    path.mkdir(parents=True, exist_ok=True)
    return path
