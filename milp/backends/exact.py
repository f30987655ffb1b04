"""Exact solver: meet in the middle for d = 1 (RSS and RFSS), chunked enumeration for small MRSS.

d = 1 (Horowitz-Sahni style): split the candidates into halves A and B, enumerate the 2^|A| and
2^|B| subset sums, sort B's sums and, for every sum a of A, binary-search the target's complement
z - a among them; the two neighbours of the insertion point are the only candidates for the best
partner. With a cardinality k, half-subsets are grouped by size and A's size-j group is paired only
with B's size-(k - j) group. Cost O(2^(n/2) n); n = 30 takes a few milliseconds.

d > 1: plain enumeration of all 2^n subsets (split into a block of B sums and a loop over A), only
for n <= ``MAX_N_MULTI``.

Time and memory: :func:`memory_estimate` (from n, d and k) is checked before anything is allocated;
beyond ``MAX_BYTES`` (2 GiB) the instance is refused (``UnsupportedInstance``). For d > 1 the
enumeration blocks shrink with d (``BLOCK_BYTES``); they used 64 subsets at any d (n = 22, d = 1000:
4.4 GB, 107 s). With a time limit the deadline is checked between blocks (d > 1) and between chunks
of the search (d = 1); the subset sums and the sort of B are started only when their measured cost
fits the time left. Stopped early, the result is the best mask of the subsets enumerated so far
(or the empty / first-k mask) with status ``time_limit``. Measured here under full load: MRSS
n = 22 (d = 30, 100, 300) and RSS n = 44 stopped within time_limit + 0.01 s; documented bound
time_limit + 0.1 s (one block or chunk, or an underestimated sort).

The search runs in float64; the returned error is recomputed from the mask with exact summation, so
ties closer than ~1e-15 may be broken either way (the optimum is exact to float64 rounding).
"""
from __future__ import annotations

import time

import numpy as np

from ..instance import Instance
from ..solution import Solution, Status
from ..subsets import bits_to_mask, popcounts, subset_sums
from .base import Backend, SolveOptions, deadline

MAX_N_SCALAR = 44  # 2 x 2^22 sums: ~0.7 s and ~200 MB; beyond that memory grows 2x per item
MAX_N_MULTI = 22  # 2^22 subsets x d coordinates, enumerated in blocks
#: exact refuses (UnsupportedInstance, before allocating anything) an instance whose
#: :func:`memory_estimate` exceeds this; for d > 1 it grows with d (n = 22: ~150 kB per coordinate).
MAX_BYTES = 2 * 1024 ** 3
#: d > 1: the (block x 2^12 x d) temporaries of one enumeration step are kept below this (at most 64
#: A-subsets per block, as before; fewer for d > 16). The result does not depend on the block size.
BLOCK_BYTES = 64 * 1024 ** 2
#: d = 1: sums of A searched among B's per step (between two deadline checks)
SEARCH_CHUNK = 2 ** 16
#: d = 1: measured cost of the one uninterruptible step, the stable argsort of B's sums (0.32 us per
#: sum here under full load at 2^22 sums); it is skipped when the time left cannot pay for it
SORT_SECONDS_PER_ITEM = 3e-7
#: measured cost per float of building the subset sums by doubling (9-36 ns here at 2^22 sums, the
#: high end under load); the enumeration is not started when the time left cannot pay for them
SUMS_SECONDS_PER_FLOAT = 4e-8


def _halves(n: int, d: int) -> tuple[int, int]:
    """(|A|, |B|): the two halves of the items enumerated separately."""
    if d == 1:
        return n // 2, n - n // 2
    mb = min(n, 12)
    return n - mb, mb


