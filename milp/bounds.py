"""What any mask of an instance can achieve at best: a proven lower bound on the optimum, and counting
estimates of it (issue 13: read every residual against both).

Lower bound by LP duality, checked in float64. For any weights w with ||w||_1 <= 1 and any 0/1 mask x,

    ||z - X^T x||_inf >= w^T (z - X^T x) >= w^T z - max_x (X w)^T x

and the inner maximum over x in [0, 1]^n is sum_i max(0, (X w)_i) (with a cardinality k: the sum of
the k largest (X w)_i, or of max(0, .) when free). So LB(w) = w^T z - that sum is a valid lower bound for
*every* such w, whatever produced it; the best w is the dual of the LP relaxation
min t s.t. |z_j - (X^T x)_j| <= t, 0 <= x <= 1 (its value equals max_w LB(w)). :func:`lp_lower_bound` solves
that LP with HiGHS, takes w from its row duals (both signs tried) and *recomputes* LB(w) in float64, so
the bound never rests on the LP solver's tolerances (only on float64 rounding of a d + n term sum, far
below the numbers it is compared with). Once n exceeds the dimension the LP can usually hit z exactly
and the bound is 0: it proves something only for n below or near d.

Counting estimates (:func:`box_floor`, :func:`density_floor`): what 2^n subset sums would leave if they
were spread evenly (box) or Gaussian (first moment). Estimates, not bounds: the optimum can lie on either
side of them.

Recorded with every Solution (issue 13; :func:`apply_bounds`, called by ``milp.solve``): ``floor`` =
:func:`counting_floor`, and ``lower_bound`` = the best valid bound known, from the solve itself
(:func:`solution_lower_bound`: ``exact``'s enumeration, CP-SAT's integer bound; never an LP-based MILP's
dual bound, see there why) and, on request, from the instance (:func:`instance_bounds`: enumeration where
it is cheap, else the LP bound up to :data:`LP_BOUND_MAX_CELLS`, whose measured cost is documented there).
"""
from __future__ import annotations

import math

import numpy as np

from .instance import Instance


def subset_sum_range(X: np.ndarray) -> float:
    """R = max_j sum_i |X_ij|: the largest range [sum of negatives, sum of positives] of subset sums over
    the coordinates of the candidates X (m x dim)."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    return float(np.abs(X).sum(axis=0).max()) if X.size else 0.0


def box_floor(X: np.ndarray) -> float:
    """Counting estimate R 2^(-m/dim) / 2: 2^m subset sums spread evenly over a box of side R leave cells
    of side R 2^(-m/dim), whose points are half a side from the nearest sum in max norm. An estimate
    (sums concentrate near the mean), not a bound."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    m, dim = X.shape
    return float(subset_sum_range(X) * np.exp2(-m / dim) / 2.0)


