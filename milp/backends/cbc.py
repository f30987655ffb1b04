"""CBC through PuLP (PuLP ships the CBC binary).

Tolerances (SOLVER_FACTS.md, and ``cbc`` ``increment??``): CBC only accepts a new incumbent that
improves the objective by ``increment`` (default 1e-5), and treats a_i within ``integerTolerance``
(1e-7) of 0/1 as integral -- both far above the 1e-9 optima of RSS at n = 30. We set increment 1e-12,
integer tolerance 1e-9, primal tolerance 1e-9 and zero relative/absolute gaps. PuLP's ``status``
says Optimal even after a time limit; only ``sol_status`` distinguishes (1 optimal, 2 integer feasible).
"""
from __future__ import annotations

import time

import numpy as np

from ..encoding import Encoding
from ..instance import Instance
from ..solution import Solution, Status
from .base import Backend, SolveOptions

DEFAULT_PARAMS = {"increment": 1e-12, "integerT": 1e-9, "primalT": 1e-9}


class CbcBackend(Backend):
    name = "cbc"
    REQUIRED_MODULES = ("pulp",)
    SUPPORTS_WARM_START = True

    def version(self) -> str:
        import pulp
        return f"CBC via PuLP {pulp.__version__}"

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        import pulp

        scale = float(options.params.get("scale", 1.0))
        enc = Encoding(instance, scale)
        prob = pulp.LpProblem("subset_sum", pulp.LpMinimize)
        if hasattr(prob, "add_variable"):  # PuLP >= 3.3 (constructing LpVariable directly is deprecated)
            a = [prob.add_variable(f"a_{i}", cat=pulp.LpBinary) for i in range(instance.n)]
            t = prob.add_variable("t", lowBound=0, upBound=enc.t_upper)
        else:
            a = [pulp.LpVariable(f"a_{i}", cat=pulp.LpBinary) for i in range(instance.n)]
            t = pulp.LpVariable("t", lowBound=0, upBound=enc.t_upper)
        prob += t
        for name, coefs, ct, sense, rhs in enc.rows():
            expr = pulp.lpSum(float(c) * ai for c, ai in zip(coefs, a) if c != 0.0) + ct * t
            prob += {"L": expr <= rhs, "G": expr >= rhs, "E": expr == rhs}[sense], name
        warm = options.warm_start is not None
        if warm:
            ws = np.asarray(options.warm_start).astype(int)
            for ai, v in zip(a, ws):
                ai.setInitialValue(int(v))
            t.setInitialValue(instance.residual(ws) * scale if instance.feasible(ws) else enc.t_upper)
        params = {**DEFAULT_PARAMS, **{k: v for k, v in options.params.items() if k != "scale"}}
        cli = [f"{k} {v}" for k, v in params.items()] + [f"randomCbcSeed {int(options.seed) + 1}",
                                                          f"randomSeed {int(options.seed) + 1}"]
        cmd = pulp.PULP_CBC_CMD(msg=False, timeLimit=options.time_limit, gapRel=0.0, gapAbs=0.0,
                                threads=options.threads, warmStart=warm, options=cli)
        t0 = time.perf_counter()
        prob.solve(cmd)
        seconds = time.perf_counter() - t0
        sol_status = prob.sol_status
        if sol_status == pulp.LpSolutionOptimal:
            claimed = Status.OPTIMAL
        elif sol_status == pulp.LpSolutionIntegerFeasible:
            claimed = Status.TIME_LIMIT if options.time_limit is not None and seconds >= 0.95 * options.time_limit \
                else Status.FEASIBLE
        elif sol_status == pulp.LpSolutionInfeasible:
            claimed = Status.INFEASIBLE
        else:
            claimed = Status.TIME_LIMIT if options.time_limit is not None else Status.FAILED
        values = [ai.varValue for ai in a]
        if any(v is None for v in values) or claimed in (Status.INFEASIBLE,) or sol_status == pulp.LpSolutionNoSolutionFound:
            return self.finish(instance, None, claimed=claimed, objective=None, seconds=seconds,
                               message=f"CBC found no solution (PuLP sol_status {sol_status})")
        obj = pulp.value(prob.objective)
        return self.finish(instance, values, claimed=claimed, objective=None if obj is None else obj / scale,
                           seconds=seconds, trust_slack=0.0, raw_status=pulp.LpStatus[prob.status])
