"""A small general mixed-integer linear program and its solution by the project's solvers (HiGHS through
highspy, SCIP and CBC through OR-Tools' linear solver wrapper).

:class:`milp.Instance` is a subset-sum instance; the sup-norm verification of a pruned network
(``pipelines.exact_sup``) needs arbitrary rows, continuous and binary variables and a dual bound, so it
builds a :class:`Model` here. numpy only (never torch).

Honesty rules (as in the subset-sum backends): the solver's objective value is not trusted by the caller
(``pipelines.exact_sup`` re-evaluates the networks at the returned input in float64); "optimal" is
reported only when the solver proved it with zero gaps; the dual bound is returned as the solver states
it (a valid bound up to the solver's feasibility tolerances, which are set to 1e-9).
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

SOLVERS = ("highs", "scip", "cbc")
#: What result-store keys record of this module's solving code (options, tolerances, status rules): bump it
#: when a change here can change a Result, so stored Results of the old code are not reused.
REVISION = 1
#: Result statuses: proved optimal, stopped with bounds only, infeasible, no usable answer, and (batch
#: engine, :func:`milp.batch.solve_models` with ``total_time``) never started.
STATUSES = ("optimal", "time_limit", "infeasible", "failed", "not_solved")


def available() -> list[str]:
    out = []
    if importlib.util.find_spec("highspy") is not None:
        out.append("highs")
    if importlib.util.find_spec("ortools") is not None:
        out += ["scip", "cbc"]
    return out


class Model:
    """max c^T x subject to row_lo <= A x <= row_hi, lb <= x <= ub, x_j integer for flagged j."""

    def __init__(self):
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.integer: list[bool] = []
        self.cost: dict[int, float] = {}
        self.rows: list[tuple[np.ndarray, np.ndarray, float, float]] = []

    @property
    def num_vars(self) -> int:
        return len(self.lb)

    @property
    def num_integer(self) -> int:
        return int(sum(self.integer))

    def var(self, lb: float, ub: float, integer: bool = False) -> int:
        if not (lb <= ub):
            raise ValueError(f"variable bounds: lb {lb} > ub {ub}")
        self.lb.append(float(lb))
        self.ub.append(float(ub))
        self.integer.append(bool(integer))
        return len(self.lb) - 1

    def row(self, idx, coefs, lo: float = -math.inf, hi: float = math.inf) -> None:
        """lo <= sum coefs[i] x[idx[i]] <= hi; a variable named twice gets the sum of its coefficients
        (solver interfaces overwrite or refuse duplicates)."""
        idx = np.asarray(idx, dtype=np.int64)
        coefs = np.asarray(coefs, dtype=np.float64)
        uniq, inv = np.unique(idx, return_inverse=True)
        summed = np.zeros(len(uniq))
        np.add.at(summed, inv, coefs)
        keep = summed != 0
        self.rows.append((uniq[keep], summed[keep], float(lo), float(hi)))

    def max_violation(self, x: np.ndarray) -> float:
        """The largest violation of a bound or row by x (0 for a feasible point)."""
        x = np.asarray(x, dtype=np.float64)
        v = float(max(np.max(np.array(self.lb) - x, initial=0.0), np.max(x - np.array(self.ub), initial=0.0)))
        for idx, coefs, lo, hi in self.rows:
            val = float(np.dot(coefs, x[idx]))
            v = max(v, lo - val, val - hi)
        return v

    def maximize(self, idx, coefs) -> None:
        self.cost = {int(i): float(c) for i, c in zip(idx, coefs)}

    def content_hash(self) -> str:
        """sha256 of everything that defines the model (bounds, integrality, objective, rows in order), in
        float64 bytes: equal models hash equal, any change of a coefficient or bound changes it."""
        h = hashlib.sha256(b"slth-general-model:1")
        for arr in (np.array(self.lb, dtype=np.float64), np.array(self.ub, dtype=np.float64),
                    np.array(self.integer, dtype=np.uint8), np.array(sorted(self.cost.items()), dtype=np.float64)):
            h.update(np.int64(arr.size).tobytes())
            h.update(arr.tobytes())
        for idx, coefs, lo, hi in self.rows:
            h.update(np.int64(len(idx)).tobytes())
            h.update(np.asarray(idx, dtype=np.int64).tobytes())
            h.update(np.asarray(coefs, dtype=np.float64).tobytes())
            h.update(np.array([lo, hi], dtype=np.float64).tobytes())
        return h.hexdigest()


@dataclass
class Result:
    status: str  # one of STATUSES: "optimal" (proved), "time_limit" (bounds only), "infeasible", "failed", ...
    x: np.ndarray | None
    primal: float  # the solver's objective at x (not trusted by callers)
    dual: float  # the solver's upper bound on the maximum
    seconds: float
    solver: str
    violation: float = math.nan  # of the returned x, recomputed here
    message: str = ""  # why it failed / was stopped (batch engine)
    extra: dict = field(default_factory=dict)  # e.g. {"watchdog": True} for a solve the batch watchdog stopped

    def to_dict(self) -> dict:
        """Plain JSON types only: x as a list (or None), non-finite floats as the strings "inf", "-inf", "nan"."""
        d = asdict(self)
        d["x"] = None if self.x is None else [float(v) for v in np.asarray(self.x, dtype=np.float64)]
        for k in ("primal", "dual", "seconds", "violation"):
            d[k] = _json_float(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        """Inverse of :meth:`to_dict`; raises ValueError on a malformed dict (unknown status, non-finite x)."""
        d = dict(d)
        if d.get("status") not in STATUSES:
            raise ValueError(f"status: expected one of {', '.join(STATUSES)}, got {d.get('status')!r}")
        if d.get("x") is not None:
            d["x"] = np.asarray(d["x"], dtype=np.float64)
            if d["x"].ndim != 1 or not np.all(np.isfinite(d["x"])):
                raise ValueError("x: expected a list of finite numbers")
        for k in ("primal", "dual", "seconds", "violation"):
            d[k] = float(d[k])
        return cls(**d)


def _json_float(v) -> float | str:
    v = float(v)
    return v if math.isfinite(v) else str(v)


def solver_versions(solver: str) -> str:
    """The library version behind ``solver`` (part of result-store keys: a new solver version solves again)."""
    from importlib.metadata import PackageNotFoundError, version

    dist = "highspy" if solver == "highs" else "ortools"
    try:
        return f"{dist} {version(dist)}"
    except PackageNotFoundError:
        return f"{dist} not installed"


def solve(model: Model, solver: str = "highs", time_limit: float | None = None, threads: int = 1,
          seed: int = 0) -> Result:
    if solver not in SOLVERS:
        raise ValueError(f"solver: expected one of {', '.join(SOLVERS)}, got {solver!r}")
    if solver not in available():
        raise ValueError(f"solver: {solver} is not installed here (available: {', '.join(available()) or 'none'})")
    r = _highs(model, time_limit, threads, seed) if solver == "highs" else _ortools(model, solver, time_limit, seed)
    if r.x is not None:
        r.violation, ok = check_point(model, r.x)
        if not ok:  # a solver answer that is not a solution proves nothing
            r.status, r.x, r.primal, r.dual = "failed", None, -math.inf, math.inf
    return r


def check_point(model: Model, x) -> tuple[float, bool]:
    """(violation, acceptable) of a returned point: its largest bound or row violation, recomputed in
    float64, against 1e-6 times the model's largest bound (a point beyond that is no solution)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (model.num_vars,):
        return math.inf, False
    scale = 1.0 + max(np.max(np.abs(model.lb), initial=0.0), np.max(np.abs(model.ub), initial=0.0))
    v = model.max_violation(x)
    return v, bool(v <= 1e-6 * scale)


