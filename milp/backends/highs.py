"""HiGHS through highspy.

Tolerances (SOLVER_FACTS.md): with defaults (absolute MIP gap 1e-6, feasibility 1e-6) HiGHS returns
binaries up to ~1e-6 away from 0/1 and "Optimal" with objective 0 while the rounded mask's residual
is ~1e-6. We set zero MIP gaps and feasibility / integrality tolerances of 1e-9 (HiGHS's allowed
minimum is 1e-10); the rounded residual is still what is reported.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np

from ..encoding import Encoding
from ..instance import Instance
from ..solution import Solution, Status
from .base import Backend, SolveOptions

DEFAULT_PARAMS = {"mip_rel_gap": 0.0, "mip_abs_gap": 0.0, "mip_feasibility_tolerance": 1e-9,
                  "primal_feasibility_tolerance": 1e-9}

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

    def version(self) -> str:
        import highspy
        h = new_highs()
        return f"HiGHS {h.versionMajor()}.{h.versionMinor()}.{h.versionPatch()} via highspy"

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        import highspy

        scale = float(options.params.get("scale", 1.0))
        enc = Encoding(instance, scale)
        n = instance.n
        h = new_highs()
        for key, value in {**DEFAULT_PARAMS, **options.params}.items():
            if key != "scale":
                h.setOptionValue(key, value)
        h.setOptionValue("random_seed", int(options.seed))
        h.setOptionValue("threads", max(1, int(options.threads)))
        if options.time_limit is not None:
            h.setOptionValue("time_limit", float(options.time_limit))
        inf = highspy.kHighsInf
        lower = np.zeros(n + 1)
        upper = np.append(np.ones(n), enc.t_upper)
        h.addVars(n + 1, lower, upper)
        h.changeColsCost(1, np.array([n], dtype=np.int32), np.array([1.0]))
        h.changeColsIntegrality(n, np.arange(n, dtype=np.int32),
                                np.array([highspy.HighsVarType.kInteger] * n))
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
        t0 = time.perf_counter()
        h.run()
        seconds = time.perf_counter() - t0
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
                           raw_status=h.modelStatusToString(ms))
