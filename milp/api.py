"""``milp.solve``: validate arguments, dispatch to a backend by name, or run the ``auto`` portfolio."""
from __future__ import annotations

import math
import time

import numpy as np

from .backends import MILP_SOLVERS, SolveOptions, get_backend
from .backends.exact import MAX_N_SCALAR, ExactBackend
from .backends.heuristic import HeuristicBackend
from .instance import Instance
from .solution import Solution, Status

#: ``auto`` enumerates MRSS exactly while 2^n * d stays below this (about a second here).
AUTO_EXACT_MULTI_WORK = 2 ** 24
#: ``auto``'s time limit for a MILP backend when the caller gives none.
AUTO_DEFAULT_TIME_LIMIT = 10.0


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
    if solver == "auto":
        return solve_auto(instance, time_limit, seed, threads)
    backend = get_backend(solver)
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


def auto_choice(instance: Instance) -> str:
    """The solver ``auto`` runs first: exact where it fits (proven optimal), else the MILP portfolio."""
    if instance.d == 1 and instance.n <= MAX_N_SCALAR:
        return "exact"
    if instance.d > 1 and ExactBackend().accepts(instance)[0] and 2 ** instance.n * instance.d <= AUTO_EXACT_MULTI_WORK:
        return "exact"
    return "portfolio"


def solve_auto(instance: Instance, time_limit, seed, threads) -> Solution:
    """``auto``: exact where it fits; otherwise the heuristic, then the first installed MILP backend
    warm-started from it, returning the better of the two masks (by true residual)."""
    t0 = time.perf_counter()
    if auto_choice(instance) == "exact":
        sol = ExactBackend().solve(instance, SolveOptions(seed=seed))
        sol.solver = "auto:exact"
        return sol
    limit = time_limit if time_limit is not None else AUTO_DEFAULT_TIME_LIMIT
    heur = HeuristicBackend().solve(instance, SolveOptions(time_limit=limit / 4, seed=seed))
    best = heur
    for name in MILP_SOLVERS:
        try:
            backend = get_backend(name)
        except ValueError:
            continue
        remaining = max(1.0, limit - (time.perf_counter() - t0))
        milp_sol = backend.solve(instance, SolveOptions(time_limit=remaining, seed=seed, threads=threads,
                                                        warm_start=heur.mask if heur.found else None))
        if milp_sol.found and (milp_sol.error < best.error or milp_sol.status == Status.OPTIMAL):
            best = milp_sol
        break
    best.solver = f"auto:{best.solver}"
    best.seconds = time.perf_counter() - t0
    return best
