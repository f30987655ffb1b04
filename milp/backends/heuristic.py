"""Greedy construction + iterated local search (flip and swap moves) with seeded restarts.

A fast baseline and the warm start of ``auto``. Works for RSS, RFSS and MRSS: the residual vector
r = z - sum_{i in S} X_i is updated in O(d) per move; each iteration picks the best improving flip
(free subsets) or swap (in/out pair, which keeps |S| fixed) over all candidates, numpy-vectorised.
Never claims optimality.

Time limit (``milp.backends.base`` explains the budget): the deadline is checked before every greedy
step, every move, between the blocks of a swap scan (at most ``SWAP_BLOCK_FLOATS`` floats, ~10-30 ms)
and before every start and iteration; random starts are built only when reached. A fixed-size greedy
start cut short is completed with unused items, and the first start is always evaluated, so there is
always a mask. Measured here (2 cores fully loaded by another job), limit 1 s: n = 10^5 (free, k = 7,
k = n/2), n = 10^6 and n = 2000 x d = 50 all stopped within time_limit + 0.02 s (before: 4.6 s at
n = 10^5); n = 10^7 stops early by the ``finish`` reserve. Documented bound: time_limit + 0.1 s plus
one O(n*d) pass over the candidates (~0.1 s per 10^6 cells).
"""
from __future__ import annotations

import time

import numpy as np

from ..instance import Instance
from ..solution import Solution, Status
from .base import Backend, SolveOptions, deadline

DEFAULT_RESTARTS = 4
DEFAULT_ITERATIONS = 300
SWAP_BLOCK_FLOATS = 4_000_000  # cap on the (out x in x d) swap tensor evaluated at once


def _err(r: np.ndarray) -> float:
    return float(np.abs(r).max())


def _best_flip(X, r, inside):
    sign = np.where(inside, -1.0, 1.0)  # adding i subtracts X_i from r; removing adds it back
    errs = np.abs(r[None, :] - sign[:, None] * X).max(axis=1)
    i = int(np.argmin(errs))
    return float(errs[i]), i


