"""Gurobi through gurobipy, only when it is importable (not installed on the project's machines;
its tests are skipped). Zero gaps, IntFeasTol 1e-9 and FeasibilityTol 1e-9 as for the others."""
from __future__ import annotations

import numpy as np

from ..encoding import Encoding
from ..instance import Instance
from ..solution import Solution, Status
from .base import Backend, SolveOptions

DEFAULT_PARAMS = {"MIPGap": 0.0, "MIPGapAbs": 0.0, "IntFeasTol": 1e-9, "FeasibilityTol": 1e-9}


class GurobiBackend(Backend):
    name = "gurobi"
    REQUIRED_MODULES = ("gurobipy",)
    SUPPORTS_WARM_START = True

    def version(self) -> str:
        import gurobipy
        return "Gurobi " + ".".join(map(str, gurobipy.gurobi.version()))

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:  # pragma: no cover
        import gurobipy as gp

        scale = float(options.params.get("scale", 1.0))
        enc = Encoding(instance, scale)
        m = gp.Model()
        m.Params.OutputFlag = 0
        for k, v in {**DEFAULT_PARAMS, **{k: v for k, v in options.params.items() if k != "scale"}}.items():
            m.setParam(k, v)
        m.Params.Seed = int(options.seed)
        m.Params.Threads = max(1, int(options.threads))
        if options.time_limit is not None:
            m.Params.TimeLimit = float(options.time_limit)
        a = m.addVars(instance.n, vtype=gp.GRB.BINARY)
        t = m.addVar(lb=0.0, ub=enc.t_upper)
        for _, coefs, ct, sense, rhs in enc.rows():
            expr = gp.quicksum(float(c) * a[i] for i, c in enumerate(coefs) if c) + ct * t
            m.addConstr(expr <= rhs if sense == "L" else expr >= rhs if sense == "G" else expr == rhs)
        m.setObjective(t, gp.GRB.MINIMIZE)
        if options.warm_start is not None:
            for i, v in enumerate(np.asarray(options.warm_start)):
                a[i].Start = float(v)
        m.optimize()
        G = gp.GRB
        claimed = {G.OPTIMAL: Status.OPTIMAL, G.TIME_LIMIT: Status.TIME_LIMIT,
                   G.INFEASIBLE: Status.INFEASIBLE}.get(m.Status, Status.FEASIBLE)
        if m.SolCount == 0:
            return self.finish(instance, None, claimed=claimed, objective=None, message=f"Gurobi status {m.Status}")
        return self.finish(instance, [a[i].X for i in range(instance.n)], claimed=claimed,
                           objective=m.ObjVal / scale, bound=m.ObjBound / scale)
