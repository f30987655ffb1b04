"""``milp.solve``: validate arguments and dispatch to the backend registered under the solver name
(``auto``, the portfolio, is one of them: :mod:`milp.backends.auto`)."""
from __future__ import annotations

import math

import numpy as np

from .backends import SolveOptions, get_backend
# auto's constants and choice live with its backend; re-exported here for compatibility
from .backends.auto import AUTO_DEFAULT_TIME_LIMIT, AUTO_EXACT_MULTI_WORK, AutoBackend, auto_choice
from .backends.heuristic import HeuristicBackend
from .instance import Instance
from .solution import Solution

__all__ = ["solve", "check_options", "auto_choice", "solve_auto", "AUTO_EXACT_MULTI_WORK", "AUTO_DEFAULT_TIME_LIMIT"]


def check_options(time_limit, seed, threads) -> None:
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not math.isfinite(time_limit) \
                or time_limit <= 0:
            raise ValueError(f"time_limit must be a positive number of seconds or None, got {time_limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")


def solve(instance: Instance, solver: str = "auto", time_limit: float | None = None, seed: int = 0,
          threads: int = 1, warm_start=None, params: dict | None = None) -> Solution:
    """Solve one subset-sum instance.

    Args:
        instance: a :class:`milp.Instance`.
        solver: ``auto``, ``exact``, ``heuristic``, ``cbc``, ``cpsat``, ``scip``, ``highs`` or ``gurobi``.
        time_limit: seconds, or None for no limit (``auto`` then gives MILP backends 10 s).
        seed: solver random seed. threads: solver threads.
        warm_start: a 0/1 mask of length n to hint, or ``"heuristic"`` to compute one first.
        params: backend-specific parameters (e.g. ``{"scale": 1e6}`` or native solver options).

    Returns:
        A :class:`milp.Solution` whose ``error`` is recomputed from its 0/1 mask.
    """
    if not isinstance(instance, Instance):
        raise TypeError(f"instance must be a milp.Instance, got {type(instance).__name__}")
    check_options(time_limit, seed, threads)
    backend = get_backend(solver)
    if backend.IGNORES_WARM_START:  # auto: builds its own warm start, the argument is not looked at
        warm_start = None
    if isinstance(warm_start, str):
        if warm_start != "heuristic":
            raise ValueError(f"warm_start must be a 0/1 mask, 'heuristic' or None, got {warm_start!r}")
        warm_start = HeuristicBackend().solve(instance, SolveOptions(time_limit=time_limit, seed=seed)).mask
    if warm_start is not None:
        warm_start = np.asarray(warm_start)
        if warm_start.shape != (instance.n,) or not np.isin(warm_start, (0, 1)).all():
            raise ValueError(f"warm_start must be a 0/1 vector of length n={instance.n}")
    options = SolveOptions(time_limit=time_limit, seed=int(seed), threads=int(threads),
                           warm_start=warm_start, params=dict(params or {}))
    return backend.solve(instance, options)


def solve_auto(instance: Instance, time_limit, seed, threads) -> Solution:
    """Compatibility alias: ``solve(instance, "auto", ...)``, i.e. :class:`milp.backends.auto.AutoBackend`."""
    return AutoBackend().solve(instance, SolveOptions(time_limit=time_limit, seed=int(seed), threads=int(threads)))
