"""Greedy construction + iterated local search (flip and swap moves) with seeded restarts.

A fast baseline and the warm start of ``auto``. Works for RSS, RFSS and MRSS: the residual vector
r = z - sum_{i in S} X_i is updated in O(d) per move; each iteration picks the best improving flip
(free subsets) or swap (in/out pair, which keeps |S| fixed) over all candidates, numpy-vectorised.
Never claims optimality.
"""
from __future__ import annotations

import time

import numpy as np

from ..instance import Instance
from ..solution import Solution, Status
from .base import Backend, SolveOptions

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


def _best_swap(X, r, inside):
    """Best (out, in) pair: r' = r + X_out - X_in."""
    ins, outs = np.flatnonzero(inside), np.flatnonzero(~inside)
    if ins.size == 0 or outs.size == 0:
        return np.inf, -1, -1
    best = (np.inf, -1, -1)
    d = X.shape[1]
    step = max(1, SWAP_BLOCK_FLOATS // max(1, outs.size * d))
    for s in range(0, ins.size, step):
        blk = ins[s:s + step]
        base = r[None, :] + X[blk]                      # removing each item of blk
        errs = np.abs(base[:, None, :] - X[outs][None, :, :]).max(axis=2)
        p = int(np.argmin(errs))
        a, b = divmod(p, outs.size)
        if errs[a, b] < best[0]:
            best = (float(errs[a, b]), int(blk[a]), int(outs[b]))
    return best


def local_search(X, z, inside, k, deadline):
    """Descend from ``inside`` with flips (k is None) and swaps until no move improves."""
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
        e, i_out, i_in = _best_swap(X, r, inside)
        if e < err:
            r = r + X[i_out] - X[i_in]
            inside[i_out], inside[i_in] = False, True
            err = e
            continue
        break
    return inside, err


def greedy(X, z, k):
    """Add the best item one at a time: until nothing improves (free), or exactly k items."""
    n = X.shape[0]
    inside = np.zeros(n, dtype=bool)
    r = z.copy()
    err = _err(r)
    for _ in range(n if k is None else k):
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
        deadline = t0 + (options.time_limit if options.time_limit is not None else float("inf"))
        rng = np.random.default_rng(options.seed)
        starts = [greedy(X, z, k)]
        if options.warm_start is not None:
            starts.insert(0, np.asarray(options.warm_start).astype(bool))
        for _ in range(restarts):  # sparse random starts: good MRSS solutions use few items
            size = k if k is not None else int(rng.integers(0, max(1, n // 2) + 1))
            start = np.zeros(n, dtype=bool)
            start[rng.choice(n, size=size, replace=False)] = True
            starts.append(start)
        best_mask, best_err, times = None, np.inf, []

        def consider(mask, err):
            nonlocal best_mask, best_err
            if err < best_err:
                best_mask, best_err = mask.copy(), err
                times.append(time.perf_counter() - t0)

        for start in starts:
            consider(*local_search(X, z, start.copy(), k, deadline))
            if time.perf_counter() >= deadline:
                break
        for it in range(iterations):
            if time.perf_counter() >= deadline or best_err == 0.0:
                break
            kicked = perturb(best_mask, k, rng, strength=2 + it % 4)
            consider(*local_search(X, z, kicked, k, deadline))
        status = Status.TIME_LIMIT if time.perf_counter() >= deadline else Status.FEASIBLE
        return self.finish(instance, best_mask.astype(np.uint8), claimed=status, objective=None,
                           seconds=time.perf_counter() - t0, time_to_first=times[0],
                           time_to_best=times[-1])
