"""``tabu``: tabu search on an adaptively weighted least-squares surrogate of the max-norm residual.

Built for MRSS (issue 13: pick a subset of n vectors X_i in R^d whose sum is closest to z in max norm),
where generic MILP stalls and the flip/swap descent of ``heuristic`` stops on the plateaus of the max
norm (only the largest coordinate counts, so most moves change nothing). Here the search walks on

    f_w(y) = sum_j w_j r_j^2,   r = z - X^T y,

which every move changes, and re-fits the weights w to the max norm as it goes (iteratively re-weighted
least squares toward L-infinity): every ``period`` moves, w <- (w + (|r| / ||r||_inf)^Q + FLOOR) / 2 from the
current residual, so the coordinates that are largest now weigh most. Each move is the best non-tabu flip
(free subsets) or swap (in/out pair; fixed cardinality k) by its change of f_w, improving or not; a moved
item is tabu for a random 10-29 moves (fewer on small instances, :func:`tenure`). With the weighted Gram
matrix G = X diag(w) X^T and g = X diag(w) r, a flip of item j changes f_w by 2 s_j g_j + G_jj (s_j = +1 if
j is in the subset, -1 otherwise) and a swap (i out, j in) by 2 (g_i - g_j) + G_ii + G_jj - 2 G_ij; after a
move g is updated with one row of G, so a flip costs O(n) (O(n d) when n > ``GRAM_MAX_N`` and G is not
formed) and a swap O(k (n - k)). On small instances (n < ``RESTART_MAX_N``), after ``STALL_ROUNDS`` rounds
without a new best the search restarts from the best mask with a few random flips (tabu search alone
cycles there). The best mask by true max-norm residual over every visited mask is kept; it is recomputed
in float64 by ``Backend.finish`` (the search runs in float64 with incremental updates and never reports
its own number). The search ends with ``heuristic``'s steepest flip/swap descent on the true max norm from
the best mask (the last ``POLISH_SHARE`` of the limit). Never claims optimality.

Measured (issue 13; ``results/bench-vector``, 10 s, one thread, load 3-6): on dim-25 instances with
n = 1024 NSN candidates median 0.044 where ``heuristic`` ends at 0.124 and HiGHS / CP-SAT / SCIP / CBC
warm-started from it at 0.145-0.148 (n = 4096: 0.020 against 0.15-0.18); at dim 150 only 1.0-1.4x better.
Tabu on the plain (unweighted) least squares reached 0.07-0.10 in the lab; a direct L^p (p = 8) objective
was 30x slower per move and no better.

Kernels are compiled with numba (:mod:`milp.backends._tabu_kernels`, cached on disk after the first
compilation, ~4 s here once per machine; importing numba and loading them ~0.9 s once per process).
In a plain ``solve`` that load counts against the time limit (a short limit may then leave only the
greedy start); batch workers pay it before their first instance's clock (:meth:`TabuBackend.prepare`);
:func:`warm_up` loads them ahead of time. Seeded (numba's generator is reseeded from ``options.seed``
before every chunk of moves); results depend on how many moves fit in the time limit
(``params={"moves": N}`` runs exactly N moves, for reproducible tests). Time limit: the deadline is
checked between chunks of moves sized to take ~``CHUNK_SECONDS``, and before every re-weighting; bound:
time_limit + one chunk + one re-weighting (~0.05 s at n = 4096, d = 25).
"""
from __future__ import annotations

import time

import numpy as np

from ..instance import Instance
from ..solution import Solution, Status
from .base import Backend, SolveOptions, deadline
from .heuristic import greedy, local_search

#: tabu tenure: a moved item may not move again for lo + randint(hi - lo) moves, with (lo, hi) =
#: (TENURE_LO, TENURE_HI) capped at n / 4 and n / 2 (fixed size: at the smaller side of the swap) so that
#: small instances keep moves
TENURE_LO, TENURE_HI = 10, 30