def _block(n: int, d: int) -> int:
    """A-subsets per enumeration block for d > 1 (<= 64, temporaries <= BLOCK_BYTES)."""
    mb = _halves(n, d)[1]
    return int(max(1, min(64, BLOCK_BYTES // (2 * 8 * 2 ** mb * d))))


def memory_estimate(n: int, d: int, k: int | None = None) -> int:
    """Peak bytes of :class:`ExactBackend` on an instance of n items in d coordinates (an upper
    estimate: every array counted as if alive at once, the doubling of subset sums at 2x)."""
    ma, mb = _halves(n, d)
    A, B = 2 ** ma, 2 ** mb
    if d == 1:
        total = 2 * 8 * (A + B)                      # subset sums (doubling peak)
        total += 2 * 8 * B                           # argsort of B and B sorted
        total += 10 * 8 * min(A, SEARCH_CHUNK)       # search temporaries per chunk
        if k is not None:
            total += (1 + 8 + 8) * (A + B)           # popcounts, group indices, gathered sums
        return int(total)
    total = 2 * 8 * d * (A + B)                      # subset sums of both halves (doubling peak)
    total += A + B                                   # popcounts
    total += 2 * 8 * _block(n, d) * B * d            # (block x B x d) difference and its abs
    return int(total)


def _sums_fit(n: int, d: int, until: float) -> bool:
    """Whether the subset sums of both halves can be built before the deadline ``until``."""
    ma, mb = _halves(n, d)
    return time.perf_counter() + SUMS_SECONDS_PER_FLOAT * d * (2 ** ma + 2 ** mb) <= until


def _best_pair(sa: np.ndarray, sb: np.ndarray, z: float, until: float = float("inf")):
    """Best |z - a - b| over a in sa, b in sb; returns (error, index in sa, index in sb, complete).
    A is searched in chunks with the deadline ``until`` checked between them; past it (or when the
    sort of B would not fit before it) the best pair so far is returned with complete=False
    (error inf and indices -1 if none)."""
    if time.perf_counter() + SORT_SECONDS_PER_ITEM * sb.size > until:
        return np.inf, -1, -1, False
    order = np.argsort(sb, kind="stable")
    sorted_b = sb[order]
    best = (np.inf, -1, -1)
    for s in range(0, sa.size, SEARCH_CHUNK):
        if time.perf_counter() >= until:
            return (*best, False)
        need = z - sa[s:s + SEARCH_CHUNK]
        pos = np.searchsorted(sorted_b, need)
        lo = np.clip(pos - 1, 0, sorted_b.size - 1)
        hi = np.clip(pos, 0, sorted_b.size - 1)
        err_lo = np.abs(need - sorted_b[lo])
        err_hi = np.abs(need - sorted_b[hi])
        use_hi = err_hi < err_lo
        best_b = np.where(use_hi, hi, lo)
        err = np.where(use_hi, err_hi, err_lo)
        ia = int(np.argmin(err))
        if err[ia] < best[0]:  # strict: the first minimum in A's order, as in one unchunked search
            best = (float(err[ia]), s + ia, int(order[best_b[ia]]))
    return (*best, True)


def _trivial(n: int, k: int | None) -> np.ndarray:
    """The fallback mask when the deadline passes before any candidate: empty, or the first k items."""
    mask = np.zeros(n, dtype=np.uint8)
    mask[:k or 0] = 1
    return mask


def _scalar(x: np.ndarray, z: float, k: int | None, until: float = float("inf")):
    """Meet in the middle; returns (mask, complete). Incomplete: the best mask of the pairs searched
    before the deadline (or the trivial one, whichever is better)."""
    n = x.size
    m = n // 2
    if not _sums_fit(n, 1, until):
        return _trivial(n, k), False
    xa, xb = x[:m], x[m:]
    sa, sb = subset_sums(xa), subset_sums(xb)
    if k is None:
        err, ia, ib, done = _best_pair(sa, sb, z, until)
        best = (err, ia, ib)
        if not done:  # cut short: also try every A-subset alone (B's subset 0 is empty), O(2^m)
            ia0 = int(np.argmin(np.abs(z - sa)))
            if abs(z - sa[ia0]) < best[0]:
                best = (float(abs(z - sa[ia0])), ia0, 0)
    else:
        ca, cb = popcounts(m), popcounts(n - m)
        best, done = (np.inf, 0, 0), True
        for j in range(max(0, k - (n - m)), min(m, k) + 1):
            ida = np.flatnonzero(ca == j)
            idb = np.flatnonzero(cb == k - j)
            err, ia, ib, done = _best_pair(sa[ida], sb[idb], z, until)
            if err < best[0]:
                best = (err, int(ida[ia]), int(idb[ib]))
            if not done:
                break
    if not np.isfinite(best[0]):
        return _trivial(n, k), False
    return np.concatenate([bits_to_mask(best[1], m), bits_to_mask(best[2], n - m)]), done


def solve_scalar(x: np.ndarray, z: float, k: int | None) -> np.ndarray:
    """Optimal 0/1 mask for min |z - sum a_i x_i| (s.t. sum a_i = k if k is given)."""
    return _scalar(x, z, k)[0]


def _multi(X: np.ndarray, z: np.ndarray, k: int | None, block: int | None = None, until: float = float("inf")):
    """Full enumeration in blocks of A-subsets against all of B's, the deadline checked between
    blocks; returns (mask, complete)."""
    n, d = X.shape
    ma, mb = _halves(n, d)
    block = _block(n, d) if block is None else block
    if not _sums_fit(n, d, until):
        return _trivial(n, k), False
    sb = subset_sums(X[ma:])  # (2^mb, d), index = bits of the last mb items
    cb = popcounts(mb)
    sa = subset_sums(X[:ma])
    ca = popcounts(ma)
    best, done = (np.inf, 0, 0), True
    for start in range(0, sa.shape[0], block):
        if time.perf_counter() >= until:
            done = False
            break
        chunk = sa[start:start + block]
        err = np.abs(z[None, None, :] - chunk[:, None, :] - sb[None, :, :]).max(axis=2)
        if k is not None:
            ok = (ca[start:start + block, None] + cb[None, :]) == k
            err = np.where(ok, err, np.inf)
        flat = int(np.argmin(err))
        ia, ib = divmod(flat, sb.shape[0])
        if err[ia, ib] < best[0]:
            best = (float(err[ia, ib]), start + ia, ib)
    if not np.isfinite(best[0]):
        return _trivial(n, k), False
    return np.concatenate([bits_to_mask(best[1], ma), bits_to_mask(best[2], mb)]), done


def solve_multi(X: np.ndarray, z: np.ndarray, k: int | None, block: int | None = None) -> np.ndarray:
    """Optimal 0/1 mask for min ||z - sum a_i X_i||_inf by enumerating every subset (small n)."""
    return _multi(X, z, k, block)[0]


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
        need = memory_estimate(instance.n, instance.d, instance.cardinality)
        if need > MAX_BYTES:
            return False, (f"enumerating n = {instance.n}, d = {instance.d} needs an estimated "
                           f"{need / 2 ** 30:.2f} GiB (memory_estimate), more than exact's MAX_BYTES = "
                           f"{MAX_BYTES / 2 ** 30:.2f} GiB; use a MILP backend or 'heuristic'")
        return True, ""

    def version(self) -> str:
        return "numpy " + np.__version__

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        t0 = time.perf_counter()
        until = deadline(options, t0, instance)
        if instance.d == 1:
            mask, done = _scalar(instance.candidates[:, 0], float(instance.target[0]), instance.cardinality, until)
        else:
            mask, done = _multi(instance.candidates, instance.target, instance.cardinality, until=until)
        if not done:  # the best mask of the part enumerated before the time limit: not proven
            sol = self.finish(instance, mask, claimed=Status.TIME_LIMIT, objective=None,
                              seconds=time.perf_counter() - t0)
            sol.message = "; ".join(filter(None, ["time limit reached before the enumeration finished: "
                                                  "the best mask of the subsets enumerated so far", sol.message]))
            return sol
        return self.finish(instance, mask, claimed=Status.OPTIMAL, objective=None,
                           seconds=time.perf_counter() - t0, trust=True)