def density_floor(X: np.ndarray, z: np.ndarray, cardinality: int | None = None) -> float:
    """First-moment counting estimate of the best max-norm residual: the eps at which the expected number
    of the subsets whose sum lies within eps of z is one, with the sum of a uniformly random subset taken
    Gaussian and independent across coordinates. Free subsets: 2^m of them, mean sum_i X_ij / 2,
    variance sum_i X_ij^2 / 4. With a ``cardinality`` k: C(m, k) of them, the sum of k drawn without
    replacement (mean k mu_j, variance k s_j^2 (m - k) / (m - 1), mu_j and s_j^2 the mean and variance of
    column j); k = 0 or m leaves one subset, whose residual is returned. Solving
    N prod_j (2 eps phi_j(z_j)) = 1. Sharper than :func:`box_floor` where z sits in the bulk of the sums;
    an estimate, not a bound (the optimum can lie on either side), meaningful only where it is far below
    ||z||_inf; ``inf`` when a coordinate cannot move (variance 0)."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    m, dim = X.shape
    if cardinality is None:
        log2_count = float(m)
        mu, var = X.sum(axis=0) / 2.0, (X ** 2).sum(axis=0) / 4.0
    else:
        k = int(cardinality)
        if k in (0, m):
            return float(np.abs(z - X.sum(axis=0) * (k == m)).max()) if dim else 0.0
        log2_count = (math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1)) / math.log(2.0)
        mean = X.mean(axis=0)
        mu, var = k * mean, k * X.var(axis=0) * (m - k) / (m - 1)
    if np.any(var <= 0):
        return float("inf")
    log2_phi = -0.5 * np.log2(2 * np.pi * var) - 0.5 * (z - mu) ** 2 / var / np.log(2.0)
    with np.errstate(over="ignore"):
        return float(np.exp2(-(log2_count + log2_phi.sum()) / dim) / 2.0)


def dual_bound(instance: Instance, w: np.ndarray) -> float:
    """LB(w) (module docstring), clipped at 0: a valid lower bound on the optimum of ``instance`` for any
    weights w (LB(w) / ||w||_1 for ||w||_1 != 1). Safe against float64 rounding: w^T z is summed exactly
    (``math.fsum``) less the rounding of its products, every (X w)_i is raised by a bound on its rounding
    error ((d + 4) eps sum_j |X_ij w_j|) before the maximum over masks is taken, and the last sum, the
    norm and the division are rounded towards a smaller bound."""
    X = np.asarray(instance.candidates, dtype=np.float64)
    z = np.asarray(instance.target, dtype=np.float64).reshape(-1)
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    s = float(np.abs(w).max()) if w.size else 0.0
    if not np.isfinite(s) or s == 0.0:
        return 0.0
    w = w / s  # exact up to rounding of w itself, which the bound below does not rely on
    eps = float(np.finfo(np.float64).eps)
    g = X @ w + (X.shape[1] + 4) * eps * (np.abs(X) @ np.abs(w))  # >= the exact (X w)_i
    k = instance.cardinality
    top = np.maximum(g, 0.0) if k is None else np.sort(g)[::-1][:k]
    best = math.fsum(top.tolist()) if top.size else 0.0
    best += 2 * eps * abs(best)
    wz = w * z
    value = math.fsum(wz.tolist()) - 2 * eps * math.fsum(np.abs(wz).tolist()) - best
    if not value > 0.0:
        return 0.0
    norm = math.fsum(np.abs(w).tolist()) * (1 + 2 * eps)  # >= ||w||_1
    return value / norm * (1 - 2 * eps)


def lp_lower_bound(instance: Instance, time_limit: float | None = 10.0) -> float:
    """The LP-duality lower bound of the module docstring (HiGHS for the duals, the bound recomputed in
    float64); 0.0 when the LP does not solve to optimality within ``time_limit`` (or highspy is missing)."""
    try:
        import highspy
    except ImportError:  # pragma: no cover - highspy is a dependency
        return 0.0
    X = np.asarray(instance.candidates, dtype=np.float64)
    z = np.asarray(instance.target, dtype=np.float64).reshape(-1)
    n, d = X.shape
    from .backends.highs import new_highs  # no banner on stdout

    h = new_highs()
    h.setOptionValue("threads", 1)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    inf = highspy.kHighsInf
    h.addVars(n + 1, np.zeros(n + 1), np.append(np.ones(n), inf))
    h.changeColsCost(1, np.array([n], dtype=np.int32), np.array([1.0]))
    idx = np.append(np.arange(n), n).astype(np.int32)
    for j in range(d):
        col = X[:, j]
        h.addRow(z[j], inf, n + 1, idx, np.append(col, 1.0))   # X_j x + t >= z_j
        h.addRow(-inf, z[j], n + 1, idx, np.append(col, -1.0))  # X_j x - t <= z_j
    if instance.cardinality is not None:
        h.addRow(instance.cardinality, instance.cardinality, n, idx[:n], np.ones(n))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return 0.0
    duals = np.asarray(h.getSolution().row_dual, dtype=np.float64)
    w = duals[0:2 * d:2] + duals[1:2 * d:2]  # one sign per row pair; the sign convention is tried both ways
    return max(dual_bound(instance, w), dual_bound(instance, -w))


# ----------------------------------------------------------------- bounds recorded with every Solution
#: :func:`instance_bounds` solves the LP of :func:`lp_lower_bound` only for instances of at most this many
#: candidate entries n * d. Cost of the whole call measured here (``python scripts/lp_bound_cost.py``, one
#: HiGHS thread, NSN candidates, load 0.3-0.5; kernel-like / uniform / mrss-suite targets; seconds, and the
#: bound it proved, which is 0 from n ~ 2.5 d on):
#:
#: ======  ====================  ====================  ====================  ====================
#: dim     n = 64                n = 256               n = 1024              n = 4096
#: ======  ====================  ====================  ====================  ====================
#: 25      0.002-0.011 s (0)     0.004-0.005 s (0)     0.015-0.019 s (0)     0.065-0.069 s (0)
#: 150     0.009-0.011 s (>0)    0.054-0.068 s (>0)    0.15-0.17 s (0)       0.59-0.63 s (0)
#: 400     0.025-0.029 s (>0)    0.17-0.28 s (>0)      1.12-1.29 s (0)       4.1-4.9 s (0)
#: ======  ====================  ====================  ====================  ====================
#:
#: About 0.6-3 us per cell, so the cap keeps one bound below ~2 s here (dim 400, n = 1024: 1.3 s; dim 150,
#: n = 4096: 0.6 s) and, for dim <= 400, skips only sizes where the bound is 0 anyway. It is computed outside
#: every time-limited solve (``milp.solve(..., bounds=True)``, ``milp.solve_many(..., bounds=True)``,
#: ``slth solve``, ``slth bench``), never inside a backend's time limit.
LP_BOUND_MAX_CELLS = 600_000
#: HiGHS time limit of that LP: a guard only (0.0, a valid trivial bound, is returned when it stops)
LP_BOUND_TIME_LIMIT = 10.0
#: backends whose ``optimal`` is a proof by enumeration in float64 (solver name after any ``auto:``)
ENUMERATING_SOLVERS = ("exact",)


def counting_floor(instance: Instance) -> float | None:
    """:func:`density_floor` of the instance (its cardinality included); None where it is not finite.
    An estimate of the optimum, not a bound."""
    value = density_floor(instance.candidates, instance.target, instance.cardinality)
    return value if math.isfinite(value) else None


def _float_sum_error(instance: Instance, m: int) -> float:
    """A bound on how far a float64 subset sum of at most m candidates, compared with z, can be from the
    exact value in any coordinate: 2 (m + 2) eps max_j (sum_i |X_ij| + |z_j|)."""
    X = np.asarray(instance.candidates, dtype=np.float64)
    z = np.asarray(instance.target, dtype=np.float64).reshape(-1)
    mass = float((np.abs(X).sum(axis=0) + np.abs(z)).max()) if X.size else float(np.abs(z).max(initial=0.0))
    return 2 * (m + 2) * float(np.finfo(np.float64).eps) * mass * (1 + 1e-6)


def solution_lower_bound(instance: Instance, solution) -> float | None:
    """A valid lower bound on the optimum of ``instance`` derived from one solve, or None. Only two
    kinds of solver answer can be turned into one:

    - ``exact`` (also as ``auto:exact``) with status ``optimal``: an enumeration of every mask in float64,
      so the optimum is at least the returned residual less what float64 sums can misjudge
      (:func:`_float_sum_error`, ~1e-15 relative): the exact optimum, up to that margin.
    - ``cpsat``: CP-SAT works on integers, exactly, on the model scaled by s and rounded
      (:mod:`milp.backends.cpsat`); its best objective bound B (``Solution.bound`` = B / s, also when it was
      stopped by the time limit) bounds the rounded residual of every mask, and rounding moves a mask of m
      items by at most (m + 1) / 2 units, so the optimum is at least B / s - (m + 1) / (2 s) (m = k with a
      cardinality, else n; plus the float64 rounding of X s when s is not a power of two). Only when the
      solve ran with presolve off (``Solution.extra['presolve'] is False``): with presolve on, OR-Tools 9.15
      claimed false optima (cpsat module docstring), i.e. wrong bounds.

    Not used: the dual bound of ``highs``, ``scip``, ``cbc`` and ``gurobi`` (``Solution.bound``), nor their
    ``optimal`` (which is that bound meeting the incumbent). Those bounds come from LP relaxations solved in
    floating point with feasibility, integrality and optimality tolerances (1e-9 here), over a
    branch-and-bound tree whose node duals these APIs do not return, so nothing valid can be recomputed
    from them (a safe bound would need each node's duals, as :func:`dual_bound` does for the root); their
    claims are known to be off by the tolerances (``../shared/SOLVER_FACTS.md``: "Optimal" with objective 0
    for a residual of 1e-8). The root LP's bound, made rigorous, is :func:`lp_lower_bound`."""
    if not getattr(solution, "found", False):
        return None
    name = str(solution.solver).split(":")[-1]
    if name in ENUMERATING_SOLVERS and solution.status.value == "optimal":
        m = instance.n if instance.cardinality is None else instance.cardinality
        return max(0.0, float(solution.error) - _float_sum_error(instance, m))
    extra = solution.extra or {}
    if name == "cpsat" and solution.bound is not None and extra.get("presolve") is False and extra.get("scale"):
        s, bound = float(extra["scale"]), float(solution.bound)
        if not (math.isfinite(bound) and math.isfinite(s) and s > 0):
            return None
        m = instance.n if instance.cardinality is None else instance.cardinality
        eps = float(np.finfo(np.float64).eps)
        X, z = np.asarray(instance.candidates), np.asarray(instance.target)
        big = s * max(float(np.abs(X).max(initial=0.0)), float(np.abs(z).max(initial=0.0)))
        slack = (m + 1) * (0.5 + 2 * eps * big) / s
        value = bound * (1 - 2 * eps) - slack
        return max(0.0, value * (1 - 2 * eps))
    return None


def instance_bounds(instance: Instance, time_limit: float | None = LP_BOUND_TIME_LIMIT,
                    exact: bool = True) -> dict:
    """What is known of the optimum of ``instance`` without solving it with the caller's solver, once per
    instance: ``lower_bound`` (valid: the exact optimum by enumeration where ``auto`` would enumerate,
    i.e. about a second at most, when ``exact``; else the LP-duality bound of :func:`lp_lower_bound` when
    n * d <= :data:`LP_BOUND_MAX_CELLS`; else None), ``lower_bound_source`` (``exact``, ``lp`` or '') and
    ``floor`` (:func:`counting_floor`, an estimate). ``time_limit`` caps the enumeration and the LP."""
    out = {"lower_bound": None, "lower_bound_source": "", "floor": counting_floor(instance)}
    if exact:
        from .backends import SolveOptions
        from .backends.auto import auto_choice
        from .backends.exact import ExactBackend

        if auto_choice(instance) == "exact":
            sol = ExactBackend().solve(instance, SolveOptions(time_limit=time_limit))
            lb = solution_lower_bound(instance, sol)
            if lb is not None:
                return {**out, "lower_bound": lb, "lower_bound_source": "exact"}
    if instance.n * instance.d <= LP_BOUND_MAX_CELLS:
        out.update(lower_bound=lp_lower_bound(instance, time_limit=time_limit), lower_bound_source="lp")
    return out


def apply_bounds(instance: Instance, solution, bounds: dict | None = None):
    """Record on ``solution`` (in place; returned) the best valid lower bound known: the larger of
    :func:`solution_lower_bound` and ``bounds['lower_bound']`` (from :func:`instance_bounds`), with its
    source in ``solution.extra['lower_bound_source']`` (``exact``, ``cpsat``, ``lp``), and the counting
    floor (``bounds['floor']``, else computed). A bound already on the solution is kept if larger."""
    best, source = solution.lower_bound, solution.extra.get("lower_bound_source", "") if solution.extra else ""
    own = solution_lower_bound(instance, solution)
    candidates = [(own, str(solution.solver).split(":")[-1])]
    if bounds:
        candidates.append((bounds.get("lower_bound"), bounds.get("lower_bound_source") or "lp"))
    for value, src in candidates:
        if value is not None and (best is None or value > best):
            best, source = float(value), src
    solution.lower_bound = best
    if best is not None:
        solution.extra = {**(solution.extra or {}), "lower_bound_source": source}
    solution.floor = bounds["floor"] if bounds and "floor" in bounds else counting_floor(instance)
    return solution


__all__ = ["subset_sum_range", "box_floor", "density_floor", "dual_bound", "lp_lower_bound", "LP_BOUND_MAX_CELLS",
           "LP_BOUND_TIME_LIMIT", "counting_floor", "solution_lower_bound", "instance_bounds", "apply_bounds"]
