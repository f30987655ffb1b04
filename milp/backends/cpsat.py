"""OR-Tools CP-SAT. CP-SAT needs integer coefficients, so the instance is scaled by s = 2^p and rounded.

Scaling (SOLVER_FACTS.md): bounding t alone does not keep CP-SAT's internal sums inside int64
(MODEL_INVALID at s = 2^48..2^51 for d = 150, n = 512). We take the largest power of two with
s * (sum_ij |X_ij| + sum_j |z_j|) <= 2^52, capped at 2^48. The quantisation error of any mask's
residual is at most (|a|_1 + 1) / (2 s) -- ~5e-14 for RSS at n = 30 -- and is passed as the trust
slack, so CP-SAT's "optimal" is believed only up to that much (far below the precisions asked).

Presolve is OFF by default (``params={"cp_model_presolve": True}`` turns it back on). With it,
OR-Tools 9.15 returned OPTIMAL for a worse mask on 8 of the 2572 LeNet5 (MNIST) RSS instances at
n = 5 (true residual up to 27x the exact optimum; also at scale 2^36 and, once, 2^30), e.g.
x = (0.61907642, 0.72958281, -0.48604592, 0.12292006, -0.74715953), z = -0.25787514448165894:
presolve claims 0.1298 optimal, the optimum is 0.1053 (mask 00110). Without presolve: 0 false
claims on the same 3 x 2572 instances (n = 5, 10, 15), and the same speed on random RSS at
n = 20-25 (median 0.17 s to optimality at n = 20). ``tests/test_backends.py`` keeps this instance.

``linearization_level`` is 0 by default (override with ``params``): the LP relaxation of subset sum
is useless (a fractional mask reaches residual 0) and only costs time. One thread, 1 s limit, 16
random RSS instances per size (x, z ~ U[-1, 1]): n = 20 optimal in a median 0.057 s instead of
0.19 s; within 2x of the exact optimum at n = 25 on 10/16 instead of 4/16, at n = 30 on 4/16
instead of 0/16; equal or better residuals on NSN MRSS (d = 4, 25, 150).

Time limit: ``max_time_in_seconds`` is what is left of ``time_limit`` after the (first) import of
OR-Tools and building the model (2-6 us per cell here, ``BUILD_SECONDS_PER_CELL``), minus the
reserves of ``milp.backends.base``; a model whose estimated building does not fit is refused up front,
beyond ``MAX_CELLS`` = 5*10^5 cells it is not built. The a_i are read back in one call. Measured here
under full load (200 x 30 to 10^5 x 1, limits 0.5-1 s): within time_limit + 0.00 s (before: +0.17 s on
a process's first call, +0.3 s at n = 10^5); documented bound time_limit + 0.1 s.
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np

from ..instance import Instance
from ..solution import Solution, Status
from .base import MIN_SOLVER_SECONDS, Backend, SolveOptions, deadline

INT_BUDGET_LOG2 = 52
MAX_SCALE_LOG2 = 48


def choose_scale(instance: Instance) -> float:
    """Largest power of two s <= 2^48 with s * (sum |X| + sum |z|) <= 2^52."""
    mass = float(np.abs(instance.candidates).sum() + np.abs(instance.target).sum())
    p = MAX_SCALE_LOG2 if mass <= 0 else min(MAX_SCALE_LOG2, INT_BUDGET_LOG2 - math.ceil(math.log2(mass)))
    return float(2.0 ** p)


class CpSatBackend(Backend):
    name = "cpsat"
    REQUIRED_MODULES = ("ortools",)
    SUPPORTS_WARM_START = True
    REVISION = 2  # 2: presolve off, linearization_level 0
    # time-limit constants, measured here (module docstring)
    BUILD_SECONDS_PER_CELL = 6e-6
    UNCOUNTED_SECONDS_PER_CELL = 1e-6
    MAX_CELLS = 500_000

    def version(self) -> str:
        import ortools
        return f"OR-Tools CP-SAT {ortools.__version__}"

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        t0 = time.perf_counter()  # the deadline counts the (first) import of the solver too
        from ortools.sat.python import cp_model

        refused = self.refuse_unless_fits(instance, options, t0)
        if refused is not None:
            return refused
        until = deadline(options, t0, instance)
        s = float(options.params.get("scale", choose_scale(instance)))
        C = np.rint(instance.candidates * s).astype(np.int64)
        zz = np.rint(instance.target * s).astype(np.int64)
        n, d = C.shape
        if instance.cardinality in (None, 0):
            t_ub = int(np.abs(zz).max())
        else:
            t_ub = int((np.abs(C).sum(axis=0) + np.abs(zz)).max())
        model = cp_model.CpModel()
        a = [model.NewBoolVar(f"a_{i}") for i in range(n)]  # indices 0..n-1 (read back below)
        t = model.NewIntVar(0, t_ub, "t")
        for j in range(d):
            expr = cp_model.LinearExpr.WeightedSum(a, [int(c) for c in C[:, j]])
            model.Add(expr - t <= int(zz[j]))
            model.Add(expr + t >= int(zz[j]))
        if instance.cardinality is not None:
            model.Add(sum(a) == instance.cardinality)
        model.Minimize(t)
        if options.warm_start is not None:
            for ai, v in zip(a, np.asarray(options.warm_start).astype(int)):
                model.AddHint(ai, int(v))
        invalid = model.Validate()
        if invalid:
            return self.failure(instance, f"CP-SAT model invalid at scale 2^{math.log2(s):.0f}: {invalid}")

        solver = cp_model.CpSolver()
        prm = solver.parameters
        prm.num_workers = max(1, int(options.threads))
        prm.random_seed = int(options.seed)
        prm.cp_model_presolve = False  # see the module docstring: presolve claimed false optima
        prm.linearization_level = 0  # the LP relaxation of subset sum is useless (module docstring)
        for key, value in options.params.items():
            if key != "scale":
                if isinstance(value, str) and hasattr(type(prm), value):  # enum by name, e.g. "FIXED_SEARCH"
                    value = getattr(type(prm), value)
                setattr(prm, key, value)

        built = time.perf_counter() - t0
        if options.time_limit is not None:
            budget = self.solver_seconds(instance, until)
            if budget < MIN_SOLVER_SECONDS:
                return self.out_of_time(instance, t0, built)
            prm.max_time_in_seconds = min(float(budget), prm.max_time_in_seconds)
        times: list[float] = []
        t1 = time.perf_counter()
        lock = threading.Lock()

        class _Recorder(cp_model.CpSolverSolutionCallback):
            def on_solution_callback(self):  # noqa: N802 - OR-Tools API name
                with lock:
                    times.append(time.perf_counter() - t1)

        code = solver.Solve(model, _Recorder())
        status_map = {cp_model.OPTIMAL: Status.OPTIMAL, cp_model.FEASIBLE: Status.FEASIBLE,
                      cp_model.INFEASIBLE: Status.INFEASIBLE, cp_model.MODEL_INVALID: Status.FAILED,
                      cp_model.UNKNOWN: Status.TIME_LIMIT}
        claimed = status_map.get(code, Status.FAILED)
        if claimed == Status.FEASIBLE and options.time_limit is not None:
            claimed = Status.TIME_LIMIT  # CP-SAT stops early only on limits
        seconds = time.perf_counter() - t1
        if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return self.finish(instance, None, claimed=claimed, objective=None, seconds=seconds,
                               message=f"CP-SAT status {solver.StatusName(code)}")
        # the a_i are the model's variables 0..n-1 (created first): read them in one go, not n calls
        values = np.asarray(solver.response_proto.solution, dtype=np.int64)[:n]
        quant = (int(values.sum()) + 1) * 0.5 / s
        return self.finish(instance, values, claimed=claimed, objective=solver.ObjectiveValue() / s,
                           bound=solver.BestObjectiveBound() / s, seconds=seconds, trust_slack=2 * quant,
                           time_to_first=times[0] if times else None,
                           time_to_best=times[-1] if times else None, scale=s, build_seconds=built,
                           presolve=bool(prm.cp_model_presolve))  # milp.bounds trusts the bound only without it