def tenure(n: int, k: int | None) -> tuple[int, int]:
    m = n if k is None else min(k, n - k)
    hi = max(2, min(TENURE_HI, m // 2 + 1))
    return max(1, min(TENURE_LO, m // 4)), hi
#: re-weighting w <- (w + (|r| / max|r|)^Q + FLOOR) / 2 every PERIOD moves (Q, FLOOR, PERIOD measured on
#: dim-25 instances not in any benchmark suite: Q in 2..8 and PERIOD 1000..5000 gave the same within noise)
Q, FLOOR, PERIOD = 4.0, 0.05, 5000
#: a round (one weighting) lasts min(PERIOD, max(50, 5 n)) moves; for n < RESTART_MAX_N, after STALL_ROUNDS
#: rounds without a new best mask the search restarts from the best one with max(2, n // KICK_DIVISOR)
#: random flips (swaps). Measured: without restarts tabu cycled on n = 12 (optimum found on 5 of 12 tiny
#: instances); with them at n = 1024, dim 25 it ended worse (0.067-0.074 against 0.051-0.060, 10 s)
STALL_ROUNDS, KICK_DIVISOR, RESTART_MAX_N = 3, 50, 200
#: the weighted Gram matrix (8 n^2 bytes) is formed up to this n; above it moves cost O(n d)
GRAM_MAX_N = 4096
#: wall time one chunk of moves should take (deadline checks in between)
CHUNK_SECONDS = 0.02
#: share of the time limit kept for the closing max-norm descent (``heuristic.local_search``)
POLISH_SHARE = 0.05

_KERNELS = None


def _kernels():
    """The numba-compiled move loops (compiled, or loaded from numba's cache, on first use)."""
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS
    from . import _tabu_kernels as kern

    _KERNELS = (kern.flips, kern.swaps)
    warm_up()  # compile, or load from numba's cache, the one signature search() calls them with
    return _KERNELS


def warm_up() -> None:
    """Compile (or load from numba's cache) both kernels on a tiny instance."""
    X = np.ones((2, 2))
    search(X, np.zeros(2), np.zeros(2, bool), None, until=float("inf"), seed=0, moves=2)
    search(X, np.zeros(2), np.array([True, False]), 1, until=float("inf"), seed=0, moves=2)


def search(X, z, y, k, until, seed: int, moves: int | None = None, on_improve=None):
    """Tabu search from mask ``y`` (modified in place) until ``until`` (perf_counter) or ``moves`` moves.
    Returns (best mask, its max-norm residual as tracked incrementally). ``on_improve()`` is called after
    every chunk that improved the best."""
    flips, swaps = _kernels()
    X = np.ascontiguousarray(X, dtype=np.float64)
    n, d = X.shape
    y = np.asarray(y, dtype=np.bool_).copy()
    r = np.asarray(z, dtype=np.float64) - X[y].sum(axis=0)
    sign = np.where(y, 1.0, -1.0)
    best_y, best_e = y.copy(), float(np.abs(r).max()) if d else 0.0
    tabu_until = np.zeros(n, np.int64)
    w = np.ones(d)
    it, chunk, done, rounds = 0, 64, 0, 0
    gram = n <= GRAM_MAX_N
    if k is not None and (k == 0 or k == n):
        return best_y, best_e  # nothing to swap
    empty = np.zeros((0, 0))
    lo, hi = tenure(n, k)
    period = min(PERIOD, max(50, 5 * n))
    rng = np.random.default_rng(seed)
    stalled = 0
    while best_e > 0.0 and time.perf_counter() < until and (moves is None or done < moves):
        if stalled >= STALL_ROUNDS and n < RESTART_MAX_N:  # no new best for a while: restart from the best with random kicks
            y[:] = best_y
            for _ in range(max(2, n // KICK_DIVISOR)):
                if k is None:
                    y[rng.integers(n)] ^= True
                else:
                    y[rng.choice(np.flatnonzero(y))] = False
                    y[rng.choice(np.flatnonzero(~y))] = True
            r[:] = np.asarray(z, dtype=np.float64) - X[y].sum(axis=0)
            sign[:] = np.where(y, 1.0, -1.0)
            tabu_until[:] = 0
            stalled = 0
        round_best = best_e
        top = float(np.abs(r).max())
        w = 0.5 * w + 0.5 * ((np.abs(r) / top) ** Q + FLOOR if top > 0 else np.ones(d))
        XW = np.ascontiguousarray(X * w)
        G = XW @ X.T if gram else empty
        sq = np.einsum("ij,ij->i", XW, X)
        g = XW @ r
        in_round = 0
        while in_round < period and time.perf_counter() < until and (moves is None or done < moves):
            m = min(chunk, period - in_round, (moves - done) if moves is not None else chunk)
            t = time.perf_counter()
            before = best_e
            if k is None:
                it, best_e = flips(X, XW, G, sq, r, g, y, sign, tabu_until, it, m, seed * 1_000_003 + rounds,
                                   best_e, best_y, lo, hi)
            else:
                it, best_e = swaps(X, G, sq, r, g, y, tabu_until, it, m, seed * 1_000_003 + rounds, best_e,
                                   best_y, lo, hi)
            rounds += 1
            done += m
            in_round += m
            if on_improve is not None and best_e < before:
                on_improve()
            spent = time.perf_counter() - t
            if moves is None:  # size the next chunk to take about CHUNK_SECONDS
                chunk = int(max(1, min(period, chunk * 2 if spent < CHUNK_SECONDS / 2 else
                                       chunk * CHUNK_SECONDS / max(spent, 1e-9))))
        stalled = 0 if best_e < round_best else stalled + 1
    return best_y, best_e


class TabuBackend(Backend):
    """Tabu search on an adaptively weighted least-squares surrogate (module docstring). Free subsets
    (flips) and fixed cardinality (swaps; n <= ``GRAM_MAX_N``). Warm start: searched from the warm mask,
    else from the greedy start of ``heuristic``. ``threads`` > 1: that many independent searches (seeds
    ``seed``, then derived ones) in parallel threads (the numba kernels release the GIL), each polished, the
    best mask wins (with ``threads = 1`` the result is the first of them). Measured here: two searches of
    10^6 moves in two threads take 2.0 s against 0.8 s for one alone (this machine's 2 vCPUs give no
    parallel speed-up to this memory-bound loop), so ``slth bench`` and ``auto`` use one thread unless told
    otherwise. Never claims optimality."""

    name = "tabu"
    REQUIRED_MODULES = ("numba",)
    SUPPORTS_WARM_START = True
    FAST = False

    def version(self) -> str:
        import numba

        return f"weighted-least-squares tabu 1 (numba {numba.__version__})"

    def prepare(self) -> None:
        _kernels()

    def accepts(self, instance: Instance) -> tuple[bool, str]:
        if instance.cardinality is not None and instance.n > GRAM_MAX_N:
            return False, (f"fixed cardinality needs the n x n Gram matrix, formed only up to n = {GRAM_MAX_N} "
                           f"(n = {instance.n}); use 'heuristic'")
        return super().accepts(instance)

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        t0 = time.perf_counter()
        _kernels()  # compiled or loaded from numba's cache: counted against the limit
        until = deadline(options, t0, instance)
        X, z, k = instance.candidates, instance.target, instance.cardinality
        moves = options.params.get("moves")
        if options.warm_start is not None:
            start = np.asarray(options.warm_start).astype(bool)
        else:
            start = greedy(X, z, k, until)
        times = [time.perf_counter() - t0]
        polish_from = until if until == float("inf") else until - POLISH_SHARE * (until - time.perf_counter())
        n_moves = None if moves is None else int(moves)
        improved = lambda: times.append(time.perf_counter() - t0)  # noqa: E731 (list.append: thread-safe)
        seeds = [int(options.seed)] + [int(options.seed) * 1_000 + 7_919 * i
                                       for i in range(1, max(1, int(options.threads)))]

        def one(seed: int):
            found, _ = search(X, z, start, k, polish_from, seed=seed, moves=n_moves, on_improve=improved)
            ran_out = time.perf_counter() >= polish_from  # the search ran until its share of the limit
            before = instance.residual(found.astype(np.uint8))
            found, err = local_search(X, z, found, k, until)  # steepest max-norm descent from the best mask
            if err < before:
                improved()
            return instance.residual(found.astype(np.uint8)), ran_out, found

        if len(seeds) == 1:
            _, stopped, mask = one(seeds[0])
        else:  # one independent search per thread (the kernels release the GIL), the best mask wins
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(seeds)) as pool:
                _, stopped, mask = min(pool.map(one, seeds), key=lambda res: res[0])
        status = Status.TIME_LIMIT if stopped or time.perf_counter() >= until else Status.FEASIBLE
        return self.finish(instance, mask.astype(np.uint8), claimed=status, objective=None,
                           seconds=time.perf_counter() - t0, time_to_first=times[0], time_to_best=times[-1])
