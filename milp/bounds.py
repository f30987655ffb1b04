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
"""
from __future__ import annotations

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


def density_floor(X: np.ndarray, z: np.ndarray) -> float:
    """First-moment counting estimate of the best max-norm residual: the eps at which the expected number
    of the 2^m subsets whose sum lies within eps of z is one, with the subset sum of a uniformly random
    subset taken Gaussian and independent across coordinates (mean sum_i X_ij / 2, variance sum_i X_ij^2 / 4):
    2^m prod_j (2 eps phi_j(z_j)) = 1. Sharper than :func:`box_floor` where z sits in the bulk of the
    sums; an estimate, not a bound, and meaningful only where it is far below ||z||_inf."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    m, dim = X.shape
    mu, var = X.sum(axis=0) / 2.0, (X ** 2).sum(axis=0) / 4.0
    if np.any(var <= 0):
        return float("inf")
    log2_phi = -0.5 * np.log2(2 * np.pi * var) - 0.5 * (z - mu) ** 2 / var / np.log(2.0)
    with np.errstate(over="ignore"):
        return float(np.exp2(-(m + log2_phi.sum()) / dim) / 2.0)


def dual_bound(instance: Instance, w: np.ndarray) -> float:
    """LB(w) (module docstring) for weights ``w`` (rescaled to ||w||_1 = 1), clipped at 0: a valid lower
    bound on the optimum of ``instance`` for any w."""
    X = np.asarray(instance.candidates, dtype=np.float64)
    z = np.asarray(instance.target, dtype=np.float64).reshape(-1)
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    s = float(np.abs(w).sum())
    if not np.isfinite(s) or s == 0.0:
        return 0.0
    w = w / s
    g = X @ w
    k = instance.cardinality
    if k is None:
        best = float(np.maximum(g, 0.0).sum())
    else:
        best = float(np.sort(g)[::-1][:k].sum()) if k > 0 else 0.0
    return max(0.0, float(w @ z) - best)


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


__all__ = ["subset_sum_range", "box_floor", "density_floor", "dual_bound", "lp_lower_bound"]
