"""Exact solver: meet in the middle for d = 1 (RSS and RFSS), chunked enumeration for small MRSS.

d = 1 (Horowitz-Sahni style): split the candidates into halves A and B, enumerate the 2^|A| and
2^|B| subset sums, sort B's sums and, for every sum a of A, binary-search the target's complement
z - a among them; the two neighbours of the insertion point are the only candidates for the best
partner. With a cardinality k, half-subsets are grouped by size and A's size-j group is paired only
with B's size-(k - j) group. Cost O(2^(n/2) n); n = 30 takes a few milliseconds.

d > 1: plain enumeration of all 2^n subsets (split into a block of B sums and a loop over A), only
for n <= ``MAX_N_MULTI``.

The search runs in float64; the returned error is recomputed from the mask with exact summation, so
ties closer than ~1e-15 may be broken either way (the optimum is exact to float64 rounding).
"""
from __future__ import annotations

import time

import numpy as np

from ..instance import Instance
from ..solution import Solution, Status
from ..subsets import bits_to_mask, popcounts, subset_sums
from .base import Backend, SolveOptions, UnsupportedInstance

MAX_N_SCALAR = 44  # 2 x 2^22 sums: ~0.7 s and ~200 MB; beyond that memory grows 2x per item
MAX_N_MULTI = 22  # 2^22 subsets x d coordinates, enumerated in blocks


def _best_pair(sa: np.ndarray, sb: np.ndarray, z: float):
    """Best |z - a - b| over a in sa, b in sb; returns (error, index in sa, index in sb)."""
    order = np.argsort(sb, kind="stable")
    sorted_b = sb[order]
    need = z - sa
    pos = np.searchsorted(sorted_b, need)
    lo = np.clip(pos - 1, 0, sorted_b.size - 1)
    hi = np.clip(pos, 0, sorted_b.size - 1)
    err_lo = np.abs(need - sorted_b[lo])
    err_hi = np.abs(need - sorted_b[hi])
    use_hi = err_hi < err_lo
    best_b = np.where(use_hi, hi, lo)
    err = np.where(use_hi, err_hi, err_lo)
    ia = int(np.argmin(err))
    return float(err[ia]), ia, int(order[best_b[ia]])


def solve_scalar(x: np.ndarray, z: float, k: int | None) -> np.ndarray:
    """Optimal 0/1 mask for min |z - sum a_i x_i| (s.t. sum a_i = k if k is given)."""
    n = x.size
    m = n // 2
    xa, xb = x[:m], x[m:]
    sa, sb = subset_sums(xa), subset_sums(xb)
    if k is None:
        _, ia, ib = _best_pair(sa, sb, z)
        return np.concatenate([bits_to_mask(ia, m), bits_to_mask(ib, n - m)])
    ca, cb = popcounts(m), popcounts(n - m)
    best = (np.inf, 0, 0)
    for j in range(max(0, k - (n - m)), min(m, k) + 1):
        ida = np.flatnonzero(ca == j)
        idb = np.flatnonzero(cb == k - j)
        err, ia, ib = _best_pair(sa[ida], sb[idb], z)
        if err < best[0]:
            best = (err, int(ida[ia]), int(idb[ib]))
    return np.concatenate([bits_to_mask(best[1], m), bits_to_mask(best[2], n - m)])


def solve_multi(X: np.ndarray, z: np.ndarray, k: int | None, block: int = 64) -> np.ndarray:
    """Optimal 0/1 mask for min ||z - sum a_i X_i||_inf by enumerating every subset (small n)."""
    n = X.shape[0]
    mb = min(n, 12)
    ma = n - mb
    sb = subset_sums(X[ma:])  # (2^mb, d), index = bits of the last mb items
    cb = popcounts(mb)
    sa = subset_sums(X[:ma])
    ca = popcounts(ma)
    best = (np.inf, 0, 0)
    for start in range(0, sa.shape[0], block):
        chunk = sa[start:start + block]
        err = np.abs(z[None, None, :] - chunk[:, None, :] - sb[None, :, :]).max(axis=2)
        if k is not None:
            ok = (ca[start:start + block, None] + cb[None, :]) == k
            err = np.where(ok, err, np.inf)
        flat = int(np.argmin(err))
        ia, ib = divmod(flat, sb.shape[0])
        if err[ia, ib] < best[0]:
            best = (float(err[ia, ib]), start + ia, ib)
    return np.concatenate([bits_to_mask(best[1], ma), bits_to_mask(best[2], mb)])


class ExactBackend(Backend):
    name = "exact"
    REQUIRED_MODULES = ()
    PROVES_OPTIMALITY = True
    FAST = True  # meet in the middle at n <= 34: ~1-20 ms

    def accepts(self, instance: Instance) -> tuple[bool, str]:
        if instance.d == 1 and instance.n > MAX_N_SCALAR:
            return False, (f"exact handles d = 1 up to n = {MAX_N_SCALAR} (meet in the middle needs "
                           f"2^(n/2) memory); n = {instance.n}: use a MILP backend or 'heuristic'")
        if instance.d > 1 and instance.n > MAX_N_MULTI:
            return False, (f"exact handles d > 1 only up to n = {MAX_N_MULTI} (full enumeration); "
                           f"n = {instance.n}: use a MILP backend or 'heuristic'")
        return True, ""

    def version(self) -> str:
        return "numpy " + np.__version__

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        t0 = time.perf_counter()
        if instance.d == 1:
            mask = solve_scalar(instance.candidates[:, 0], float(instance.target[0]), instance.cardinality)
        else:
            mask = solve_multi(instance.candidates, instance.target, instance.cardinality)
        return self.finish(instance, mask, claimed=Status.OPTIMAL, objective=None,
                           seconds=time.perf_counter() - t0, trust=True)
