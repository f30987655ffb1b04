"""SCIP through OR-Tools' linear solver wrapper (pywraplp).

Tolerances (SOLVER_FACTS.md): SCIP returns integral binaries but declares "OPTIMAL" with objective 0
while the true residual is ~1e-8 (feasibility tolerance 1e-6). We set zero gaps and
``numerics/feastol`` 1e-9; the status is still checked against the rounded residual.

Time limit: SCIP gets what is left of ``time_limit`` after building the model (2-5 us per cell here
in pywraplp), minus the reserves of ``milp.backends.base`` (OR-Tools copies the model into SCIP
outside SCIP's clock: ~4 us per cell); a model whose estimated building does not fit is refused up
front, beyond ``MAX_CELLS`` = 5*10^5 cells it is not built (n = 10^6: 3.1 GB). Presolve is switched
off when it would not fit (below). Measured here under full load (200 x 30 to 10^5 x 1, limits
0.5-1 s): within time_limit + 0.01 s (before: +1.5 s at n = 10^5, +1.3 s at 2000 x 50); documented
bound time_limit + 0.1 s.
"""
from __future__ import annotations

import time

import numpy as np

from ..encoding import Encoding
from ..instance import Instance
from ..solution import Solution, Status
from .base import MIN_SOLVER_SECONDS, Backend, SolveOptions, cells, deadline

DEFAULT_PARAMS = {"limits/gap": 0, "limits/absgap": 0, "numerics/feastol": 1e-9}
#: SCIP's presolve does not look at the time limit, and on these models its cost grows faster than
#: n*d (dualsparsify on MRSS, others on RSS): 0.11 s at n*d = 10^4, 0.5 s at 5*10^4 (n = 1000,
#: d = 50), 2.6-2.7 s at 10^5 (n = 2000, d = 50 and n = 10^5, d = 1), each with a 1-2 s limit. It is
#: switched off (``presolving/maxrounds = 0``) when this estimate per cell says it would take more
#: than a quarter of the time limit; without a limit, or on small models, nothing changes.
PRESOLVE_SECONDS_PER_CELL = 3e-5


class ScipBackend(Backend):
    name = "scip"
    REQUIRED_MODULES = ("ortools",)
    SUPPORTS_WARM_START = True
    # time-limit constants, measured here (module docstring)
    BUILD_SECONDS_PER_CELL = 5e-6
    UNCOUNTED_SECONDS_PER_CELL = 4e-6
    MAX_CELLS = 500_000

    def version(self) -> str:
        import ortools
        return f"SCIP via OR-Tools {ortools.__version__}"

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        t0 = time.perf_counter()  # the deadline counts the (first) import of the solver too
        from ortools.linear_solver import pywraplp

        refused = self.refuse_unless_fits(instance, options, t0)
        if refused is not None:
            return refused
        until = deadline(options, t0, instance)
        scale = float(options.params.get("scale", 1.0))
        enc = Encoding(instance, scale)
        solver = pywraplp.Solver.CreateSolver("SCIP")
        if solver is None:
            return self.failure(instance, "OR-Tools was built without SCIP")
        # presolve off when its estimated cost would take more than a quarter of the limit (docstring)
        big = {} if options.time_limit is None or PRESOLVE_SECONDS_PER_CELL * cells(instance) <= options.time_limit / 4 \
            else {"presolving/maxrounds": 0}
        params = {**DEFAULT_PARAMS, **big, "randomization/randomseedshift": int(options.seed),
                  **{k: v for k, v in options.params.items() if k != "scale"}}
        text = "\n".join(f"{k} = {v}" for k, v in params.items()) + "\n"
        if not solver.SetSolverSpecificParametersAsString(text):
            return self.failure(instance, f"SCIP rejected parameters {params}")
        solver.SetNumThreads(max(1, int(options.threads)))
        a = [solver.BoolVar(f"a_{i}") for i in range(instance.n)]
        t = solver.NumVar(0.0, enc.t_upper, "t")
        inf = solver.infinity()
        for name, coefs, ct, sense, rhs in enc.rows():
            lo = rhs if sense in ("G", "E") else -inf
            hi = rhs if sense in ("L", "E") else inf
            row = solver.Constraint(lo, hi, name)
            for ai, c in zip(a, coefs):
                if c != 0.0:
                    row.SetCoefficient(ai, float(c))
            if ct:
                row.SetCoefficient(t, ct)
        solver.Minimize(t)
        if options.warm_start is not None:
            solver.SetHint(a, [float(v) for v in np.asarray(options.warm_start)])
        built = time.perf_counter() - t0
        if options.time_limit is not None:
            budget = self.solver_seconds(instance, until)
            if budget < MIN_SOLVER_SECONDS:
                return self.out_of_time(instance, t0, built)
            solver.SetTimeLimit(max(1, int(budget * 1000)))  # milliseconds
        t1 = time.perf_counter()
        code = solver.Solve()
        seconds = time.perf_counter() - t1
        S = pywraplp.Solver
        claimed = {S.OPTIMAL: Status.OPTIMAL, S.FEASIBLE: Status.FEASIBLE,
                   S.INFEASIBLE: Status.INFEASIBLE}.get(code, Status.FAILED)
        if claimed == Status.FEASIBLE and options.time_limit is not None:
            claimed = Status.TIME_LIMIT
        if code not in (S.OPTIMAL, S.FEASIBLE):
            status = Status.TIME_LIMIT if code == S.NOT_SOLVED and options.time_limit else claimed
            return self.finish(instance, None, claimed=status, objective=None, seconds=seconds,
                               message=f"SCIP found no solution (MPSolver status {code})")
        values = [ai.solution_value() for ai in a]
        return self.finish(instance, values, claimed=claimed, seconds=seconds,
                           objective=solver.Objective().Value() / scale,
                           bound=solver.Objective().BestBound() / scale, build_seconds=built)
