"""How close is the pruned random network g to the target f on the input box? Four numbers, ordered.

- empirical: max over a data set of ||f(X) - g(X)||_max (absolute, and relative as in Figure 4 of
  the ICLR paper: per input, max error / max |f(X)|, then the max over inputs);
- adversarial (:func:`adversarial`): an attained error, from random vertices, per-output-entry signed
  ascent (sign steps, then Adam), greedy vertex search and coordinate search; a lower bound on the sup;
- exact (:mod:`pipelines.exact_sup`, optional): the sup by MILP, a bound pair where a MILP does not close;
- certified: upper bounds valid for every X in the box: (a) :func:`certified`, from the effective kernels
  of the pruned blocks (Section 4.2, Eq. 2), the Tensor Convolution Inequality (Appendix A,
  Proposition 1, used per output channel as in its proof) and the layer-by-layer propagation of
  Appendix B, with the actual norms of the target kernels (ReLU and max-pooling are 1-Lipschitz in the
  max norm); (b) the interval certificate of :mod:`pipelines.bounds` (re-exported here), which uses
  the signs and ranges of every layer's inputs. :func:`verify` reports the smaller.

All computations in float64.
"""
from __future__ import annotations

import math
import time

import numpy as np

import torch
from torch import nn

from .bounds import certified_intervals, interval_bounds, network_ops  # noqa: F401  (re-exported)


def _f64(module: nn.Module) -> nn.Module:
    """A float64 copy in eval mode (pruned networks are rebuilt from their state_dict: after a forward
    pass their masked ``weight`` attributes are non-leaf tensors that deepcopy refuses)."""
    import copy

    from models.random_cnn import PrunedRandomCNN

    if isinstance(module, PrunedRandomCNN):
        clone = PrunedRandomCNN(module.layers_spec, module.n, module.scales, module.construction).double()
        clone.load_state_dict({k: v.detach().double() for k, v in module.state_dict().items()})
        return clone.eval()
    return copy.deepcopy(module).double().eval()


def max_abs_errors(f: nn.Module, g: nn.Module, X: torch.Tensor, batch_size: int = 200):
    """Per input: max |f(X) - g(X)| and max |f(X)| (float64)."""
    err, top = [], []
    with torch.no_grad():
        for s in range(0, len(X), batch_size):
            x = X[s:s + batch_size].double()
            fx, gx = f(x).flatten(1), g(x).flatten(1)
            err.append((fx - gx).abs().amax(1))
            top.append(fx.abs().amax(1))
    return torch.cat(err), torch.cat(top)


def empirical(f, g, X) -> dict:
    err, top = max_abs_errors(f, g, X)
    rel = torch.where(top > 0, err / top.clamp_min(1e-300), torch.where(err > 0, torch.inf, torch.zeros(())))
    return {"abs": float(err.max()), "rel_per_image": float(rel.max()), "rel_global": float(err.max() / top.max()),
            "max_abs_f": float(top.max()), "worst": int(err.argmax())}


def _signed_diff(f, g, X):
    """(N, 2*O): [f - g, g - f] per output entry, float64."""
    d = (f(X) - g(X)).flatten(1)
    return torch.cat([d, -d], 1)


