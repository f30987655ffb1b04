"""HiGHS through highspy.

Tolerances (SOLVER_FACTS.md): with defaults (absolute MIP gap 1e-6, feasibility 1e-6) HiGHS returns
binaries up to ~1e-6 away from 0/1 and "Optimal" with objective 0 while the rounded mask's residual
is ~1e-6. We set zero MIP gaps and feasibility / integrality tolerances of 1e-9 (HiGHS's allowed
minimum is 1e-10); the rounded residual is still what is reported.

Time limit: HiGHS gets what is left of ``time_limit`` after building the model, minus the reserves
of ``milp.backends.base`` (``UNCOUNTED_SECONDS_PER_CELL``: HiGHS itself overran a 0.75 s limit by up
to 0.57 s at n = 10^5 under load); a model whose estimated building does not fit the limit is refused
up front, and beyond ``MAX_CELLS`` = 5*10^5 cells it is not built at all (n = 10^6: 1.9 GB and an
11 s overrun of a 15 s limit). Building costs 0.1-0.4 us per cell. Above ``PARALLEL_PRESOLVE_MAX_N``
one presolve rule is switched off (below). Measured here under full load (sizes 200 x 30 to 10^5 x 1,
limits 0.5-1 s): within time_limit + 0.03 s (before: 32-74 s for 1 s at n = 10^5); documented bound
time_limit + 0.1 s.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

from ..encoding import Encoding
from ..instance import Instance
from ..solution import Solution, Status
from .base import MIN_SOLVER_SECONDS, Backend, SolveOptions, deadline

DEFAULT_PARAMS = {"mip_rel_gap": 0.0, "mip_abs_gap": 0.0, "mip_feasibility_tolerance": 1e-9,
                  "primal_feasibility_tolerance": 1e-9}

#: above this n, HiGHS's presolve rule "parallel rows and columns" (bit 13 of ``presolve_rule_off``)
#: is switched off: on the 2-row RSS model its cost grows ~quadratically in n and ignores the time
#: limit (n = 10^5, time_limit 1 s: 32-40 s in presolve; n = 2*10^4: 1.9 s). Below it, nothing changes.
PARALLEL_PRESOLVE_MAX_N = 5000
PARALLEL_PRESOLVE_RULE = 1 << 13

_banner_lock = threading.Lock()
_banner_done = False


def new_highs():
    """A silent ``highspy.Highs``. highspy prints a banner to fd 1 on the first construction in a
    process; it is swallowed so ``slth solve --json`` output stays parseable."""
    global _banner_done
    import highspy

    with _banner_lock:
        if _banner_done:
            h = highspy.Highs()
        else:
            saved = os.dup(1)
            try:
                with open(os.devnull, "w") as null:
                    os.dup2(null.fileno(), 1)
                    h = highspy.Highs()
            finally:
                os.dup2(saved, 1)
                os.close(saved)
            _banner_done = True
    h.setOptionValue("output_flag", False)
    return h


class HighsBackend(Backend):
    name = "highs"
    REQUIRED_MODULES = ("highspy",)
    SUPPORTS_WARM_START = True
    # time-limit constants, measured here (module docstring)
    BUILD_SECONDS_PER_CELL = 5e-7
    UNCOUNTED_SECONDS_PER_CELL = 5e-6
    MAX_CELLS = 500_000

    def version(self) -> str:
        import highspy
        h = new_highs()
        return f"HiGHS {h.versionMajor()}.{h.versionMinor()}.{h.versionPatch()} via highspy"

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        t0 = time.perf_counter()  # the deadline counts the (first) import of the solver too
        import highspy

        refused = self.refuse_unless_fits(instance, options, t0)
        if refused is not None:
            return refused
        until = deadline(options, t0, instance)
        scale = float(options.params.get("scale", 1.0))
        enc = Encoding(instance, scale)
        n = instance.n
        h = new_highs()
        params = dict(DEFAULT_PARAMS)
        if n > PARALLEL_PRESOLVE_MAX_N:
            params["presolve_rule_off"] = PARALLEL_PRESOLVE_RULE  # see the module docstring
        for key, value in {**params, **options.params}.items():
            if key != "scale":
                h.setOptionValue(key, value)
        h.setOptionValue("random_seed", int(options.seed))
        h.setOptionValue("threads", max(1, int(options.threads)))
        inf = highspy.kHighsInf
        lower = np.zeros(n + 1)
        upper = np.append(np.ones(n), enc.t_upper)
        h.addVars(n + 1, lower, upper)
        h.changeColsCost(1, np.array([n], dtype=np.int32), np.array([1.0]))
        # uint8 1 = HighsVarType.kInteger; a list of n enum objects costs ~0.1 s per 10^6 columns
        h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.ones(n, dtype=np.uint8))
        for _, coefs, ct, sense, rhs in enc.rows():
            idx = np.flatnonzero(coefs)
            vals = coefs[idx]
            if ct:
                idx, vals = np.append(idx, n), np.append(vals, ct)
            lo = rhs if sense in ("G", "E") else -inf
            hi = rhs if sense in ("L", "E") else inf
            h.addRow(lo, hi, idx.size, idx.astype(np.int32), vals.astype(np.float64))
        if options.warm_start is not None:
            ws = np.asarray(options.warm_start, dtype=np.float64)
            sol = highspy.HighsSolution()
            tval = instance.residual(ws.astype(np.uint8)) * scale if instance.feasible(ws) else enc.t_upper
            sol.col_value = list(np.append(ws, tval))
            h.setSolution(sol)
        built = time.perf_counter() - t0
        if options.time_limit is not None:
            budget = self.solver_seconds(instance, until)
            if budget < MIN_SOLVER_SECONDS:
                return self.out_of_time(instance, t0, built)
            h.setOptionValue("time_limit", float(budget))
        t1 = time.perf_counter()
        h.run()
        seconds = time.perf_counter() - t1
        ms = h.getModelStatus()
        M = highspy.HighsModelStatus
        claimed = {M.kOptimal: Status.OPTIMAL, M.kInfeasible: Status.INFEASIBLE,
                   M.kTimeLimit: Status.TIME_LIMIT, M.kIterationLimit: Status.TIME_LIMIT,
                   M.kSolutionLimit: Status.FEASIBLE, M.kInterrupt: Status.TIME_LIMIT}.get(ms, Status.FAILED)
        info = h.getInfo()
        if info.primal_solution_status < 2:  # 2 = feasible point available
            return self.finish(instance, None, claimed=claimed, objective=None, seconds=seconds,
                               message=f"HiGHS found no solution ({h.modelStatusToString(ms)})")
        values = np.asarray(h.getSolution().col_value)[:n]
        bound = info.mip_dual_bound
        return self.finish(instance, values, claimed=claimed, seconds=seconds,
                           objective=info.objective_function_value / scale,
                           bound=None if not np.isfinite(bound) else bound / scale,
                           raw_status=h.modelStatusToString(ms), build_seconds=built)