def _highs(model: Model, time_limit, threads, seed) -> Result:
    import highspy

    from .backends.highs import new_highs

    t0 = time.perf_counter()
    h = new_highs()
    for k, v in {"output_flag": False, "mip_rel_gap": 1e-9, "mip_abs_gap": 1e-9, "mip_feasibility_tolerance": 1e-9,
                 "primal_feasibility_tolerance": 1e-9, "dual_feasibility_tolerance": 1e-9,
                 "threads": max(1, int(threads)), "random_seed": int(seed)}.items():
        h.setOptionValue(k, v)
    if time_limit is not None:
        h.setOptionValue("time_limit", max(0.05, float(time_limit)))
    inf = highspy.kHighsInf
    n = model.num_vars
    lb = np.array(model.lb)
    ub = np.array(model.ub)
    h.addVars(n, lb, ub)
    if model.cost:
        idx = np.array(list(model.cost), dtype=np.int32)
        h.changeColsCost(len(idx), idx, np.array([model.cost[i] for i in idx], dtype=np.float64))
    ints = np.flatnonzero(model.integer).astype(np.int32)
    if len(ints):
        h.changeColsIntegrality(len(ints), ints, np.ones(len(ints), dtype=np.uint8))
    if model.rows:
        lo = np.array([r[2] if math.isfinite(r[2]) else -inf for r in model.rows])
        hi = np.array([r[3] if math.isfinite(r[3]) else inf for r in model.rows])
        starts = np.cumsum([0] + [len(r[0]) for r in model.rows[:-1]]).astype(np.int32)
        index = np.concatenate([r[0] for r in model.rows]).astype(np.int32)
        value = np.concatenate([r[1] for r in model.rows])
        h.addRows(len(model.rows), lo, hi, len(index), starts, index, value)
    h.changeObjectiveSense(highspy.ObjSense.kMaximize)
    h.run()
    ms = h.getModelStatus()
    M = highspy.HighsModelStatus
    info = h.getInfo()
    has_x = info.primal_solution_status == 2  # kSolutionStatusFeasible
    x = np.array(h.getSolution().col_value) if has_x else None
    primal = float(info.objective_function_value) if has_x else -math.inf
    if ms == M.kOptimal:
        status = "optimal"
        dual = float(info.mip_dual_bound) if len(ints) else primal
    elif ms == M.kInfeasible:
        status, dual = "infeasible", -math.inf
    elif ms in (M.kTimeLimit, M.kIterationLimit, M.kInterrupt, M.kSolutionLimit):
        status = "time_limit"
        dual = float(info.mip_dual_bound) if len(ints) else math.inf
    else:
        status, dual = "failed", math.inf
    if not math.isfinite(dual) or (has_x and dual < primal):
        dual = max(dual, primal) if math.isfinite(dual) else math.inf
    return Result(status, x, primal, dual, time.perf_counter() - t0, "highs")


