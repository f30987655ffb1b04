"""SCIP through OR-Tools' linear solver wrapper (pywraplp).

Tolerances (SOLVER_FACTS.md): SCIP returns integral binaries but declares "OPTIMAL" with objective 0
while the true residual is ~1e-8 (feasibility tolerance 1e-6). We set zero gaps and
``numerics/feastol`` 1e-9; the status is still checked against the rounded residual.
"""
from __future__ import annotations

import time

import numpy as np

from ..encoding import Encoding
from ..instance import Instance
from ..solution import Solution, Status
from .base import Backend, SolveOptions

DEFAULT_PARAMS = {"limits/gap": 0, "limits/absgap": 0, "numerics/feastol": 1e-9}


class ScipBackend(Backend):
    name = "scip"
    REQUIRED_MODULES = ("ortools",)
    SUPPORTS_WARM_START = True

    def version(self) -> str:
        import ortools
        return f"SCIP via OR-Tools {ortools.__version__}"

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        from ortools.linear_solver import pywraplp

        scale = float(options.params.get("scale", 1.0))
        enc = Encoding(instance, scale)
        solver = pywraplp.Solver.CreateSolver("SCIP")
        if solver is None:
            return self.failure(instance, "OR-Tools was built without SCIP")
        params = {**DEFAULT_PARAMS, "randomization/randomseedshift": int(options.seed),
                  **{k: v for k, v in options.params.items() if k != "scale"}}
        text = "\n".join(f"{k} = {v}" for k, v in params.items()) + "\n"
        if not solver.SetSolverSpecificParametersAsString(text):
            return self.failure(instance, f"SCIP rejected parameters {params}")
        solver.SetNumThreads(max(1, int(options.threads)))
        if options.time_limit is not None:
            solver.SetTimeLimit(int(max(1.0, options.time_limit * 1000)))
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
        t0 = time.perf_counter()
        code = solver.Solve()
        seconds = time.perf_counter() - t0
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
                           bound=solver.Objective().BestBound() / scale)
