"""The exact sup-norm error sup_{X in box} |f(X) - g(X)| per output entry, by mixed-integer programming.

f (the target) and g (a target-shaped network computing what the pruned network computes, e.g.
``Construction.effective()``) are feed-forward Conv2d / ReLU / MaxPool2d networks (g's convs may be
:class:`models.structured_cnn.SignSplitConv2d`), hence piecewise linear; for one output entry e and a sign
s, max_X s (f(X)_e - g(X)_e) is a MILP (the standard big-M encodings, e.g. Tjeng, Xiao & Tedrake,
"Evaluating robustness of neural networks with mixed integer programming", ICLR 2019):

- variables: the input entries of e's receptive field (its *cone*: every activation e depends on, layer
  by layer), shared by f and g, in the box [lo, hi]; one continuous variable per activation of f and of g
  in the cone, with the interval bounds of :func:`pipelines.bounds.interval_bounds`;
- conv: one equality row per output activation;
- ReLU z = max(a, 0), a in [l, u]: z = a if l >= 0, z = 0 if u <= 0, else a binary t with
  z >= a, z >= 0, z <= a - l (1 - t), z <= u t;
- max-pool z = max_i a_i: inputs with u_i < max_j l_j are dropped; z >= a_i,
  z <= a_i + (max_j u_j - l_i)(1 - t_i), sum_i t_i = 1;
- split conv (g only): r = relu(y) as above and relu(-y) = r - y;
- valid cuts: ld <= x - y <= ud for every pair of corresponding activations (the difference bounds of
  :func:`pipelines.bounds.interval_bounds`), which make the LP relaxation at least as tight as the cheap
  interval certificate.

Translation structure: two output entries of one channel whose cones are translates of each other (same
in-bound pattern at every layer, shifted by the output offset times each layer's cumulative stride) give
the same MILP: it is solved once per channel, border class and sign. The MILPs (and their confirming second
solves) run as batches on the project's batch engine (:func:`milp.batch.solve_models`: worker processes, hard
time limits and a watchdog, an optional resumable store of the solver Results); see :func:`exact_sup` for
the rounds that pruning needs.

Never trusting a solver: every MILP is solved by two solvers (``confirm_with``, SCIP after HiGHS by
default) and the larger dual bound kept, since one solver's proof was seen to be wrong. The lower bound of an entry is f - g *evaluated in float64* at the solver's
input (clipped to the box), not the solver's objective; the upper bound is the solver's dual bound plus
1e-7 (1 + |bound|) for its feasibility tolerances (1e-9), and never above the cheap interval bound.
An entry is *closed* when the solver proved optimality and upper - lower <= 1e-6 (1 + |lower|).
Entries whose cheap bound is already below the best lower bound found cannot hold the sup: with
``prune=True`` they are not solved (their cheap bound is their upper bound). A solve the batch watchdog
stopped, that failed, or that never started (``total_time``) has no dual bound: its entry keeps its cheap
bound and is not closed.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from milp import general

from .bounds import interval_bounds, network_ops

DUAL_SLACK = 1e-7
#: Classes in the first round of :func:`exact_sup` (those of largest cheap bound; a constant, not ``n_jobs``,
#: so which MILPs are solved does not depend on the worker count)
FIRST_ROUND = 2


def _parents(ops, shape) -> list[np.ndarray]:
    """Per op, an int64 matrix (rows = input taps, columns = output positions) of input entry index + 1
    (0 = padding). Conv taps are (c_in, kh, kw) in weight order; max-pool taps are per channel (c, kh, kw)."""
    out, cur = [], tuple(shape)
    for op in ops:
        n = int(np.prod(cur))
        idx = torch.arange(1, n + 1, dtype=torch.float64).view(1, *cur)
        if op[0] == "conv":
            kh, kw = op[1].shape[2:]
            U = F.unfold(idx, (kh, kw), padding=op[5], stride=op[4])[0]
            oc = op[1].shape[0]
            oh = (cur[1] + 2 * op[5][0] - kh) // op[4][0] + 1
            ow = (cur[2] + 2 * op[5][1] - kw) // op[4][1] + 1
            nxt = (oc, oh, ow)
        elif op[0] == "relu":
            U, nxt = None, cur
        else:
            _, k, s, p = op
            U = F.unfold(idx, k, padding=p, stride=s)[0]
            oh = (cur[1] + 2 * p[0] - k[0]) // s[0] + 1
            ow = (cur[2] + 2 * p[1] - k[1]) // s[1] + 1
            nxt = (cur[0], oh, ow)
        out.append((None if U is None else U.round().long().numpy(), cur, nxt))
        cur = nxt
    return out


def _taps(op, par, e):
    """Input entries (index, tap number) feeding output entry e (flat index) of op."""
    P, cur, nxt = par
    if op[0] == "relu":
        return np.array([e]), None
    c, pos = divmod(e, nxt[1] * nxt[2])
    if op[0] == "conv":
        col = P[:, pos]
        taps = np.flatnonzero(col)
    else:
        kk = op[1][0] * op[1][1]
        col = P[c * kk:(c + 1) * kk, pos]
        taps = np.flatnonzero(col)
    return col[taps] - 1, taps


def _cone(ops, pars, e) -> list[np.ndarray]:
    """Per activation layer 0..L, the sorted flat indices that output entry e depends on."""
    need = [None] * (len(ops) + 1)
    need[-1] = np.array([e])
    for k in range(len(ops) - 1, -1, -1):
        s = set()
        for x in need[k + 1]:
            s.update(_taps(ops[k], pars[k], int(x))[0].tolist())
        need[k] = np.array(sorted(s), dtype=np.int64)
    return need


def _signature(ops, pars, cone, e) -> tuple:
    """The cone relative to e's position, scaled by each layer's cumulative stride: equal signatures =
    identical MILPs (module docstring)."""
    L = len(ops)
    _, _, oshape = pars[-1]
    c, pos = divmod(e, oshape[1] * oshape[2])
    oi, oj = divmod(pos, oshape[2])
    si, sj = 1, 1
    sig = [c]
    for k in range(L, -1, -1):
        shape = pars[k][1] if k < L else oshape
        cc, rem = np.divmod(cone[k], shape[1] * shape[2])
        ii, jj = np.divmod(rem, shape[2])
        sig.append(np.stack([cc, ii - oi * si, jj - oj * sj]).tobytes())
        if k > 0:
            op = ops[k - 1]
            st = op[4] if op[0] == "conv" else ((1, 1) if op[0] == "relu" else op[2])
            si, sj = si * st[0], sj * st[1]
    return tuple(sig)


class _Builder:
    def __init__(self, model: general.Model):
        self.m = model

    def lin(self, terms, lo=-math.inf, hi=math.inf) -> None:
        """A row over terms (var or None for the constant 1, coef): constants move to the bounds."""
        const = sum(c for v, c in terms if v is None)
        vs = [(v, c) for v, c in terms if v is not None]
        self.m.row([v for v, _ in vs], [c for _, c in vs], lo=lo - const, hi=hi - const)

    def relu(self, a: int, l: float, u: float):
        """z = relu(a) and its phase: a binary t, or the constant 1 (always active) / 0 (never), as
        (var, coef) terms: t_terms = [(t, 1)] or [(None, 1)] or []."""
        m = self.m
        if l >= 0:
            return a, [(None, 1.0)]
        if u <= 0:
            return m.var(0.0, 0.0), []
        z = m.var(0.0, u)
        t = m.var(0.0, 1.0, integer=True)
        m.row([z, a], [1.0, -1.0], lo=0.0)  # z >= a
        m.row([z, a, t], [1.0, -1.0, -l], hi=-l)  # z <= a - l (1 - t)
        m.row([z, t], [1.0, -u], hi=0.0)  # z <= u t
        return z, [(t, 1.0)]

    def maxpool(self, vs, ls, us):
        """z = max_i a_i and, per input i, its selector as terms (as in :meth:`relu`)."""
        m = self.m
        ls, us = np.asarray(ls), np.asarray(us)
        keep = us >= ls.max()
        if keep.sum() == 1:
            i = int(np.flatnonzero(keep)[0])
            return vs[i], [[(None, 1.0)] if j == i else [] for j in range(len(vs))]
        U = float(us[keep].max())
        z = m.var(float(ls.max()), U)
        sel = []
        for v, l, k in zip(vs, ls, keep):
            if not k:
                sel.append([])
                continue
            t = m.var(0.0, 1.0, integer=True)
            m.row([z, v], [1.0, -1.0], lo=0.0)
            m.row([z, v, t], [1.0, -1.0, U - l], hi=U - l)  # z <= a + (U - l)(1 - t)
            sel.append([(t, 1.0)])
        m.row([s[0][0] for s in sel if s], np.ones(int(keep.sum())), lo=1.0, hi=1.0)
        return z, sel


def _one_minus(terms):
    return [(None, 1.0)] + [(v, -c) for v, c in terms]


def _build(f_ops, g_ops, pars, bounds, cone, e, sign, lo, hi):
    m = general.Model()
    B = _Builder(m)
    xin = {int(i): m.var(lo, hi) for i in cone[0]}
    vf, vg = dict(xin), dict(xin)
    for k, (fop, gop) in enumerate(zip(f_ops, g_ops)):
        bi, bo = bounds[k], bounds[k + 1]
        flat = {key: t.reshape(-1).numpy() for key, t in bo.items()}
        flat_in = {key: t.reshape(-1).numpy() for key, t in bi.items()}
        nf, ng = {}, {}
        split = {}
        for ent in cone[k + 1]:
            ent = int(ent)
            src, taps = _taps(fop, pars[k], ent)
            if fop[0] == "conv":
                o = ent // (pars[k][2][1] * pars[k][2][2])
                W = fop[1][o].reshape(-1).numpy()
                z = m.var(flat["lx"][ent], flat["ux"][ent])
                m.row([z] + [vf[int(s)] for s in src], np.concatenate([[1.0], -W[taps]]), lo=float(fop[3][o]),
                      hi=float(fop[3][o]))
                nf[ent] = z
                Lp = gop[1][o].reshape(-1).numpy()
                zg = m.var(flat["ly"][ent], flat["uy"][ent])
                if gop[2] is None:
                    m.row([zg] + [vg[int(s)] for s in src], np.concatenate([[1.0], -Lp[taps]]), lo=float(gop[3][o]),
                          hi=float(gop[3][o]))
                else:
                    Ln = gop[2][o].reshape(-1).numpy()
                    idx, coef = [zg], [1.0]
                    for s, tp in zip(src, taps):
                        s = int(s)
                        if s not in split:
                            r, _ = B.relu(vg[s], flat_in["ly"][s], flat_in["uy"][s])
                            q = m.var(max(0.0, -flat_in["uy"][s]), max(0.0, -flat_in["ly"][s]))
                            m.row([q, r, vg[s]], [1.0, -1.0, 1.0], lo=0.0, hi=0.0)  # relu(-y) = relu(y) - y
                            split[s] = (r, q)
                        r, q = split[s]
                        idx += [r, q]
                        coef += [-Lp[tp], -Ln[tp]]
                    m.row(idx, coef, lo=float(gop[3][o]), hi=float(gop[3][o]))
                ng[ent] = zg
            elif fop[0] == "relu":
                af, ag = vf[ent], vg[ent]
                nf[ent], tf = B.relu(af, flat_in["lx"][ent], flat_in["ux"][ent])
                ng[ent], tg = B.relu(ag, flat_in["ly"][ent], flat_in["uy"][ent])
                zf, zg = nf[ent], ng[ent]
                if zf != zg and (tf != [(None, 1.0)] or tg != [(None, 1.0)]):
                    # relu(a) - relu(b): = a - b where both are active, 0 where both are not (module docstring)
                    mf, mg = max(0.0, -flat_in["lx"][ent]), max(0.0, -flat_in["ly"][ent])
                    uo, lo_ = max(0.0, float(flat["ud"][ent])), min(0.0, float(flat["ld"][ent]))
                    B.lin([(zf, 1.0), (zg, -1.0), (af, -1.0), (ag, 1.0)] + [(v, -mf * c) for v, c in _one_minus(tf)],
                          hi=0.0)
                    B.lin([(zf, 1.0), (zg, -1.0)] + [(v, -uo * c) for v, c in tf], hi=0.0)
                    B.lin([(zf, 1.0), (zg, -1.0), (af, -1.0), (ag, 1.0)] + [(v, mg * c) for v, c in _one_minus(tg)],
                          lo=0.0)
                    B.lin([(zf, 1.0), (zg, -1.0)] + [(v, -lo_ * c) for v, c in tg], lo=0.0)
            else:
                src = [int(s) for s in src]
                nf[ent], sf = B.maxpool([vf[s] for s in src], flat_in["lx"][src], flat_in["ux"][src])
                ng[ent], sg = B.maxpool([vg[s] for s in src], flat_in["ly"][src], flat_in["uy"][src])
                zf, zg = nf[ent], ng[ent]
                uo, lo_ = float(flat["ud"][ent]), float(flat["ld"][ent])
                for s, a_sf, a_sg in zip(src, sf, sg):
                    di = [(zf, 1.0), (zg, -1.0), (vf[s], -1.0), (vg[s], 1.0)]
                    if a_sf:  # f's max is at s: zf - zg <= a_s - b_s
                        mu = max(0.0, uo - float(flat_in["ld"][s]))
                        B.lin(di + [(v, -mu * c) for v, c in _one_minus(a_sf)], hi=0.0)
                    if a_sg:  # g's max is at s: zf - zg >= a_s - b_s
                        ml = max(0.0, float(flat_in["ud"][s]) - lo_)
                        B.lin(di + [(v, ml * c) for v, c in _one_minus(a_sg)], lo=0.0)
            if nf[ent] != ng[ent]:
                m.row([nf[ent], ng[ent]], [1.0, -1.0], lo=float(flat["ld"][ent]), hi=float(flat["ud"][ent]))
        vf, vg = nf, ng
    m.maximize([vf[e], vg[e]], [float(sign), -float(sign)])
    return m, xin


def _evaluate(f, g, shape, xin, x, e, sign, lo, hi):
    X = torch.full((int(np.prod(shape)),), float(lo), dtype=torch.float64)
    for i, v in xin.items():
        X[i] = min(max(float(x[v]), lo), hi)
    X = X.view(1, *shape)
    with torch.no_grad():
        d = (f(X) - g(X)).reshape(-1)[e].item()
    return sign * d, X[0]


def exact_sup(target: nn.Sequential, effective: nn.Sequential, shape, lo: float = 0.0, hi: float = 1.0,
              solver: str = "highs", time_limit: float | None = 60.0, total_time: float | None = None,
              prune: bool = True, lower_bound: float = 0.0, seed: int = 0, progress=None,
              evaluate_with: nn.Module | None = None, confirm_with: str | None = "scip", n_jobs: int = 1,
              store=None, batch_progress: bool = False) -> dict:
    """sup_{X in [lo, hi]^shape} ||f(X) - g(X)||_max and per-output-entry results, by one MILP per channel,
    border class and sign (module docstring), solved through the batch engine (:func:`milp.batch.solve_models`:
    ``n_jobs`` worker processes, a hard time limit and a watchdog per MILP, no orphan workers on a kill).

    ``time_limit``: seconds per MILP and solver. ``total_time``: no MILP starts after it (the ones not started
    keep their cheap interval bound as their upper bound, status ``not_solved``); a MILP running then finishes
    within its time limit (capped at ``total_time``). ``lower_bound``: an error already attained (e.g. by the
    attack), used only to skip MILPs that cannot exceed it (``prune``). ``progress(done, total, record)`` is
    called as each MILP's record is complete (``total``: every channel/border/sign class). ``evaluate_with``:
    the network whose error is evaluated at the solvers' inputs (default ``effective``; ``verify`` passes the
    pruned network itself, so every lower value is an error the pruned network attains). ``confirm_with``: a
    second solver run on every MILP (default SCIP where installed; None: none): the upper bound is the larger
    of the two dual bounds, the lower value the better of the two evaluated points, and a MILP is closed only
    when both solvers proved optimality and the bounds meet. ``store``: None, a path or a
    :class:`milp.store.ResultStore`: every solver Result is kept there (JSON) and a rerun solves nothing it
    holds; the points are re-evaluated here in float64 either way. ``batch_progress``: the engine's tqdm bar.

    Rounds (what changed when the MILPs moved to the batch engine): the sequential loop pruned each MILP
    against the best value found so far. Now the MILPs go in rounds, each one batch (both solvers of every
    MILP in it): round 1 holds the ``FIRST_ROUND`` classes of largest cheap bound (the cheap pass that finds
    a good lower value), the next round every class still unpruned after it; with ``total_time`` (and a
    ``time_limit``) a round holds at most ``2 n_jobs ceil(left / time_limit)`` classes (the ones that can
    start in the time left; the rest wait for the next round, so a large network does not build models that
    never run). Pruning against a smaller running best can only solve more MILPs than before, never fewer:
    ``upper`` and ``lower`` are as good as the sequential loop's or better. Seeds: solver seed of a MILP =
    :func:`milp.batch.instance_seed` (``seed``, the model's hash), independent of ``n_jobs`` and order.

    Returns ``lower`` (max evaluated error, attained at ``argmax``), ``upper`` (sound bound), ``closed``
    (lower = upper to 1e-6 relative), ``records`` (one per MILP or skipped class) and ``classes``."""
    t_start = time.perf_counter()
    import copy

    from milp.batch import solve_models
    from milp.store import ResultStore

    f = copy.deepcopy(target).double().eval()
    g = copy.deepcopy(effective).double().eval()
    f_ops, g_ops = network_ops(f), network_ops(g)
    if evaluate_with is not None:
        g = evaluate_with
    shape = tuple(int(s) for s in shape)
    bounds = interval_bounds(f_ops, g_ops, shape, lo, hi)
    pars = _parents(f_ops, shape)
    out_shape = pars[-1][2]
    # g (``evaluate_with``) equals ``effective`` up to float64 rounding: widen by 1e-9 of the output magnitude,
    # as pipelines.bounds.certified_intervals does
    mag = max(float(bounds[-1][k].abs().max()) for k in ("lx", "ux", "ly", "uy"))
    ud = bounds[-1]["ud"].reshape(-1).numpy() + 1e-9 * mag
    ld = bounds[-1]["ld"].reshape(-1).numpy() - 1e-9 * mag
    classes: dict[tuple, list[int]] = {}
    cones = {}
    for e in range(int(np.prod(out_shape))):
        cone = _cone(f_ops, pars, e)
        sig = _signature(f_ops, pars, cone, e)
        if sig not in classes:
            classes[sig] = []
            cones[sig] = cone
        classes[sig].append(e)
    jobs = []
    for sig, ents in classes.items():
        e = ents[0]
        jobs.append((float(ud[e]), sig, e, 1))
        jobs.append((float(-ld[e]), sig, e, -1))
    jobs.sort(key=lambda j: -j[0])
    solvers = [solver] + ([confirm_with] if confirm_with and confirm_with != solver and
                          confirm_with in general.available() else [])
    workers = max(1, n_jobs if n_jobs > 0 else (os.cpu_count() or 1))
    limit = time_limit if total_time is None else (total_time if time_limit is None else min(time_limit, total_time))
    state = {"best": max(0.0, float(lower_bound)), "argmax": None, "done": 0}
    records: list[dict | None] = [None] * len(jobs)

    def new_record(j: int) -> dict:
        cheap, sig, e, sign = jobs[j]
        return {"channel": e // (out_shape[1] * out_shape[2]), "entries": list(classes[sig]), "sign": sign,
                "cheap": cheap}

    def finish(j: int, rec: dict) -> None:
        records[j] = rec
        state["done"] += 1
        if progress is not None and rec["status"] not in ("skipped", "not_solved"):
            progress(state["done"], len(jobs), rec)

    def solved(j: int, m, xin, runs) -> None:
        """The record of job j from its solvers' Results (module docstring: never trusting a solver)."""
        cheap, sig, e, sign = jobs[j]
        rec = new_record(j)
        if all(r.status == "not_solved" for r in runs):  # total_time ran out before any solver started
            finish(j, {**rec, "status": "not_solved", "lower": -math.inf, "upper": cheap, "seconds": 0.0})
            return
        if any(r.status == "infeasible" for r in runs):  # every input of the box is a solution
            raise RuntimeError(f"exact_sup: the MILP of output entry {e} (sign {sign}) is infeasible; every input of "
                               "the box is a solution, so an encoding or bound is wrong: refusing to report")
        lower, X = -math.inf, None
        for r in runs:
            if r.x is not None:
                v, Xr = _evaluate(f, g, shape, xin, r.x, e, sign, lo, hi)
                if v > lower:
                    lower, X = v, Xr
        # the largest dual bound of the solvers: one solver's wrong proof (seen: HiGHS' presolve declared a
        # point 0.3 % below an attained value optimal) does not make the bound lie unless every solver errs; a
        # solver stopped by the watchdog or never started has no bound (inf)
        duals = [r.dual for r in runs]
        dual = max(duals)
        upper = min(cheap, dual + DUAL_SLACK * (1 + abs(dual))) if math.isfinite(dual) else cheap
        upper = max(upper, lower)
        closed = all(r.status == "optimal" for r in runs) and upper - lower <= 1e-6 * (1 + abs(lower))
        finite = [d for d in duals if math.isfinite(d)]
        rec.update(status="/".join(r.status for r in runs), lower=lower, upper=upper,
                   solvers_disagree=bool(len(finite) > 1 and max(finite) - min(finite) > 1e-6 * (1 + abs(dual))),
                   solver_primal=[r.primal for r in runs], solver_dual=duals, closed=closed,
                   seconds=sum(r.seconds for r in runs), variables=m.num_vars, binaries=m.num_integer,
                   rows=len(m.rows))
        if any(r.message for r in runs):
            rec["messages"] = [r.message for r in runs if r.message]
        if lower > state["best"] or (state["argmax"] is None and lower >= state["best"] and X is not None):
            state["best"] = max(state["best"], lower)
            state["argmax"] = {"entry": e, "sign": sign, "X": X}
        finish(j, rec)

    own_store = store is not None and not isinstance(store, ResultStore)
    db = ResultStore(store) if own_store else store
    try:
        first = True
        while True:
            left = None if total_time is None else total_time - (time.perf_counter() - t_start)
            todo = []
            for j, (cheap, _, _, _) in enumerate(jobs):
                if records[j] is not None:
                    continue
                if (prune and cheap <= state["best"]) or cheap <= 0:
                    finish(j, {**new_record(j), "status": "skipped", "lower": -math.inf, "upper": cheap,
                               "seconds": 0.0})
                elif left is not None and left <= 0:
                    finish(j, {**new_record(j), "status": "not_solved", "lower": -math.inf, "upper": cheap,
                               "seconds": 0.0})
                else:
                    todo.append(j)
            if not todo:
                break
            cap = len(todo)
            if first and prune:
                cap = FIRST_ROUND
            if left is not None and limit:
                cap = min(cap, 2 * workers * max(1, math.ceil(left / limit)))
            todo, first = todo[:cap], False
            built = {j: _build(f_ops, g_ops, pars, bounds, cones[jobs[j][1]], jobs[j][2], jobs[j][3], lo, hi)
                     for j in todo}
            models = [built[j][0] for j in todo for _ in solvers]
            got: dict[int, list] = {}

            def arrived(i: int, result) -> None:
                j = todo[i // len(solvers)]
                got.setdefault(j, [None] * len(solvers))[i % len(solvers)] = result
                if all(r is not None for r in got[j]):
                    solved(j, built[j][0], built[j][1], got[j])

            solve_models(models, [s for _ in todo for s in solvers], n_jobs=n_jobs, store=db, time_limit=limit,
                         seed=seed, total_time=left, progress=batch_progress, on_result=arrived)
    finally:
        if own_store:
            db.close()
    upper = max([r["upper"] for r in records] + [0.0])
    lower = max([r["lower"] for r in records] + [float(lower_bound), 0.0])
    return {"lower": lower, "upper": upper * (1 + 1e-12),
            "closed": upper - lower <= 1e-6 * (1 + abs(lower)),
            "argmax": state["argmax"], "records": records, "classes": len(classes),
            "milps": sum(r["status"] not in ("skipped", "not_solved") for r in records),
            "seconds": time.perf_counter() - t_start, "solver": solver, "output_shape": out_shape}