class _PoolBranch(nn.Module):
    """A max-pool forced to one branch: in every window the entry at offset (di, dj) (clamped into the input
    where the window overhangs the padding), instead of the window's max."""

    def __init__(self, pool: nn.MaxPool2d, q: int):
        super().__init__()
        pair = lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v, v)  # noqa: E731
        self.k, self.s, self.p = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size), pair(pool.padding)
        self.d = (q // self.k[1] % self.k[0], q % self.k[1])

    def forward(self, x):
        h, w = x.shape[-2:]
        oh = (h + 2 * self.p[0] - self.k[0]) // self.s[0] + 1
        ow = (w + 2 * self.p[1] - self.k[1]) // self.s[1] + 1
        r = (torch.arange(oh) * self.s[0] - self.p[0] + self.d[0]).clamp(0, h - 1)
        c = (torch.arange(ow) * self.s[1] - self.p[1] + self.d[1]).clamp(0, w - 1)
        return x[..., r, :][..., c]


def pool_branches(net: nn.Module) -> list[nn.Module]:
    """The branch-forced copies of a Sequential network with max-pools: copy q has every MaxPool2d replaced
    by :class:`_PoolBranch` at offset q (q over the largest pooling window); none without a max-pool.

    Why: a max-pool makes f a max over branches, and a local search on a max climbs the branch that
    currently dominates; the maximiser of the error may lie in another branch's basin. For the last pool
    this is an exact decomposition: s (f - g) = max_q (s-side forced to branch q, minus the other side's
    output), so searching each branch's objective and then the true one explores every basin."""
    if not isinstance(net, nn.Sequential):
        return []
    pools = [m for m in net if isinstance(m, nn.MaxPool2d)]
    if not pools:
        return []
    area = max(int(np.prod(_PoolBranch(m, 0).k)) for m in pools)
    return [nn.Sequential(*[_PoolBranch(m, q) if isinstance(m, nn.MaxPool2d) else m for m in net])
            for q in range(area)]


COORDINATE_DIMS = 256  # the attack's coordinate search runs on inputs of at most this many entries


def adversarial(f, g, shape, starts: torch.Tensor | None = None, restarts: int = 8, steps: int = 60,
                step_size: float = 0.25, seed: int = 0, lo: float = 0.0, hi: float = 1.0,
                time_limit: float | None = 30.0, targets: int = 32, vertices: int = 256,
                priority: torch.Tensor | None = None, batch: int = 512, max_rounds: int | None = None,
                greedy_rounds: int | None = None) -> dict:
    """A lower bound on sup_X ||f(X) - g(X)||_max over X in [lo, hi]^shape: the best error found by

    1. random vertices of the box (``vertices``), ``restarts`` uniform random points and ``starts`` (e.g. the
       worst data points), every output entry and sign scored; then sign-gradient ascent on the max over
       all entries and signs from the random points and ``starts`` (``steps`` steps);
    2. per output entry and sign (the ``targets`` most promising: by the error found so far and by
       ``priority``, e.g. the interval certificate's per-entry bounds, shape (2 O,)): projected ascent on
       s (f(X) - g(X))_e from that entry's best point, the overall best point, the data starts and
       ``restarts`` random points (on inputs of more than ``COORDINATE_DIMS`` entries: the first data start
       and one random point): sign-gradient steps with a decaying step (from ``step_size`` of the box),
       then Adam;
    3. greedy vertex search: from each target's best point rounded to a vertex and (inputs of at most
       ``COORDINATE_DIMS`` entries) its ``restarts // 2`` best random vertices and ``restarts`` fresh ones
       (later rounds: 2 ``restarts`` random kicks of the rounded best, 10 % of its coordinates flipped, and
       ``restarts`` fresh vertices), for the 16 best targets (on larger inputs from the rounded best only): the best single coordinate flip (all of them on small inputs, else the most promising by
       the gradient) until none helps (at most ``greedy_rounds`` flips, default ``4 * steps``, ``steps`` on larger
       inputs);
    3b. pooling branches (networks with max-pools, inputs of at most ``COORDINATE_DIMS`` entries): for each branch
       q of :func:`pool_branches`, greedy vertex search on the branch-forced objective from the 4 best targets'
       rounded best points and ``restarts // 2`` random vertices each, then on the true objective from where it
       stopped (a local search on a max-pool stays in the branch that dominates where it starts; the
       maximiser of the two-channel-padded n = 4 row of the verification experiment is 18 flips away, in
       another branch);
    4. coordinate search (inputs of at most ``COORDINATE_DIMS`` entries): from the min(8, ``restarts``) best
       points, the best
       single-coordinate move on a grid of 21 values per coordinate, refined twice around the best value
       (maxima at kinks inside the box), at most ``steps`` moves;

    then rounds 2-4 again from fresh random points (seed + round) while ``time_limit`` seconds last
    (``max_rounds``: at most that many rounds). Every point is evaluated in float64, so the result is an
    attained error. On inputs of at most ``COORDINATE_DIMS`` entries the attack runs
    on one torch thread (restored after): its tensors are small, and with two threads on two shared, loaded cores
    one round took 37-46 s instead of 5-6 s (two-channel-padded, n = 4, load 7-9), so its time limit bought a
    tenth of the work."""
    threads = torch.get_num_threads()
    if int(np.prod(shape)) <= COORDINATE_DIMS:
        torch.set_num_threads(1)
    try:
        return _adversarial(f, g, shape, starts, restarts, steps, step_size, seed, lo, hi, time_limit, targets, vertices,
                            priority, batch, max_rounds, greedy_rounds)
    finally:
        torch.set_num_threads(threads)


def _adversarial(f, g, shape, starts: torch.Tensor | None = None, restarts: int = 8, steps: int = 60,
                step_size: float = 0.25, seed: int = 0, lo: float = 0.0, hi: float = 1.0,
                time_limit: float | None = 30.0, targets: int = 32, vertices: int = 256,
                priority: torch.Tensor | None = None, batch: int = 512, max_rounds: int | None = None,
                greedy_rounds: int | None = None) -> dict:
    """:func:`adversarial` on the current torch threads."""
    t0 = time.perf_counter()
    expired = lambda: time_limit is not None and time.perf_counter() - t0 > time_limit  # noqa: E731
    width = hi - lo
    dims = int(np.prod(shape))
    large = dims > COORDINATE_DIMS
    if greedy_rounds is None:
        greedy_rounds = steps if large else 4 * steps
    evals = 0

    def score(X):
        nonlocal evals
        with torch.no_grad():
            out = torch.cat([_signed_diff(f, g, X[s:s + batch]) for s in range(0, len(X), batch)])
        evals += len(X)
        return out

    gen = torch.Generator().manual_seed(seed)
    pts = [lo + width * torch.randint(0, 2, (vertices, *shape), generator=gen).double(),
           lo + width * torch.rand((restarts, *shape), generator=gen, dtype=torch.float64)]
    if starts is not None and len(starts):
        pts.append(starts.double().clamp(lo, hi))
    P = torch.cat(pts)
    S = score(P)  # (N, 2 O)
    best_val, best_idx = S.max(0)
    best_X = P[best_idx].clone()  # (2 O, ...): per output entry and sign
    n_out = S.shape[1]

    def record(X, cols):
        """Score points X for their target columns cols; keep each target's best."""
        nonlocal evals
        with torch.no_grad():
            v = torch.cat([_signed_diff(f, g, X[s:s + batch])[torch.arange(len(X[s:s + batch])), cols[s:s + batch]]
                           for s in range(0, len(X), batch)])
        evals += len(X)
        for c in torch.unique(cols):
            sel = (cols == c).nonzero()[:, 0]
            j = sel[v[sel].argmax()]
            if v[j] > best_val[c]:
                best_val[c] = v[j]
                best_X[c] = X[j].detach().clone()
        return v

    order = list(best_val.argsort(descending=True)[:targets].tolist())
    if priority is not None:  # and as many again by the a-priori bound
        for c in priority.reshape(-1).argsort(descending=True).tolist():
            if len(order) >= 2 * targets:
                break
            if c not in order:
                order.append(c)
    cols_t = torch.tensor(order)
    data_starts = [] if starts is None else [starts[i].double().clamp(lo, hi) for i in range(min(len(starts), 2))]

    def ascent(cols, X0):
        nonlocal evals
        X = X0.clone().requires_grad_(True)
        half = max(1, steps // 2)
        opt = torch.optim.Adam([X], lr=0.02 * width)
        for it in range(2 * half):
            v = _signed_diff(f, g, X)[torch.arange(len(X)), cols]
            (grad,) = torch.autograd.grad(v.sum(), X)
            with torch.no_grad():
                if it < half:  # sign steps, decaying
                    X += step_size * width * (0.9 ** it) * grad.sign()
                else:
                    X.grad = -grad
                    opt.step()
                X.clamp_(lo, hi)
            evals += len(X)
            if it % 5 == 4 or it == 2 * half - 1:
                record(X.detach(), cols)
            if expired():
                break

    def surrogate_value(diff):
        """Values of the columns cols of ``diff`` at X (no record: a surrogate objective)."""
        def value(X, cols):
            nonlocal evals
            with torch.no_grad():
                v = torch.cat([diff(X[s:s + batch])[torch.arange(len(X[s:s + batch])), cols[s:s + batch]]
                               for s in range(0, len(X), batch)])
            evals += len(X)
            return v
        return value

    def greedy(V, colsV, diff=None):
        """Best-single-flip ascent from the vertices V on the columns colsV of ``diff`` (default: the true
        signed error, every point recorded)."""
        value = record if diff is None else surrogate_value(diff)
        diff = diff or (lambda X: _signed_diff(f, g, X))
        rounds = 0
        cur = value(V, colsV)
        active = torch.ones(len(V), dtype=torch.bool)
        while active.any() and not expired() and rounds < min(4 * dims, greedy_rounds):
            rounds += 1
            idx = active.nonzero()[:, 0]
            k = min(dims, max(4, (256 if large else 8192) // len(idx)))
            if k < dims:  # rank the flips by their first-order gain
                Xa = V[idx].clone().requires_grad_(True)
                v = diff(Xa)[torch.arange(len(idx)), colsV[idx]]
                (grad,) = torch.autograd.grad(v.sum(), Xa)
                gain = (grad * torch.where(Xa.detach() > (lo + hi) / 2, -width, width)).flatten(1)
                cand = gain.topk(k, 1).indices  # (A, k)
            else:  # every single flip
                cand = torch.arange(dims).unsqueeze(0).expand(len(idx), dims)
            Xc = V[idx].flatten(1).unsqueeze(1).repeat(1, k, 1)
            ar, kr = torch.arange(len(idx)).unsqueeze(1), torch.arange(k).unsqueeze(0)
            Xc[ar, kr, cand] = lo + hi - Xc[ar, kr, cand]
            Xc = Xc.view(len(idx) * k, *shape)
            vc = value(Xc, colsV[idx].repeat_interleave(k)).view(len(idx), k)
            bv, bj = vc.max(1)
            better = bv > cur[idx] * (1 + 1e-12) + 1e-15
            for a_, (i, ok) in enumerate(zip(idx.tolist(), better.tolist())):
                if ok:
                    V[i] = Xc[a_ * k + bj[a_]]
                    cur[i] = bv[a_]
                else:
                    active[i] = False
        return V, cur

    def coordinate(X, c):
        x, cur_c = X.reshape(-1).clone(), float(record(X.unsqueeze(0), torch.tensor([c]))[0])
        moves = 0
        base = torch.linspace(lo, hi, 21, dtype=torch.float64)
        ar = torch.arange(dims * 21)
        while not expired() and moves < min(4 * dims, steps):
            moves += 1
            Xc = x.unsqueeze(0).repeat(dims * 21, 1)  # every coordinate on a grid of 21 values
            Xc[ar, ar // 21] = base.repeat(dims)
            v = record(Xc.view(-1, *shape), torch.full((len(Xc),), c))
            j = int(v.argmax())
            best_x, best_v = Xc[j].clone(), float(v[j])
            i, span = j // 21, width / 20
            for _ in range(2):  # twice a grid of 21 around the best value of the best coordinate
                vals = (best_x[i] + torch.linspace(-span, span, 21, dtype=torch.float64)).clamp(lo, hi)
                Xr = best_x.unsqueeze(0).repeat(21, 1)
                Xr[:, i] = vals
                vr = record(Xr.view(-1, *shape), torch.full((21,), c))
                k = int(vr.argmax())
                if float(vr[k]) > best_v:
                    best_x, best_v = Xr[k].clone(), float(vr[k])
                span /= 20
            if best_v <= cur_c * (1 + 1e-12) + 1e-15:
                break
            x, cur_c = best_x, best_v
        return moves

    def ascent_global(X0):
        """Sign-gradient ascent on max over every output entry and sign (the attack before issue 15)."""
        nonlocal evals
        X = X0.clone().requires_grad_(True)
        for it in range(steps):
            v, col = _signed_diff(f, g, X).max(1)
            record(X.detach(), col)
            (grad,) = torch.autograd.grad(v.sum(), X)
            with torch.no_grad():
                X += 0.05 * width * (0.97 ** it) * grad.sign()
                X.clamp_(lo, hi)
            evals += len(X)
            if expired():
                return
        with torch.no_grad():
            v, col = _signed_diff(f, g, X).max(1)
        record(X.detach(), col)

    info = {"vertices": vertices, "targets": len(order), "rounds": 0, "greedy": 0, "branch_greedy": 0,
            "coordinate_moves": 0}
    f_br, g_br = pool_branches(f), pool_branches(g)
    branches = []  # per branch q: [(f forced to q) - g, (g forced to q) - f]; a side without it: its own output
    for q in range(max(len(f_br), len(g_br))):
        fq, gq = f_br[q] if q < len(f_br) else f, g_br[q] if q < len(g_br) else g
        branches.append(lambda X, fq=fq, gq=gq: torch.cat([(fq(X) - g(X)).flatten(1), (gq(X) - f(X)).flatten(1)], 1))
    g0 = [P[len(P) - restarts - (0 if starts is None else len(starts)):]]  # the random and data starts
    ascent_global(torch.cat(g0))
    n_rand = 1 if large else restarts
    data_starts = data_starts[:1] if large else data_starts
    rnd = 0
    while not expired() and (max_rounds is None or rnd < max_rounds):
        g_r = torch.Generator().manual_seed(seed * 1_000_003 + rnd + 1)
        per = max(1, batch // (3 + len(data_starts) + n_rand))
        for ch in range(0, len(order), per):
            if expired():
                break
            cols = cols_t[ch:ch + per]
            top = best_X[cols] if rnd == 0 else lo + width * torch.rand((len(cols), *shape), generator=g_r,
                                                                          dtype=torch.float64)
            X0 = [top, best_X[best_val.argmax()].expand(len(cols), *shape)]
            X0 += [d.expand(len(cols), *shape) for d in data_starts]
            X0 += [lo + width * torch.rand((len(cols), *shape), generator=g_r, dtype=torch.float64)
                   for _ in range(n_rand)]
            ascent(cols.repeat(len(X0)), torch.cat(X0))
        if expired():
            break
        greedy_cols = cols_t[best_val[cols_t].argsort(descending=True)[:16]]
        starts_v = [torch.where(best_X[greedy_cols] > (lo + hi) / 2, hi, lo).double()]
        if not large:
            if rnd == 0 and vertices:  # each target's best random vertices
                top_v = S[:vertices][:, greedy_cols].topk(min(vertices, max(1, restarts // 2)), 0).indices
                starts_v += [P[top_v[i]] for i in range(len(top_v))]
            else:  # kicks: the rounded best with each coordinate flipped with probability 0.1
                for _ in range(2 * restarts):
                    flip = torch.rand(starts_v[0].shape, generator=g_r) < 0.1
                    starts_v.append(torch.where(flip, lo + hi - starts_v[0], starts_v[0]))
            starts_v += [lo + width * torch.randint(0, 2, (len(greedy_cols), *shape), generator=g_r).double()
                         for _ in range(restarts)]
        V = torch.cat(starts_v)
        V, _ = greedy(V, greedy_cols.repeat(len(starts_v)))
        info["greedy"] += 1
        if branches and not large and not expired():  # every max-pool branch's basin, then the true objective
            bcols = greedy_cols[:4]
            for q in range(len(branches)):
                if expired():
                    break
                Vq = torch.cat([torch.where(best_X[bcols] > (lo + hi) / 2, hi, lo).double()]  # from the rounded best
                               + [lo + width * torch.randint(0, 2, (len(bcols), *shape), generator=g_r).double()
                                  for _ in range(max(1, restarts // 2))])
                Vq, _ = greedy(Vq, bcols.repeat(len(Vq) // len(bcols)), diff=branches[q])
                greedy(Vq, bcols.repeat(len(Vq) // len(bcols)))
            info["branch_greedy"] += 1
        for c in best_val[cols_t].argsort(descending=True)[:min(8, restarts) if not large else 0].tolist():
            if expired():
                break
            info["coordinate_moves"] += coordinate(best_X[cols_t[c]], int(cols_t[c]))
        rnd += 1
        info["rounds"] = rnd
    j = int(best_val.argmax())
    return {"abs": float(best_val.max().clamp_min(0)), "entry": j % (n_out // 2), "sign": 1 if j < n_out // 2 else -1,
            "X": best_X[j].clone(), "per_target": best_val.clone(), "restarts": int(restarts),
            "starts_from_data": 0 if starts is None else len(starts), "steps": steps, "evaluations": evals,
            "seconds": time.perf_counter() - t0, **info}


def _channel_l1(W: torch.Tensor) -> torch.Tensor:
    """Per output channel l: sum |W[l]| (PyTorch layout c1 x c0 x d x d)."""
    return W.abs().flatten(1).sum(1)


def certified(layers, effective, input_bound: float = 1.0) -> dict:
    """Upper bound on sup_X ||f(X) - g(X)||_max over X in [0, input_bound]^{...}.

    ``layers``: the target's layers (Conv2d / ReLU / MaxPool2d, and Flatten / Linear for constructions with
    dense layers, as accepted by a construction); a Linear is treated as a conv whose output channels are its
    rows (||W_j||_1 per row; the same inequality), Flatten is the identity in the max norm;
    ``effective``: per conv, the (L, c) that g computes in its place, in the target's units (for the
    ICLR construction the block products of Section 4.2, Eq. 2, times the scaling factors).

    Layer by layer (Appendix B): e = bound on ||x - x~|| (target vs pruned activations, e = 0 at
    the input), B = bound on ||x|| of the target, Bt = bound on ||x~||. For a conv (K, b) replaced by
    (L, c):
        ||K*x + b - (L*x~ + c)|| <= max_l ||K_l||_1 e + max_l (||K_l - L_l||_1 Bt + |b_l - c_l|)
    (Proposition 1 per output channel), then B' = max_l(||K_l||_1 B + |b_l|),
    Bt' = min(max_l(||L_l||_1 Bt + |c_l|), B' + e'). ReLU / max-pool: 1-Lipschitz, e, B, Bt unchanged.
    Also returns the theorem's quantities: per layer ||K||_1 and the entrywise max |K - L|. An ``effective``
    entry ``((L+, L-), c)`` is a sign-split layer (x -> L+ relu(x) + L- relu(-x) + c, e.g. a dense block with
    both halves): ||K_l - L_l||_1 becomes sum_i max(|K - L+|, |K + L-|)_{l,i} and ||L_l||_1 sum_i max(|L+|, |L-|)_{l,i}
    (reported max_entry_error: that of L+)."""
    eff = iter(effective)
    e, B, Bt = 0.0, float(input_bound), float(input_bound)
    per_layer = []
    for i, m in enumerate(layers):
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        K = m.weight.detach().double()
        b = m.bias.detach().double() if m.bias is not None else torch.zeros(K.shape[0], dtype=torch.float64)
        L, c = next(eff)
        c = c.double() if c is not None else torch.zeros_like(b)
        if isinstance(L, tuple):  # a sign-split layer x -> L+ x+ + L- x- + c (x+, x- disjoint per coordinate):
            Lp, Ln = L[0].double(), L[1].double()  # |K x - L+ x+ - L- x-| <= sum_i max(|K - L+|, |K + L-|)_i |x_i|
            L = Lp
            nK = _channel_l1(K)
            nD = torch.maximum((K - Lp).abs(), (K + Ln).abs()).flatten(1).sum(1)
            nL = torch.maximum(Lp.abs(), Ln.abs()).flatten(1).sum(1)
        else:
            L = L.double()
            nK, nD, nL = _channel_l1(K), _channel_l1(K - L), _channel_l1(L)
        db = (b - c).abs()
        e_new = float(nK.max()) * e + float((nD * Bt + db).max())
        B_new = float((nK * B + b.abs()).max())
        Bt_new = min(float((nL * Bt + c.abs()).max()), B_new + e_new)
        e, B, Bt = e_new, B_new, Bt_new
        per_layer.append({"layer": i, "error_bound": e, "target_l1_max": float(nK.max()), "target_l1_total":
                          float(K.abs().sum()), "max_entry_error": float((K - L).abs().max()),
                          "max_bias_error": float(db.max()) if db.numel() else 0.0})
    # float64 rounding of the sums above is ~1e-16 relative: widen by 1e-9 relative to stay an upper bound
    return {"abs": e * (1 + 1e-9) + 1e-300, "output_bound": B, "layers": per_layer}


def verify(target: nn.Module, pruned: nn.Module, data: torch.Tensor | None = None, restarts: int = 8,
           steps: int = 60, seed: int = 0, input_shape=None, evaluate_with: nn.Module | None = None,
           certificate: dict | None = None, effective: nn.Module | None = None, domain=(0.0, 1.0),
           attack_time: float | None = 3.0, attack_rounds: int | None = 1, exact: bool = False, solver: str = "highs",
           exact_time_limit: float | None = 60.0, exact_total_time: float | None = 600.0, progress=None,
           confirm_with: str | None = "scip", exact_n_jobs: int = 1, exact_store=None) -> dict:
    """The four numbers for target f = ``target`` and g = ``pruned`` (both evaluated in float64), on the
    input box ``domain`` = (lo, hi):

    - empirical (``data``), adversarial (:func:`adversarial`, ``attack_time`` seconds and ``attack_rounds``
      rounds at most; None: no limit of that kind);
    - certified: the construction's ``certificate`` (Appendix B, :func:`certified`) and, with ``effective``
      (a target-shaped network computing what ``pruned`` computes on the box, ``Construction.effective()``),
      the interval certificate :func:`certified_intervals`; the summary's ``certified_abs`` is the smaller;
    - exact (``exact=True``, needs ``effective``): the sup by MILP, :func:`pipelines.exact_sup.exact_sup`
      (``exact_lower`` attained, ``exact_upper`` a bound; equal where the MILPs closed), on ``exact_n_jobs``
      worker processes, solver Results kept in ``exact_store`` (a path or None).

    ``data``: inputs in the box (N x c0 x D x D); ``input_shape`` (c0, D, D) is needed without data.
    ``evaluate_with``: a module computing the same function as ``pruned`` to run the empirical and
    adversarial passes with (e.g. ``pruned.compact()``, much faster). Refuses a pair whose outputs have
    different shapes, and raises instead of reporting numbers out of order (a certificate below an
    attained error is a bug, never a result)."""
    lo, hi = float(domain[0]), float(domain[1])
    f, g = _f64(target), _f64(evaluate_with if evaluate_with is not None else pruned)
    for p in list(f.parameters()) + list(g.parameters()):
        p.requires_grad_(False)
    if data is not None:
        if data.min() < lo or data.max() > hi:
            raise ValueError(f"data: inputs must lie in the domain [{lo:g}, {hi:g}] (scale them first)")
        shape = tuple(data.shape[1:])
    else:
        if input_shape is None:
            raise ValueError("input_shape: give (c0, D, D) when no data set is given")
        shape = tuple(input_shape)
    with torch.no_grad():
        probe = torch.zeros((1, *shape), dtype=torch.float64)
        fs, gs = tuple(f(probe).shape), tuple(g(probe).shape)
        es = tuple(effective.double()(probe).shape) if effective is not None else fs
    if fs != gs or es != fs:
        raise ValueError(f"verify: target output shape {fs} differs from the pruned network's {gs if fs != gs else es} "
                         f"on inputs of shape {shape}; these networks do not compute comparable functions")
    if data is not None:
        emp = empirical(f, g, data)
        err, _ = max_abs_errors(f, g, data)
        worst = data[err.argsort(descending=True)[:4]]
    else:
        emp, worst = None, None
    interval, interval_note = None, ""
    if effective is not None:
        eff = _f64(effective)
        for p in eff.parameters():
            p.requires_grad_(False)
        try:
            interval = certified_intervals(f, eff, shape, lo, hi)
        except ValueError as exc:  # a layer the interval propagation does not carry (e.g. an AvgPool2d, a partial
            interval, interval_note = None, str(exc)  # Flatten): the Appendix B certificate alone stands
    # the attack runs on the effective network where there is one (same function, far fewer channels); its
    # best point is then evaluated on the pruned network itself, so the reported error is one g attains
    adv = adversarial(f, eff if effective is not None else g, shape, starts=worst, restarts=restarts, steps=steps,
                      seed=seed, lo=lo, hi=hi,
                      time_limit=attack_time, max_rounds=attack_rounds, priority=None if interval is None else
                      torch.cat([interval["per_output"].reshape(-1)] * 2))
    if effective is not None:
        with torch.no_grad():
            adv["abs"] = float((f(adv["X"].unsqueeze(0)) - g(adv["X"].unsqueeze(0))).abs().max())
    cands = [c["abs"] for c in (certificate, interval) if c is not None]
    cert_abs = min(cands) if cands else math.nan
    ex = None
    if exact:
        if effective is None:
            raise ValueError("verify: exact=True needs the effective network (Construction.effective())")
        from .exact_sup import exact_sup

        ex = exact_sup(target, effective, shape, lo, hi, solver=solver, time_limit=exact_time_limit,
                       total_time=exact_total_time, lower_bound=adv["abs"], seed=seed, progress=progress,
                       evaluate_with=g, confirm_with=confirm_with, n_jobs=exact_n_jobs, store=exact_store)
        ex["upper"] = min(ex["upper"], cert_abs) if cands else ex["upper"]
    out = {"empirical": emp, "adversarial": adv, "certified": certificate, "interval": interval, "exact": ex}
    top = emp["max_abs_f"] if emp else math.nan
    lower = max(adv["abs"], ex["lower"]) if ex else adv["abs"]
    out["summary"] = {"empirical_abs": emp["abs"] if emp else math.nan, "adversarial_abs": adv["abs"],
                      "certified_abs": cert_abs, "empirical_rel": emp["rel_per_image"] if emp else math.nan,
                      "adversarial_rel": adv["abs"] / top if emp else math.nan,
                      "certified_rel": cert_abs / top if emp else math.nan,
                      "certified_appendix_b": certificate["abs"] if certificate is not None else math.nan,
                      "certified_interval": interval["abs"] if interval is not None else math.nan,
                      "interval_unavailable": interval_note,
                      "exact_lower": ex["lower"] if ex else math.nan, "exact_upper": ex["upper"] if ex else math.nan,
                      "exact_closed": bool(ex["closed"]) if ex else False,
                      "exact_milps": ex["milps"] if ex else 0,
                      "ordered": bool((emp is None or emp["abs"] <= adv["abs"] * (1 + 1e-12)) and
                                      (not cands or lower <= cert_abs) and
                                      (ex is None or lower <= ex["upper"]))}
    if not out["summary"]["ordered"]:
        raise RuntimeError(f"verify: an upper bound (certified {cert_abs:.6e}, exact upper "
                           f"{out['summary']['exact_upper']:.6e}) is below an attained error (empirical "
                           f"{out['summary']['empirical_abs']:.6e}, adversarial {adv['abs']:.6e}, exact lower "
                           f"{out['summary']['exact_lower']:.6e}): a bug in a bound; refusing to report it")
    return out