def _ortools(model: Model, solver: str, time_limit, seed) -> Result:
    from ortools.linear_solver import pywraplp

    t0 = time.perf_counter()
    s = pywraplp.Solver.CreateSolver(solver.upper())
    if s is None:
        raise ValueError(f"solver: OR-Tools here has no {solver.upper()}")
    inf = s.infinity()
    xs = [s.IntVar(lo, hi, "") if integer else s.NumVar(lo, hi, "")
          for lo, hi, integer in zip(model.lb, model.ub, model.integer)]
    for idx, coefs, lo, hi in model.rows:
        c = s.RowConstraint(lo if math.isfinite(lo) else -inf, hi if math.isfinite(hi) else inf, "")
        for i, v in zip(idx, coefs):
            c.SetCoefficient(xs[int(i)], float(v))
    obj = s.Objective()
    for i, v in model.cost.items():
        obj.SetCoefficient(xs[i], v)
    obj.SetMaximization()
    if time_limit is not None:
        s.SetTimeLimit(int(max(50, 1000 * float(time_limit))))
    params = pywraplp.MPSolverParameters()
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, 1e-9)
    params.SetDoubleParam(pywraplp.MPSolverParameters.PRIMAL_TOLERANCE, 1e-9)
    code = s.Solve(params)
    has_x = code in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE)
    x = np.array([v.solution_value() for v in xs]) if has_x else None
    primal = float(obj.Value()) if has_x else -math.inf
    dual = float(obj.BestBound()) if has_x or code == pywraplp.Solver.NOT_SOLVED else math.inf
    elapsed = time.perf_counter() - t0
    if code == pywraplp.Solver.OPTIMAL and (time_limit is None or elapsed < float(time_limit)):
        status = "optimal"  # CBC says OPTIMAL on a time limit (SOLVER_FACTS.md): only before it counts
    elif code == pywraplp.Solver.INFEASIBLE:
        status, dual = "infeasible", -math.inf
    elif has_x:
        status = "time_limit"
    else:
        status, dual = "failed", math.inf
    if status != "optimal" and solver == "cbc" and has_x and dual <= primal:
        dual = math.inf  # an unproven CBC bound equal to its primal is no bound
    if not math.isfinite(dual) and status == "optimal":
        dual = primal
    return Result(status, x, primal, max(dual, primal), elapsed, solver)
