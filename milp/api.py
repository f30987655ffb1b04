"""``milp.solve``: validate arguments and dispatch to the backend registered under the solver name
(``auto``, the portfolio, is one of them: :mod:`milp.backends.auto`)."""
from __future__ import annotations

import math
import time

import numpy as np

from .backends import SolveOptions, get_backend
from .backends.base import MIN_SOLVER_SECONDS
# auto's constants and choice live with its backend; re-exported here for compatibility
from .backends.auto import AUTO_DEFAULT_TIME_LIMIT, AUTO_EXACT_MULTI_WORK, AutoBackend, auto_choice
from .backends.heuristic import HeuristicBackend
from .instance import Instance
from .solution import Solution

__all__ = ["solve", "check_options", "auto_choice", "solve_auto", "AUTO_EXACT_MULTI_WORK", "AUTO_DEFAULT_TIME_LIMIT",
           "MAX_SEED", "MAX_THREADS"]


#: seeds are passed to CP-SAT (``random_seed``), SCIP (``randomization/randomseedshift``), HiGHS
#: (``random_seed``) and CBC as 32-bit signed ints: larger seeds passed validation and then made
#: CP-SAT and SCIP fail, so they are refused here. (``milp.batch.instance_seed`` stays below it.)
MAX_SEED = 2 ** 31 - 1
#: more worker threads than any machine this runs on has cores; CP-SAT answers MODEL_INVALID for
#: ``num_workers`` = 100000 and the MILP solvers would otherwise start that many threads.
MAX_THREADS = 256


def check_options(time_limit, seed, threads) -> None:
    """Validate the options every solve takes; a ValueError naming the field otherwise."""
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not math.isfinite(time_limit) \
                or time_limit <= 0:
            raise ValueError(f"time_limit must be a positive number of seconds or None, got {time_limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer with 0 <= seed < 2^31 (solvers take 32-bit signed seeds), "
                         f"got {seed!r}")
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer with 1 <= threads <= {MAX_THREADS} (MAX_THREADS), got {threads!r}")


def solve(instance: Instance, solver: str = "auto", time_limit: float | None = None, seed: int = 0,
          threads: int = 1, warm_start=None, params: dict | None = None, bounds: bool = False) -> Solution:
    """Solve one subset-sum instance.

    Args:
        instance: a :class:`milp.Instance`.
        solver: ``auto``, ``exact``, ``heuristic``, ``cbc``, ``cpsat``, ``scip``, ``highs`` or ``gurobi``.
        time_limit: seconds of wall time for the whole call, or None for no limit (``auto`` then uses
            10 s). Every backend stops within it plus a small overhead documented in its module.
        seed: solver random seed, 0 <= seed < 2^31. threads: solver threads, 1..``MAX_THREADS``.
        warm_start: a 0/1 mask of length n to hint, or ``"heuristic"`` to compute one first (with a
            quarter of ``time_limit``; the backend gets the rest).
        params: backend-specific parameters (e.g. ``{"scale": 1e6}`` or native solver options).
        bounds: also compute the instance's own lower bound (:func:`milp.bounds.instance_bounds`: exact
            enumeration where it takes about a second at most, else the LP-duality bound up to
            ``milp.bounds.LP_BOUND_MAX_CELLS``), *after* the time-limited solve and outside its limit
            (up to ~2 s more here; ``extra['bounds_seconds']`` records it).

    Returns:
        A :class:`milp.Solution` whose ``error`` is recomputed from its 0/1 mask, with ``floor`` (the
        counting estimate) and ``lower_bound`` (the best valid lower bound known: always what the solve
        itself proves, :func:`milp.bounds.solution_lower_bound`; with ``bounds`` also the instance's).
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
        # the heuristic takes a quarter of the time limit and the backend the rest (as in ``auto``)
        t0 = time.perf_counter()
        warm_start = HeuristicBackend().solve(
            instance, SolveOptions(time_limit=None if time_limit is None else time_limit / 4, seed=int(seed))).mask
        if time_limit is not None:
            time_limit = max(MIN_SOLVER_SECONDS, time_limit - (time.perf_counter() - t0))
    if warm_start is not None:
        warm_start = np.asarray(warm_start)
        if warm_start.shape != (instance.n,) or not np.isin(warm_start, (0, 1)).all():
            raise ValueError(f"warm_start must be a 0/1 vector of length n={instance.n}")
    options = SolveOptions(time_limit=time_limit, seed=int(seed), threads=int(threads),
                           warm_start=warm_start, params=dict(params or {}))
    sol = backend.solve(instance, options)
    return with_bounds(instance, sol, bounds)


def with_bounds(instance: Instance, sol: Solution, compute: bool = False) -> Solution:
    """``sol`` with ``floor`` and ``lower_bound`` recorded (:func:`milp.bounds.apply_bounds`); with
    ``compute`` the instance's own bound too (not when the solve already proved the optimum)."""
    from .bounds import apply_bounds, instance_bounds

    apply_bounds(instance, sol)
    proven = sol.lower_bound is not None and sol.extra.get("lower_bound_source") == "exact"
    if compute and not proven:
        t0 = time.perf_counter()
        apply_bounds(instance, sol, instance_bounds(instance))
        sol.extra["bounds_seconds"] = time.perf_counter() - t0
    return sol


def solve_auto(instance: Instance, time_limit, seed, threads) -> Solution:
    """Compatibility alias: ``solve(instance, "auto", ...)``, i.e. :class:`milp.backends.auto.AutoBackend`."""
    return AutoBackend().solve(instance, SolveOptions(time_limit=time_limit, seed=int(seed), threads=int(threads)))
