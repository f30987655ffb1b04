"""Gurobi through gurobipy, only when it is importable (not installed on the project's machines;
its tests are skipped). Zero gaps, IntFeasTol 1e-9 and FeasibilityTol 1e-9 as for the others."""
from __future__ import annotations

import time

import numpy as np

from ..encoding import Encoding
from ..instance import Instance
from ..solution import Solution, Status
from .base import MIN_SOLVER_SECONDS, Backend, SolveOptions, deadline

DEFAULT_PARAMS = {"MIPGap": 0.0, "MIPGapAbs": 0.0, "IntFeasTol": 1e-9, "FeasibilityTol": 1e-9}


class GurobiBackend(Backend):
    name = "gurobi"
    REQUIRED_MODULES = ("gurobipy",)
    SUPPORTS_WARM_START = True
    # time-limit constants: not measured (Gurobi is not installed here); SCIP's, as gp.quicksum is
    # a Python loop over the nonzeros like pywraplp's SetCoefficient
    BUILD_SECONDS_PER_CELL = 5e-6
    UNCOUNTED_SECONDS_PER_CELL = 4e-6
    MAX_CELLS = 500_000

    def version(self) -> str:
        import gurobipy
        return "Gurobi " + ".".join(map(str, gurobipy.gurobi.version()))

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:  # pragma: no cover
        t0 = time.perf_counter()  # the deadline counts the (first) import of the solver too
        import gurobipy as gp

        refused = self.refuse_unless_fits(instance, options, t0)
        if refused is not None:
            return refused
        until = deadline(options, t0, instance)
        scale = float(options.params.get("scale", 1.0))
        enc = Encoding(instance, scale)
        m = gp.Model()
        m.Params.OutputFlag = 0
        for k, v in {**DEFAULT_PARAMS, **{k: v for k, v in options.params.items() if k != "scale"}}.items():
            m.setParam(k, v)
        m.Params.Seed = int(options.seed)
        m.Params.Threads = max(1, int(options.threads))
        a = m.addVars(instance.n, vtype=gp.GRB.BINARY)
        t = m.addVar(lb=0.0, ub=enc.t_upper)
        for _, coefs, ct, sense, rhs in enc.rows():
            expr = gp.quicksum(float(c) * a[i] for i, c in enumerate(coefs) if c) + ct * t
            m.addConstr(expr <= rhs if sense == "L" else expr >= rhs if sense == "G" else expr == rhs)
        m.setObjective(t, gp.GRB.MINIMIZE)
        if options.warm_start is not None:
            for i, v in enumerate(np.asarray(options.warm_start)):
                a[i].Start = float(v)
        built = time.perf_counter() - t0
        if options.time_limit is not None:
            budget = self.solver_seconds(instance, until)
            if budget < MIN_SOLVER_SECONDS:
                return self.out_of_time(instance, t0, built)
            m.Params.TimeLimit = min(float(budget), m.Params.TimeLimit)
        m.optimize()
        G = gp.GRB
        claimed = {G.OPTIMAL: Status.OPTIMAL, G.TIME_LIMIT: Status.TIME_LIMIT,
                   G.INFEASIBLE: Status.INFEASIBLE}.get(m.Status, Status.FEASIBLE)
        if m.SolCount == 0:
            return self.finish(instance, None, claimed=claimed, objective=None, message=f"Gurobi status {m.Status}")
        return self.finish(instance, [a[i].X for i in range(instance.n)], claimed=claimed,
                           objective=m.ObjVal / scale, bound=m.ObjBound / scale)
