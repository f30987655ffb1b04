"""CBC through PuLP (PuLP ships the CBC binary).

Tolerances (SOLVER_FACTS.md, and ``cbc`` ``increment??``): CBC only accepts a new incumbent that
improves the objective by ``increment`` (default 1e-5), and treats a_i within ``integerTolerance``
(1e-7) of 0/1 as integral -- both far above the 1e-9 optima of RSS at n = 30. We set increment 1e-12,
integer tolerance 1e-9, primal tolerance 1e-9 and zero relative/absolute gaps. PuLP's ``status``
says Optimal even after a time limit; only ``sol_status`` distinguishes (1 optimal, 2 integer feasible).

Time limit: CBC's ``sec`` is what is left of ``time_limit`` after building the PuLP model, minus the
reserves of ``milp.backends.base``: writing the MPS file, CBC reading it, reading the solution back,
and CBC's own overruns (its feasibility pump ran 2.5 s on a 1 s limit at n = 10^5): 20 us per cell
(``UNCOUNTED_SECONDS_PER_CELL``) and 0.03 s per process. A model whose estimated cost does not fit is
refused up front (n = 10^5 needs ~2.6 s), beyond ``MAX_CELLS`` = 5*10^5 it is not built. Measured
here under full load (200 x 30 to 1000 x 20, limits 0.5-1 s): within time_limit + 0.07 s (before:
+1.9-2.3 s at n = 10^5); documented bound time_limit + 0.2 s.
"""
from __future__ import annotations

import time

import numpy as np

from ..encoding import Encoding
from ..instance import Instance
from ..solution import Solution, Status
from .base import MIN_SOLVER_SECONDS, Backend, SolveOptions, deadline

DEFAULT_PARAMS = {"increment": 1e-12, "integerT": 1e-9, "primalT": 1e-9}


class CbcBackend(Backend):
    name = "cbc"
    REQUIRED_MODULES = ("pulp",)
    SUPPORTS_WARM_START = True
    # time-limit constants, measured here (module docstring)
    BUILD_SECONDS_PER_CELL = 6e-6
    UNCOUNTED_SECONDS_PER_CELL = 2e-5
    FIXED_SECONDS = 0.03
    MAX_CELLS = 500_000

    def version(self) -> str:
        import pulp
        return f"CBC via PuLP {pulp.__version__}"

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        t0 = time.perf_counter()  # the deadline counts the (first) import of the solver too
        import pulp

        refused = self.refuse_unless_fits(instance, options, t0)
        if refused is not None:
            return refused
        until = deadline(options, t0, instance)
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
            # the same expression as lpSum(c * a_i) + ct * t (byte-identical MPS), built ~3x faster
            expr = pulp.LpAffineExpression([(ai, float(c)) for c, ai in zip(coefs, a) if c != 0.0] + [(t, ct)])
            prob += {"L": expr <= rhs, "G": expr >= rhs, "E": expr == rhs}[sense], name
        warm = options.warm_start is not None
        if warm:
            ws = np.asarray(options.warm_start).astype(int)
            for ai, v in zip(a, ws):
                ai.setInitialValue(int(v))
            t.setInitialValue(instance.residual(ws) * scale if instance.feasible(ws) else enc.t_upper)
        params = {**DEFAULT_PARAMS, **{k: v for k, v in options.params.items() if k != "scale"}}
        # CBC's seeds are C ints and 0 means "pick one": seed + 1, wrapped to stay below 2^31
        cbc_seed = int(options.seed) % (2 ** 31 - 1) + 1
        cli = [f"{k} {v}" for k, v in params.items()] + [f"randomCbcSeed {cbc_seed}", f"randomSeed {cbc_seed}"]
        built = time.perf_counter() - t0
        limit = None
        if options.time_limit is not None:
            limit = self.solver_seconds(instance, until)
            if limit < MIN_SOLVER_SECONDS:
                return self.out_of_time(instance, t0, built)
        cmd = pulp.PULP_CBC_CMD(msg=False, timeLimit=limit, gapRel=0.0, gapAbs=0.0,
                                threads=options.threads, warmStart=warm, options=cli)
        t1 = time.perf_counter()
        prob.solve(cmd)
        seconds = time.perf_counter() - t1
        sol_status = prob.sol_status
        if sol_status == pulp.LpSolutionOptimal:
            claimed = Status.OPTIMAL
        elif sol_status == pulp.LpSolutionIntegerFeasible:
            claimed = Status.TIME_LIMIT if limit is not None and seconds >= 0.95 * limit else Status.FEASIBLE
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
                           seconds=seconds, trust_slack=0.0, raw_status=pulp.LpStatus[prob.status],
                           build_seconds=built)
