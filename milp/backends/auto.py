"""``auto``: a portfolio over the other backends, registered like any of them.

Exact where it fits (proven optimal; solver ``auto:exact``). Free MRSS with many more candidates than
dimensions (d > 1, no cardinality, n > ``TABU_DIM_FACTOR`` * d): ``tabu`` with the whole limit (solver
``auto:tabu``; issue 13: there the LP bound is 0, no MILP proves anything, and warm-started MILP backends
ended 2-3x above tabu in ``results/bench-mrss-vector``). Otherwise the heuristic with a quarter
of the time limit, then the first installed MILP backend of ``MILP_SOLVERS`` warm-started from it;
the better of the two masks by true residual is returned (solver ``auto:<name>``): RSS/RFSS, fixed
cardinality (tabu's swap search lost to the heuristic there) and n <= 2 d, where MILP closes instances. Without a time
limit the portfolio gets ``AUTO_DEFAULT_TIME_LIMIT`` seconds. ``options.warm_start`` is ignored
(auto builds its own warm start); ``options.params = {"milp": name}`` forces the heuristic + MILP path with
that backend on every instance beyond exact (``slth bench``'s ``<name>+warm``: a generic MILP backend
warm-started from the heuristic; ``highs+warm`` is auto before issue 13).

Time limit: the heuristic's and the MILP backend's budgets sum to the limit (the MILP backend used to
get ``max(1.0, remaining)``, which overran limits below ~1.3 s); when the MILP backend would refuse
the model (``MAX_CELLS``, or building it would not fit), the heuristic gets the whole limit; the exact
path passes the limit on. Measured here under full load: within time_limit + 0.00 s (200 x 30 to
10^5 x 1; n = 10^7 with 2 s: 1.2 s and 0.44 GB, was 36 s and 6 GB); documented bound: that of the
backends it runs, time_limit + 0.1 s.

The registry (``MILP_SOLVERS``, ``get_backend``, ``REGISTRY``) is looked up inside the methods, so
that ``milp.backends`` can import this module without an import cycle.
"""
from __future__ import annotations

import time

from ..instance import Instance
from ..solution import Solution, Status
from .base import MIN_SOLVER_SECONDS, Backend, SolveOptions
from .exact import MAX_N_SCALAR, ExactBackend
from .heuristic import HeuristicBackend

#: ``auto`` enumerates MRSS exactly while 2^n * d stays below this (about a second here).
AUTO_EXACT_MULTI_WORK = 2 ** 24
#: free MRSS with n > TABU_DIM_FACTOR * d goes to ``tabu`` (the LP bound is 0 from n ~ 2.5 d on)
TABU_DIM_FACTOR = 2
#: ``auto``'s time limit for a MILP backend when the caller gives none.
AUTO_DEFAULT_TIME_LIMIT = 10.0


def auto_choice(instance: Instance) -> str:
    """The solver ``auto`` runs first: exact where it fits (proven optimal), ``tabu`` for free MRSS with
    n > ``TABU_DIM_FACTOR`` * d (when numba is installed), else the heuristic + MILP portfolio."""
    from .tabu import TabuBackend

    if instance.d == 1 and instance.n <= MAX_N_SCALAR:
        return "exact"
    if instance.d > 1 and ExactBackend().accepts(instance)[0] and 2 ** instance.n * instance.d <= AUTO_EXACT_MULTI_WORK:
        return "exact"
    if (instance.d > 1 and instance.cardinality is None and instance.n > TABU_DIM_FACTOR * instance.d
            and TabuBackend.available() and TabuBackend().accepts(instance)[0]):
        return "tabu"
    return "portfolio"


class AutoBackend(Backend):
    name = "auto"
    REQUIRED_MODULES = ()
    #: auto builds its own warm start from the heuristic: ``milp.solve`` neither checks nor computes one
    IGNORES_WARM_START = True
    #: fast (exact) on the instances :func:`auto_choice` sends to exact, see :meth:`is_fast`
    FAST = True

    @classmethod
    def store_revision(cls) -> str:
        """Every other backend's revision (auto's result depends on all of them). This exact string is
        in the keys of existing stores; auto's own REVISION is appended only once it is bumped past 1."""
        from . import REGISTRY

        rev = "auto:" + ",".join(f"{k}{c.REVISION}" for k, c in sorted(REGISTRY.items()) if k != cls.name)
        return rev if cls.REVISION == 1 else f"{rev};auto{cls.REVISION}"

    def prepare(self) -> None:
        from .tabu import TabuBackend

        if TabuBackend.available():
            TabuBackend().prepare()

    def is_fast(self, instance: Instance) -> bool:
        return auto_choice(instance) == "exact"

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        from . import MILP_SOLVERS, get_backend

        t0 = time.perf_counter()
        choice = auto_choice(instance)
        if choice == "exact":
            sol = ExactBackend().solve(instance, SolveOptions(time_limit=options.time_limit, seed=options.seed))
            sol.solver = "auto:exact"
            return sol
        limit = options.time_limit if options.time_limit is not None else AUTO_DEFAULT_TIME_LIMIT
        forced = options.params.get("milp")
        if forced is not None:  # benchmarks: a generic MILP backend warm-started from the heuristic
            choice = "portfolio"
        if choice == "tabu":
            sol = get_backend("tabu").solve(instance, SolveOptions(time_limit=limit, seed=options.seed,
                                                                    threads=options.threads))
            sol.solver = "auto:tabu"
            return sol
        milp = None
        for name in ([forced] if forced is not None else MILP_SOLVERS):
            try:
                milp = get_backend(name)
            except ValueError:
                continue
            break
        # the heuristic gets a quarter of the limit, or all of it when the MILP backend could not even
        # build its model in the rest (it would refuse up front: see Backend.refuse_unless_fits)
        if milp is not None and (not milp.accepts(instance)[0] or not milp.fits(instance, limit * 0.75)):
            milp = None
        heur = HeuristicBackend().solve(instance, SolveOptions(time_limit=limit / 4 if milp else limit,
                                                               seed=options.seed))
        best = heur
        remaining = limit - (time.perf_counter() - t0)  # the two budgets sum to the limit
        if milp is not None and remaining >= MIN_SOLVER_SECONDS:
            milp_sol = milp.solve(instance, SolveOptions(time_limit=remaining, seed=options.seed,
                                                         threads=options.threads,
                                                         warm_start=heur.mask if heur.found else None))
            if milp_sol.found and (milp_sol.error < best.error or milp_sol.status == Status.OPTIMAL):
                best = milp_sol
        best.solver = f"auto:{best.solver}"
        return best  # Backend.solve sets best.seconds (the whole portfolio's time)
