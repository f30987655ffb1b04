"""How close is the pruned random network g to the target f on [0, 1]^{D x D x c0}? Three numbers.

- empirical: max over a data set of ||f(X) - g(X)||_max (absolute, and relative as in Figure 4 of
  the ICLR paper: per input, max error / max |f(X)|, then the max over inputs);
- adversarial: projected gradient ascent on X in [0, 1]^{...} maximising ||f(X) - g(X)||_max from
  several starts (random points and the worst data points): a lower bound on the supremum;
- certified: an upper bound valid for every X in the domain, from the effective kernels of the
  pruned blocks (Section 4.2, Eq. 2), the Tensor Convolution Inequality (Appendix A, Proposition 1,
  used per output channel as in its proof) and the layer-by-layer propagation of Appendix B, with
  the actual norms of the target kernels; ReLU and max-pooling are 1-Lipschitz in the max norm.

All computations in float64.
"""
from __future__ import annotations

import math
import time

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn


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


COORDINATE_DIMS = 256  # the attack's coordinate search runs on inputs of at most this many entries


def adversarial(f, g, shape, starts: torch.Tensor | None = None, restarts: int = 8, steps: int = 60,
                step_size: float = 0.25, seed: int = 0, lo: float = 0.0, hi: float = 1.0,
                time_limit: float | None = 30.0, targets: int = 32, vertices: int = 256,
                priority: torch.Tensor | None = None, batch: int = 512, max_rounds: int | None = None,
                greedy_rounds: int | None = None) -> dict:
    """A lower bound on sup_X ||f(X) - g(X)||_max over X in [lo, hi]^shape: the best error found by

    1. random vertices of the box (``vertices``), ``restarts`` uniform random points and ``starts`` (e.g. the
       worst data points), every output entry and sign scored;
    2. per output entry and sign (the ``targets`` most promising: by the error found so far and by
       ``priority``, e.g. the interval certificate's per-entry bounds, shape (2 O,)): projected ascent on
       s (f(X) - g(X))_e from that entry's best point, the overall best points, the data starts and
       ``restarts`` random points: sign-gradient steps with a decaying step (from ``step_size`` of the box),
       then Adam;
    3. greedy vertex search: from each target's best point rounded to a vertex and (inputs of at most
       ``COORDINATE_DIMS`` entries) its 8 best random vertices; on larger inputs for the 16 best targets only, the best single coordinate flip (all of them on small inputs, else the most promising by
       the gradient) until none helps (at most ``greedy_rounds`` flips, default ``4 * steps``, ``steps`` on larger
       inputs);
    4. coordinate search (inputs of at most ``COORDINATE_DIMS`` entries): from the 8 best points, the best
       single-coordinate move on a grid of 21 values, refined twice around the best value (maxima at kinks
       inside the box);

    then rounds 2-4 again from fresh random points (seed + round) while ``time_limit`` seconds last
    (``max_rounds``: at most that many rounds). Every point is evaluated in float64, so the result is an
    attained error."""
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

    def greedy(V, colsV):
        rounds = 0
        cur = record(V, colsV)
        active = torch.ones(len(V), dtype=torch.bool)
        while active.any() and not expired() and rounds < min(4 * dims, greedy_rounds):
            rounds += 1
            idx = active.nonzero()[:, 0]
            k = min(dims, max(4, (256 if large else 8192) // len(idx)))
            if k < dims:  # rank the flips by their first-order gain
                Xa = V[idx].clone().requires_grad_(True)
                v = _signed_diff(f, g, Xa)[torch.arange(len(idx)), colsV[idx]]
                (grad,) = torch.autograd.grad(v.sum(), Xa)
                gain = (grad * torch.where(Xa.detach() > (lo + hi) / 2, -width, width)).flatten(1)
                cand = gain.topk(k, 1).indices  # (A, k)
            else:  # every single flip
                cand = torch.arange(dims).unsqueeze(0).expand(len(idx), dims)
            Xc = V[idx].flatten(1).unsqueeze(1).repeat(1, k, 1)
            ar, kr = torch.arange(len(idx)).unsqueeze(1), torch.arange(k).unsqueeze(0)
            Xc[ar, kr, cand] = lo + hi - Xc[ar, kr, cand]
            Xc = Xc.view(len(idx) * k, *shape)
            vc = record(Xc, colsV[idx].repeat_interleave(k)).view(len(idx), k)
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
        while not expired() and moves < min(4 * dims, steps):
            moves += 1
            improved = False
            span = width
            center = None
            for _ in range(3):  # a grid of 21 values, then twice 21 around the best one
                if center is None:
                    grid = torch.linspace(lo, hi, 21, dtype=torch.float64).repeat(dims, 1)
                else:
                    grid = (center.unsqueeze(1) + torch.linspace(-span, span, 21, dtype=torch.float64)).clamp(lo, hi)
                Xc = x.unsqueeze(0).repeat(dims * 21, 1)
                ar = torch.arange(dims * 21)
                Xc[ar, ar // 21] = grid.reshape(-1)
                v = record(Xc.view(-1, *shape), torch.full((len(Xc),), c))
                j = int(v.argmax())
                center = grid[:, v.view(dims, 21).argmax(1)].diagonal() if center is None else \
                    grid[torch.arange(dims), v.view(dims, 21).argmax(1)]
                span /= 20
                if float(v[j]) > cur_c * (1 + 1e-12) + 1e-15:
                    x, cur_c, improved = Xc[j].clone(), float(v[j]), True
            if not improved:
                break
        return moves

    info = {"vertices": vertices, "targets": len(order), "rounds": 0, "greedy": 0, "coordinate_moves": 0}
    rnd = 0
    while not expired() and (max_rounds is None or rnd < max_rounds):
        g_r = torch.Generator().manual_seed(seed * 1_000_003 + rnd + 1)
        per = max(1, batch // (3 + len(data_starts) + restarts))
        for ch in range(0, len(order), per):
            if expired():
                break
            cols = cols_t[ch:ch + per]
            top = best_X[cols] if rnd == 0 else lo + width * torch.rand((len(cols), *shape), generator=g_r,
                                                                          dtype=torch.float64)
            X0 = [top, best_X[best_val.argmax()].expand(len(cols), *shape)]
            X0 += [d.expand(len(cols), *shape) for d in data_starts]
            X0 += [lo + width * torch.rand((len(cols), *shape), generator=g_r, dtype=torch.float64)
                   for _ in range(restarts)]
            ascent(cols.repeat(len(X0)), torch.cat(X0))
        if expired():
            break
        greedy_cols = cols_t[best_val[cols_t].argsort(descending=True)[:16]] if large else cols_t
        starts_v = [torch.where(best_X[greedy_cols] > (lo + hi) / 2, hi, lo).double()]
        if not large and rnd == 0 and vertices:  # and each target's best random vertices
            top_v = S[:vertices][:, greedy_cols].topk(min(vertices, 8), 0).indices
            starts_v += [P[top_v[i]] for i in range(len(top_v))]
        elif not large:
            starts_v += [lo + width * torch.randint(0, 2, (len(greedy_cols), *shape), generator=g_r).double()
                         for _ in range(8)]
        V = torch.cat(starts_v)
        V, _ = greedy(V, greedy_cols.repeat(len(starts_v)))
        info["greedy"] += 1
        for c in best_val[cols_t].argsort(descending=True)[:8 if dims <= COORDINATE_DIMS else 0].tolist():
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

    ``layers``: the target's layers (Conv2d / ReLU / MaxPool2d, as accepted by a construction);
    ``effective``: per conv, the (L, c) that g computes in its place, in the target's units (for the
    ICLR construction the block products of Section 4.2, Eq. 2, times the scaling factors).

    Layer by layer (Appendix B): e = bound on ||x - x~|| (target vs pruned activations, e = 0 at
    the input), B = bound on ||x|| of the target, Bt = bound on ||x~||. For a conv (K, b) replaced by
    (L, c):
        ||K*x + b - (L*x~ + c)|| <= max_l ||K_l||_1 e + max_l (||K_l - L_l||_1 Bt + |b_l - c_l|)
    (Proposition 1 per output channel), then B' = max_l(||K_l||_1 B + |b_l|),
    Bt' = min(max_l(||L_l||_1 Bt + |c_l|), B' + e'). ReLU / max-pool: 1-Lipschitz, e, B, Bt unchanged.
    Also returns the theorem's quantities: per layer ||K||_1 and the entrywise max |K - L|."""
    eff = iter(effective)
    e, B, Bt = 0.0, float(input_bound), float(input_bound)
    per_layer = []
    for i, m in enumerate(layers):
        if not isinstance(m, nn.Conv2d):
            continue
        K = m.weight.detach().double()
        b = m.bias.detach().double() if m.bias is not None else torch.zeros(K.shape[0], dtype=torch.float64)
        L, c = next(eff)
        L = L.double()
        c = c.double() if c is not None else torch.zeros_like(b)
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


# ----------------------------------------------------------------------------- layer-wise interval certificate
def network_ops(net: nn.Module) -> list[tuple]:
    """The layers of a target-shaped network as plain float64 operations:
    ``("conv", W, Wneg, b, stride, padding)`` (``Wneg`` None: the plain conv W*x + b; otherwise
    W*relu(x) + Wneg*relu(-x) + b, a :class:`models.structured_cnn.SignSplitConv2d`), ``("relu",)``,
    ``("maxpool", kernel, stride, padding)``. Anything else (or a MaxPool2d with dilation / ceil_mode,
    a Conv2d with groups / dilation / another padding mode) is refused with a ValueError naming it."""
    from models.structured_cnn import SignSplitConv2d

    def pair(v):
        return tuple(int(a) for a in v) if isinstance(v, (list, tuple)) else (int(v), int(v))

    mods = list(net) if isinstance(net, nn.Sequential) else None
    if mods is None:
        raise ValueError(f"network: expected an nn.Sequential, got {type(net).__name__}")
    ops = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or pair(m.dilation) != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise ValueError(f"layer {i}: Conv2d with groups/dilation/padding_mode/string padding is not handled")
            b = m.bias.detach().double() if m.bias is not None else torch.zeros(m.out_channels, dtype=torch.float64)
            ops.append(("conv", m.weight.detach().double(), None, b, pair(m.stride), pair(m.padding)))
        elif isinstance(m, SignSplitConv2d):
            Wp = m.weight_pos.detach().double()
            Wn = None if m.weight_neg is None else m.weight_neg.detach().double()
            b = m.bias.detach().double() if m.bias is not None else torch.zeros(Wp.shape[0], dtype=torch.float64)
            if Wn is None:  # conv(relu(x), W+) + b
                Wn = torch.zeros_like(Wp)
            ops.append(("conv", Wp, Wn, b, pair(m.stride), pair(m.padding)))
        elif isinstance(m, nn.ReLU):
            ops.append(("relu",))
        elif isinstance(m, nn.MaxPool2d):
            if pair(m.dilation) != (1, 1) or m.ceil_mode or m.return_indices:
                raise ValueError(f"layer {i}: MaxPool2d with dilation / ceil_mode / return_indices is not handled")
            k = pair(m.kernel_size)
            ops.append(("maxpool", k, pair(m.stride if m.stride is not None else k), pair(m.padding)))
        else:
            raise ValueError(f"layer {i}: {type(m).__name__} is not handled (Conv2d, ReLU, MaxPool2d only)")
    return ops


_REL = 1e-11  # float64 widening of every propagated bound, relative to the magnitude of its summed terms


def _conv_box(op, lo, hi):
    """Interval bounds of a conv op on the box [lo, hi] (N x C x H x W), and the magnitude of its terms."""
    _, W, Wn, b, s, p = op
    conv = lambda x, w: F.conv2d(x, w, None, s, p)  # noqa: E731
    if Wn is None:
        Wp_, Wm_ = W.clamp(min=0), W.clamp(max=0)
        up = conv(hi, Wp_) + conv(lo, Wm_) + b.view(1, -1, 1, 1)
        dn = conv(lo, Wp_) + conv(hi, Wm_) + b.view(1, -1, 1, 1)
        mag = conv(torch.maximum(lo.abs(), hi.abs()), W.abs()) + b.abs().view(1, -1, 1, 1)
    else:
        pl, ph = lo.clamp(min=0), hi.clamp(min=0)  # relu(x)
        ql, qh = (-hi).clamp(min=0), (-lo).clamp(min=0)  # relu(-x)
        bb = b.view(1, -1, 1, 1)
        up = conv(ph, W.clamp(min=0)) + conv(pl, W.clamp(max=0)) + conv(qh, Wn.clamp(min=0)) + conv(ql, Wn.clamp(max=0)) + bb
        dn = conv(pl, W.clamp(min=0)) + conv(ph, W.clamp(max=0)) + conv(ql, Wn.clamp(min=0)) + conv(qh, Wn.clamp(max=0)) + bb
        mag = conv(ph, W.abs()) + conv(qh, Wn.abs()) + b.abs().view(1, -1, 1, 1)
    tol = _REL * mag + 1e-300
    return dn - tol, up + tol, mag


def _diff_conv(fop, gop, lx, ux, ly, uy, ld, ud, chunk: int = 2 ** 23):
    """Bounds on (K*x + b) - (g's conv of y) per output entry, given entrywise x in [lx, ux], y in [ly, uy],
    x - y in [ld, ud]: for every product term k x_j - l(y_j) the exact max / min over the polygon
    {x_j in [lx, ux], y_j in [ly, uy], x_j - y_j in [ld, ud]} (at one of its vertices, or at y = 0 where
    the split conv bends), summed. Exact for the interval relaxation, hence never looser than
    ||K - L||_1 times a worst case."""
    _, K, _, b, s, p = fop
    _, L, Ln, c, s2, p2 = gop
    kh, kw = K.shape[2:]
    out_h = (lx.shape[2] + 2 * p[0] - kh) // s[0] + 1
    out_w = (lx.shape[3] + 2 * p[1] - kw) // s[1] + 1
    unf = lambda t: F.unfold(t, (kh, kw), padding=p, stride=s)[0]  # noqa: E731  (J, P)
    a, bx, cy, dy, e, f = (unf(t) for t in (lx, ux, ly, uy, ld, ud))
    z = torch.zeros_like(a)
    xs = [a, a, bx, bx, a, a, bx, bx, cy + e, cy + f, dy + e, dy + f, a, bx, e, f]
    ys = [cy, dy, cy, dy, a - e, a - f, bx - e, bx - f, cy, cy, dy, dy, z, z, z, z]
    X, Y = torch.stack(xs), torch.stack(ys)  # (V, J, P)
    scale = 1e-12 * (1 + X.abs() + Y.abs())
    ok = ((X >= a - scale) & (X <= bx + scale) & (Y >= cy - scale) & (Y <= dy + scale) & (X - Y >= e - scale)
          & (X - Y <= f + scale))
    corners = torch.zeros(len(xs), dtype=torch.bool)
    corners[:4] = True
    ok = ok | (~ok.any(0, keepdim=True) & corners.view(-1, 1, 1))  # empty by rounding: the box's corners (looser)
    O = K.shape[0]
    Kf, Lf = K.reshape(O, -1), L.reshape(O, -1)
    Lnf = None if Ln is None else Ln.reshape(O, -1)
    Yp, Ym = Y.clamp(min=0), (-Y).clamp(min=0)
    per = max(1, chunk // max(1, X.numel()))
    hi_out, lo_out = [], []
    for o0 in range(0, O, per):
        k = Kf[o0:o0 + per].view(-1, 1, Kf.shape[1], 1)
        l = Lf[o0:o0 + per].view(-1, 1, Kf.shape[1], 1)
        if Lnf is None:
            val = k * X.unsqueeze(0) - l * Y.unsqueeze(0)
        else:
            ln = Lnf[o0:o0 + per].view(-1, 1, Kf.shape[1], 1)
            val = k * X.unsqueeze(0) - l * Yp.unsqueeze(0) - ln * Ym.unsqueeze(0)
        m = ok.unsqueeze(0)
        hi_out.append(torch.where(m, val, -torch.inf).amax(1).sum(1))
        lo_out.append(torch.where(m, val, torch.inf).amin(1).sum(1))
    db = (b - c).view(-1, 1)
    up = (torch.cat(hi_out) + db).view(1, O, out_h, out_w)
    dn = (torch.cat(lo_out) + db).view(1, O, out_h, out_w)
    return dn, up


def interval_bounds(f_ops, g_ops, shape, lo: float = 0.0, hi: float = 1.0) -> list[dict]:
    """Layer by layer, entrywise bounds on the activations x of f, y of g and on x - y, for every input in
    the box [lo, hi]^shape (both networks fed the same input). Entry k of the result holds the bounds
    after layer k-1 (entry 0: the input box), as tensors of shape 1 x C x H x W:
    ``lx, ux`` (f), ``ly, uy`` (g), ``ld, ud`` (f - g).

    Conv: interval arithmetic for x and y (IBP); for x - y the exact interval-relaxation bound of
    :func:`_diff_conv` (it uses the signs of the inputs: after a ReLU or a pooling of ReLUs every x, y
    lies in [0, u], so a term (k - l) y is bounded by max(k - l, 0) u, not |k - l| u). ReLU: monotone
    and 1-Lipschitz, relu(x) - relu(y) lies in [min(d, 0), max(d, 0)] for d = x - y, and in
    [relu(lx) - relu(uy), relu(ux) - relu(ly)]. Max-pool: monotone, and
    min_i d_i <= max_i x_i - max_i y_i <= max_i d_i. Every bound is widened by 1e-11 of the magnitude of
    its summed terms (float64 rounding)."""
    if len(f_ops) != len(g_ops) or any(a[0] != b[0] for a, b in zip(f_ops, g_ops)):
        raise ValueError("interval_bounds: f and g must have the same layers")
    box = torch.full((1, *shape), float(lo), dtype=torch.float64), torch.full((1, *shape), float(hi), dtype=torch.float64)
    lx, ux = box
    ly, uy = lx.clone(), ux.clone()
    ld, ud = torch.zeros_like(lx), torch.zeros_like(lx)
    out = [dict(lx=lx, ux=ux, ly=ly, uy=uy, ld=ld, ud=ud)]
    for fop, gop in zip(f_ops, g_ops):
        if fop[0] == "conv":
            if fop[2] is not None:
                raise ValueError("interval_bounds: the target's convs must be plain Conv2d")
            nlx, nux, magf = _conv_box(fop, lx, ux)
            nly, nuy, magg = _conv_box(gop, ly, uy)
            nld, nud = _diff_conv(fop, gop, lx, ux, ly, uy, ld, ud)
            tol = _REL * (magf + magg) + 1e-300
            nld, nud = nld - tol, nud + tol
        elif fop[0] == "relu":
            nlx, nux, nly, nuy = lx.clamp(min=0), ux.clamp(min=0), ly.clamp(min=0), uy.clamp(min=0)
            nld = torch.maximum(ld.clamp(max=0), nlx - nuy)
            nud = torch.minimum(ud.clamp(min=0), nux - nly)
            both = (lx >= 0) & (ly >= 0)  # both active: the difference passes unchanged
            nld, nud = torch.where(both, torch.maximum(ld, nld), nld), torch.where(both, torch.minimum(ud, nud), nud)
        else:
            _, k, s, p = fop
            mp = lambda t: F.max_pool2d(t, k, s, p)  # noqa: E731
            nlx, nux, nly, nuy = mp(lx), mp(ux), mp(ly), mp(uy)
            nld, nud = -mp(-ld), mp(ud)
        # intersections: x - y lies in [lx - uy, ux - ly], y in [lx - ud, ux - ld]
        nld, nud = torch.maximum(nld, nlx - nuy), torch.minimum(nud, nux - nly)
        nly, nuy = torch.maximum(nly, nlx - nud), torch.minimum(nuy, nux - nld)
        lx, ux, ly, uy, ld, ud = nlx, nux, nly, nuy, nld, nud
        out.append(dict(lx=lx, ux=ux, ly=ly, uy=uy, ld=ld, ud=ud))
    return out


def certified_intervals(target: nn.Module, effective: nn.Module, shape, lo: float = 0.0, hi: float = 1.0) -> dict:
    """Upper bound on sup ||f(X) - g(X)||_max over X in [lo, hi]^shape from :func:`interval_bounds`, with f
    = ``target`` and g = ``effective`` (a target-shaped network computing what the pruned network computes
    on that box, e.g. ``Construction.effective()``). Returns ``abs`` and the per-output-entry bound
    ``per_output`` (a tensor C x H x W of max(ud, -ld))."""
    b = interval_bounds(network_ops(target), network_ops(effective), tuple(shape), lo, hi)
    per = torch.maximum(b[-1]["ud"], -b[-1]["ld"])[0]
    # the pruned network g equals ``effective`` up to the float64 rounding of two forward passes: widen by
    # 1e-9 of the output magnitude bound
    mag = max(float(b[-1][k].abs().max()) for k in ("lx", "ux", "ly", "uy"))
    per = per + 1e-9 * mag
    return {"abs": float(per.max()) * (1 + 1e-9) + 1e-300, "per_output": per, "method": "interval",
            "output_bound": mag}


def verify(target: nn.Module, pruned: nn.Module, data: torch.Tensor | None = None, restarts: int = 8,
           steps: int = 60, seed: int = 0, input_shape=None, evaluate_with: nn.Module | None = None,
           certificate: dict | None = None, effective: nn.Module | None = None, domain=(0.0, 1.0),
           attack_time: float | None = 30.0, attack_rounds: int | None = 1, exact: bool = False, solver: str = "highs",
           exact_time_limit: float | None = 60.0, exact_total_time: float | None = 600.0, progress=None) -> dict:
    """The four numbers for target f = ``target`` and g = ``pruned`` (both evaluated in float64), on the
    input box ``domain`` = (lo, hi):

    - empirical (``data``), adversarial (:func:`adversarial`, ``attack_time`` seconds and ``attack_rounds``
      rounds at most; None: no limit of that kind);
    - certified: the construction's ``certificate`` (Appendix B, :func:`certified`) and, with ``effective``
      (a target-shaped network computing what ``pruned`` computes on the box, ``Construction.effective()``),
      the interval certificate :func:`certified_intervals`; the summary's ``certified_abs`` is the smaller;
    - exact (``exact=True``, needs ``effective``): the sup by MILP, :func:`pipelines.exact_sup.exact_sup`
      (``exact_lower`` attained, ``exact_upper`` a bound; equal where the MILPs closed).

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
    interval = None
    if effective is not None:
        eff = _f64(effective)
        interval = certified_intervals(f, eff, shape, lo, hi)
    adv = adversarial(f, g, shape, starts=worst, restarts=restarts, steps=steps, seed=seed, lo=lo, hi=hi,
                      time_limit=attack_time, max_rounds=attack_rounds, priority=None if interval is None else
                      torch.cat([interval["per_output"].reshape(-1)] * 2))
    cands = [c["abs"] for c in (certificate, interval) if c is not None]
    cert_abs = min(cands) if cands else math.nan
    ex = None
    if exact:
        if effective is None:
            raise ValueError("verify: exact=True needs the effective network (Construction.effective())")
        from .exact_sup import exact_sup

        ex = exact_sup(target, effective, shape, lo, hi, solver=solver, time_limit=exact_time_limit,
                       total_time=exact_total_time, lower_bound=adv["abs"], seed=seed, progress=progress)
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