def _best_swap(X, r, inside, until=float("inf")):
    """Best (out, in) pair: r' = r + X_out - X_in. Evaluated in blocks of at most
    ``SWAP_BLOCK_FLOATS`` floats (of the ins x outs x d tensor) with the deadline ``until`` checked
    between blocks: past it, the best pair of the blocks seen so far is returned (tagged False)."""
    ins, outs = np.flatnonzero(inside), np.flatnonzero(~inside)
    if ins.size == 0 or outs.size == 0:
        return np.inf, -1, -1, True
    best = (np.inf, -1, -1)
    d = X.shape[1]
    step = max(1, SWAP_BLOCK_FLOATS // max(1, outs.size * d))
    # when one row (one item out, every item in) exceeds the block, the outs are split too; with
    # step == 1 the visiting order (and so the tie-breaking) is the same row-major order as unsplit
    ostep = outs.size if step > 1 else max(1, SWAP_BLOCK_FLOATS // d)
    for s in range(0, ins.size, step):
        blk = ins[s:s + step]
        base = r[None, :] + X[blk]                      # removing each item of blk
        for o in range(0, outs.size, ostep):
            if time.perf_counter() >= until:
                return (*best, False)
            oblk = outs[o:o + ostep]
            errs = np.abs(base[:, None, :] - X[oblk][None, :, :]).max(axis=2)
            p = int(np.argmin(errs))
            a, b = divmod(p, oblk.size)
            if errs[a, b] < best[0]:
                best = (float(errs[a, b]), int(blk[a]), int(oblk[b]))
    return (*best, True)


def local_search(X, z, inside, k, deadline):
    """Descend from ``inside`` with flips (k is None) and swaps until no move improves or the
    deadline passes (checked before every move and inside the swap scan)."""
    r = z - X[inside].sum(axis=0)
    err = _err(r)
    while time.perf_counter() < deadline:
        if k is None:
            e, i = _best_flip(X, r, inside)
            if e < err:
                r = r + (X[i] if inside[i] else -X[i])
                inside[i] = not inside[i]
                err = e
                continue
        e, i_out, i_in, _ = _best_swap(X, r, inside, deadline)
        if e < err:  # an improving pair, even from a scan cut short by the deadline
            r = r + X[i_out] - X[i_in]
            inside[i_out], inside[i_in] = False, True
            err = e
            continue
        break
    return inside, err


def greedy(X, z, k, deadline=float("inf")):
    """Add the best item one at a time: until nothing improves (free), or exactly k items. Past the
    deadline (checked before every step) a fixed-size start is completed with the first unused items,
    so it always has k items."""
    n = X.shape[0]
    inside = np.zeros(n, dtype=bool)
    r = z.copy()
    err = _err(r)
    for step in range(n if k is None else k):
        if time.perf_counter() >= deadline:
            if k is not None:
                inside[np.flatnonzero(~inside)[:k - step]] = True
            break
        cand = np.flatnonzero(~inside)
        errs = np.abs(r[None, :] - X[cand]).max(axis=1)
        j = int(np.argmin(errs))
        if k is None and errs[j] >= err:
            break
        i = int(cand[j])
        inside[i] = True
        r = r - X[i]
        err = float(errs[j])
    return inside


def perturb(inside, k, rng, strength):
    """Kick a local optimum: ``strength`` random flips (free subsets) or swaps (fixed size)."""
    inside = inside.copy()
    n = inside.size
    for _ in range(strength):
        if k is None:
            i = int(rng.integers(n))
            inside[i] = not inside[i]
        else:
            ins, outs = np.flatnonzero(inside), np.flatnonzero(~inside)
            if ins.size and outs.size:
                inside[rng.choice(ins)], inside[rng.choice(outs)] = False, True
    return inside


class HeuristicBackend(Backend):
    """Iterated local search: greedy start (and the warm start, if any), steepest descent, then
    ``iterations`` rounds of perturb-and-descend from the best mask so far (accept if better),
    interleaved with sparse random restarts. Seeded; stops early at the time limit."""

    name = "heuristic"
    REQUIRED_MODULES = ()
    FAST = True  # ~2 ms at n = 30

    def version(self) -> str:
        return "greedy+iterated-local-search 2"

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:
        t0 = time.perf_counter()
        X, z, k, n = instance.candidates, instance.target, instance.cardinality, instance.n
        iterations = int(options.params.get("iterations", DEFAULT_ITERATIONS))
        restarts = int(options.params.get("restarts", DEFAULT_RESTARTS))
        until = deadline(options, t0, instance)
        rng = np.random.default_rng(options.seed)

        def random_start():  # sparse random starts: good MRSS solutions use few items
            size = k if k is not None else int(rng.integers(0, max(1, n // 2) + 1))
            start = np.zeros(n, dtype=bool)
            start[rng.choice(n, size=size, replace=False)] = True
            return start

        # the warm start, the greedy start, then ``restarts`` random ones, built lazily (each random
        # start costs O(n)); the random generator is drawn in the same order as before
        starts = [lambda: greedy(X, z, k, until)] + [random_start] * restarts
        if options.warm_start is not None:
            starts.insert(0, lambda: np.asarray(options.warm_start).astype(bool))
        best_mask, best_err, times = None, np.inf, []

        def consider(mask, err):
            nonlocal best_mask, best_err
            if err < best_err:
                best_mask, best_err = mask.copy(), err
                times.append(time.perf_counter() - t0)

        for make_start in starts:  # the first start is always evaluated: there is always a mask
            consider(*local_search(X, z, make_start(), k, until))
            if time.perf_counter() >= until:
                break
        for it in range(iterations):
            if time.perf_counter() >= until or best_err == 0.0:
                break
            kicked = perturb(best_mask, k, rng, strength=2 + it % 4)
            consider(*local_search(X, z, kicked, k, until))
        status = Status.TIME_LIMIT if time.perf_counter() >= until else Status.FEASIBLE
        return self.finish(instance, best_mask.astype(np.uint8), claimed=status, objective=None,
                           seconds=time.perf_counter() - t0, time_to_first=times[0],
                           time_to_best=times[-1])
