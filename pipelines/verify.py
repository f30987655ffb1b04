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


def adversarial(f, g, shape, starts: torch.Tensor | None = None, restarts: int = 8, steps: int = 60,
                step_size: float = 0.05, seed: int = 0) -> dict:
    """Projected (sign-)gradient ascent on ||f(X) - g(X)||_max over X in [0, 1]^shape. Starts from
    ``restarts`` uniform random points plus ``starts`` (e.g. the worst data points); every iterate
    is evaluated, so the result is >= the error at every start. A lower bound on the sup."""
    gen = torch.Generator().manual_seed(seed)
    X0 = torch.rand((restarts, *shape), generator=gen, dtype=torch.float64)
    if starts is not None and len(starts):
        X0 = torch.cat([X0, starts.double()])
    X = X0.clone().requires_grad_(True)
    best = torch.zeros(len(X0), dtype=torch.float64)
    for it in range(steps + 1):
        diff = (f(X) - g(X)).flatten(1).abs().amax(1)
        best = torch.maximum(best, diff.detach())
        if it == steps:
            break
        (grad,) = torch.autograd.grad(diff.sum(), X)
        with torch.no_grad():
            X += step_size * grad.sign()
            X.clamp_(0.0, 1.0)
        step_size *= 0.97
    return {"abs": float(best.max()), "restarts": int(restarts), "starts_from_data": 0 if starts is None else len(starts),
            "steps": steps}


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
    return {"abs": float(per.max()) * (1 + 1e-9) + 1e-300, "per_output": per, "method": "interval"}


def verify(target: nn.Module, pruned: nn.Module, data: torch.Tensor | None = None, restarts: int = 8,
           steps: int = 60, seed: int = 0, input_shape=None, evaluate_with: nn.Module | None = None,
           certificate: dict | None = None) -> dict:
    """The three numbers for target f = ``target`` and g = ``pruned`` (both evaluated in float64).

    ``data``: inputs in [0, 1] (N x c0 x D x D); ``input_shape`` (c0, D, D) is needed without data.
    ``evaluate_with``: a module computing the same function as ``pruned`` to run the empirical and
    adversarial passes with (e.g. ``pruned.compact()``, much faster). ``certificate``: the result of
    the construction's ``certify()`` for this very pair (None: no certified number is reported).
    Refuses a pair whose outputs have different shapes."""
    f, g = _f64(target), _f64(evaluate_with if evaluate_with is not None else pruned)
    for p in list(f.parameters()) + list(g.parameters()):
        p.requires_grad_(False)
    if data is not None:
        if data.min() < 0 or data.max() > 1:
            raise ValueError("data: inputs must lie in the domain [0, 1] (scale them first)")
        shape = tuple(data.shape[1:])
    else:
        if input_shape is None:
            raise ValueError("input_shape: give (c0, D, D) when no data set is given")
        shape = tuple(input_shape)
    with torch.no_grad():
        probe = torch.zeros((1, *shape), dtype=torch.float64)
        fs, gs = tuple(f(probe).shape), tuple(g(probe).shape)
    if fs != gs:
        raise ValueError(f"verify: target output shape {fs} differs from the pruned network's {gs} on inputs of "
                         f"shape {shape}; these networks do not compute comparable functions")
    if data is not None:
        emp = empirical(f, g, data)
        err, _ = max_abs_errors(f, g, data)
        worst = data[err.argsort(descending=True)[:4]]
    else:
        emp, worst = None, None
    adv = adversarial(f, g, shape, starts=worst, restarts=restarts, steps=steps, seed=seed)
    cert_abs = certificate["abs"] if certificate is not None else math.nan
    out = {"empirical": emp, "adversarial": adv, "certified": certificate}
    top = emp["max_abs_f"] if emp else math.nan
    out["summary"] = {"empirical_abs": emp["abs"] if emp else math.nan, "adversarial_abs": adv["abs"],
                      "certified_abs": cert_abs, "empirical_rel": emp["rel_per_image"] if emp else math.nan,
                      "adversarial_rel": adv["abs"] / top if emp else math.nan,
                      "certified_rel": cert_abs / top if emp else math.nan,
                      "ordered": bool((emp is None or emp["abs"] <= adv["abs"] * (1 + 1e-12)) and
                                      (certificate is None or adv["abs"] <= cert_abs))}
    if certificate is not None and not out["summary"]["ordered"]:
        raise RuntimeError(f"verify: the certificate {cert_abs:.6e} is below an attained error "
                           f"(empirical {out['summary']['empirical_abs']:.6e}, adversarial {adv['abs']:.6e}): "
                           "a bug in the construction's certify(); refusing to report it")
    return out
