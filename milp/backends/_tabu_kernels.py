"""The numba kernels of :mod:`milp.backends.tabu` (imported lazily: numba takes ~0.5 s to import).

Compiled on first use and cached on disk by numba (``cache=True``). See ``tabu``'s docstring for the moves.
"""
import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def flips(X, XW, G, sq, r, g, y, sign, tabu_until, it0, moves, seed, best_e, best_y, lo, hi):
    """``moves`` tabu flips (tenure lo + randint(hi - lo)); returns (move counter, best max-norm residual seen)."""
    np.random.seed(seed)
    n, d = X.shape
    use_gram = G.shape[0] == n
    it = it0
    for _ in range(moves):
        jb = -1
        db = np.inf
        for i in range(n):
            if tabu_until[i] > it:
                continue
            v = 2.0 * sign[i] * g[i] + sq[i]
            if v < db:
                db = v
                jb = i
        it += 1
        if jb < 0:
            continue
        s = sign[jb]
        e = 0.0
        for c in range(d):
            r[c] += s * X[jb, c]
            a = abs(r[c])
            if a > e:
                e = a
        if use_gram:
            for i in range(n):
                g[i] += s * G[jb, i]
        else:
            for i in range(n):
                acc = 0.0
                for c in range(d):
                    acc += XW[i, c] * X[jb, c]
                g[i] += s * acc
        y[jb] = not y[jb]
        sign[jb] = -s
        tabu_until[jb] = it + lo + np.random.randint(hi - lo)
        if e < best_e:
            best_e = e
            best_y[:] = y
    return it, best_e

@numba.njit(cache=True, nogil=True)
def swaps(X, G, sq, r, g, y, tabu_until, it0, moves, seed, best_e, best_y, lo, hi):
    """``moves`` tabu swaps (one item out, one in: the subset size stays fixed)."""
    np.random.seed(seed)
    n, d = X.shape
    it = it0
    ins = np.empty(n, np.int64)
    outs = np.empty(n, np.int64)
    for _ in range(moves):
        ni = 0
        no = 0
        for i in range(n):
            if tabu_until[i] > it:
                continue
            if y[i]:
                ins[ni] = i
                ni += 1
            else:
                outs[no] = i
                no += 1
        it += 1
        bi = -1
        bj = -1
        db = np.inf
        for a in range(ni):
            i = ins[a]
            base = 2.0 * g[i] + sq[i]
            for b in range(no):
                j = outs[b]
                v = base - 2.0 * g[j] + sq[j] - 2.0 * G[i, j]
                if v < db:
                    db = v
                    bi = i
                    bj = j
        if bi < 0:
            continue
        e = 0.0
        for c in range(d):
            r[c] += X[bi, c] - X[bj, c]
            a2 = abs(r[c])
            if a2 > e:
                e = a2
        for m in range(n):
            g[m] += G[bi, m] - G[bj, m]
        y[bi] = False
        y[bj] = True
        tabu_until[bi] = it + lo + np.random.randint(hi - lo)
        tabu_until[bj] = it + lo + np.random.randint(hi - lo)
        if e < best_e:
            best_e = e
            best_y[:] = y
    return it, best_e

