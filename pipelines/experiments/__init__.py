"""Experiments by name: each one a module with ``NAME``, ``DESCRIPTION`` (one line), ``Config`` (a
frozen :class:`~pipelines.experiments.base.ExperimentConfig`), ``run(config, *, out=None,
progress=True, command="", **runtime) -> summary`` and, where it has one, ``rewrite_report(out)``;
its report code lives beside it in ``<module>_report.py``.

Modules are imported only when asked for (:func:`get_experiment`), so listing the names costs
nothing. Adding an experiment is one module and one line here.
"""
from __future__ import annotations

import importlib
import importlib.util

#: name on the command line -> module implementing it
EXPERIMENTS = {
    "iclr-lenet5": "pipelines.experiments.iclr_lenet5",
    "iclr-construction": "pipelines.experiments.iclr_construction",
    "structured-random": "pipelines.experiments.structured_random",
    "bench": "pipelines.experiments.bench",
    "structured-lenet5": "pipelines.experiments.structured_lenet5",
    "rfss-density": "pipelines.experiments.rfss_density",
    "verification": "pipelines.experiments.verification",
}

#: what every experiment module must define
REQUIRED = ("NAME", "DESCRIPTION", "Config", "run")


def _module_exists(path: str) -> bool:
    try:
        return importlib.util.find_spec(path) is not None
    except (ImportError, ValueError):
        return False


def experiment_names() -> list[str]:
    """The registered experiments whose module is present, in registration order."""
    return [name for name, path in EXPERIMENTS.items() if _module_exists(path)]


def get_experiment(name: str):
    """The module of experiment ``name``; ``ValueError`` naming the choices for an unknown name or a
    registered one whose module is not there."""
    path = EXPERIMENTS.get(name)
    if path is None:
        raise ValueError(f"experiment: unknown experiment {name!r}; choose from {', '.join(experiment_names())}")
    if not _module_exists(path):
        raise ValueError(f"experiment: {name!r} is registered but its module {path} is missing; "
                         f"available: {', '.join(experiment_names())}")
    module = importlib.import_module(path)
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise ValueError(f"experiment: module {path} of {name!r} lacks {', '.join(missing)}")
    return module
