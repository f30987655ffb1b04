"""Interval bounds of a target f and a target-shaped network g fed the same input box, layer by layer, and
the interval certificate on sup ||f(X) - g(X)||_max they give (issue 15). Used by :mod:`pipelines.verify`
(the certificate) and :mod:`pipelines.exact_sup` (big-M constants and cuts of the exact MILP). float64."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- layer-wise interval certificate
def network_ops(net: nn.Module, dense: bool = False) -> list[tuple]:
    """The layers of a target-shaped network as plain float64 operations:
    ``("conv", W, Wneg, b, stride, padding)`` (``Wneg`` None: the plain conv W*x + b; otherwise
    W*relu(x) + Wneg*relu(-x) + b, a :class:`models.structured_cnn.SignSplitConv2d`), ``("relu",)``,
    ``("maxpool", kernel, stride, padding)``. With ``dense``: also ``("flatten",)`` (an ``nn.Flatten()`` of
    all dimensions after the batch) and ``("linear", W, Wneg, b, (1, 1), (0, 0))`` for an ``nn.Linear`` or a
    :class:`models.random_dense.SignSplitLinear`, with W (and Wneg) of shape m_out x m_in x 1 x 1: a flattened
    activation is held as m_in channels of size 1 x 1, on which the Linear is exactly this 1 x 1 conv.
    Anything else (or a MaxPool2d with dilation / ceil_mode, a Conv2d with groups / dilation / another padding
    mode, a Flatten of other dimensions) is refused with a ValueError naming it."""
    from models.random_dense import SignSplitLinear
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
        elif dense and isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ValueError(f"layer {i}: Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) is not handled "
                                 "(only Flatten() of every dimension after the batch)")
            ops.append(("flatten",))
        elif dense and isinstance(m, (nn.Linear, SignSplitLinear)):
            W = (m.weight if isinstance(m, nn.Linear) else m.weight_pos).detach().double()
            Wn = None if isinstance(m, nn.Linear) else m.weight_neg.detach().double()[..., None, None]
            b = m.bias.detach().double() if m.bias is not None else torch.zeros(W.shape[0], dtype=torch.float64)
            ops.append(("linear", W[..., None, None], Wn, b, (1, 1), (0, 0)))
        else:
            handled = "Conv2d, ReLU, MaxPool2d" + (", Flatten, Linear" if dense else "")
            raise ValueError(f"layer {i}: {type(m).__name__} is not handled ({handled} only)")
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

    Flatten: exact (the entries are held as channels of size 1 x 1 from there on); Linear: the 1 x 1 conv
    it is on those (:func:`network_ops`). Conv: interval arithmetic for x and y (IBP); for x - y the exact interval-relaxation bound of
    :func:`_diff_conv` (it uses the signs of the inputs: after a ReLU or a pooling of ReLUs every x, y
    lies in [0, u], so a term (k - l) y is bounded by max(k - l, 0) u, not |k - l| u). ReLU: monotone
    and 1-Lipschitz, relu(x) - relu(y) lies in [min(d, 0), max(d, 0)] for d = x - y, and in
    [relu(lx) - relu(uy), relu(ux) - relu(ly)]. Max-pool: monotone, and
    min_i d_i <= max_i x_i - max_i y_i <= max_i d_i. Every bound is widened by 1e-11 of the magnitude of
    its summed terms (float64 rounding)."""
    if len(f_ops) != len(g_ops) or any(a[0] != b[0] for a, b in zip(f_ops, g_ops)):
        raise ValueError("interval_bounds: f and g must have the same layers")
    shape = tuple(shape) if len(shape) != 1 else (int(shape[0]), 1, 1)  # a vector input: m channels of 1 x 1
    box = torch.full((1, *shape), float(lo), dtype=torch.float64), torch.full((1, *shape), float(hi), dtype=torch.float64)
    lx, ux = box
    ly, uy = lx.clone(), ux.clone()
    ld, ud = torch.zeros_like(lx), torch.zeros_like(lx)
    out = [dict(lx=lx, ux=ux, ly=ly, uy=uy, ld=ld, ud=ud)]
    for i, (fop, gop) in enumerate(zip(f_ops, g_ops)):
        if fop[0] == "linear" and lx.shape[2:] != (1, 1):
            raise ValueError(f"interval_bounds: op {i}: a Linear on a {'x'.join(map(str, lx.shape[1:]))} activation is "
                             "not handled (put an nn.Flatten() before it)")
        if fop[0] == "flatten":  # exact: the same entries, held as channels of size 1 x 1
            flat = lambda t: t.reshape(1, -1, 1, 1)  # noqa: E731
            nlx, nux, nly, nuy, nld, nud = (flat(t) for t in (lx, ux, ly, uy, ld, ud))
        elif fop[0] in ("conv", "linear"):
            if fop[2] is not None:
                raise ValueError("interval_bounds: the target's convs and linears must be plain Conv2d / Linear")
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
    ``per_output`` (a tensor C x H x W of max(ud, -ld); m x 1 x 1 for a network ending in a Linear). Carries
    Conv2d, ReLU, MaxPool2d, Flatten and Linear layers (:func:`network_ops` with ``dense``); refuses any other
    with a ValueError naming it."""
    b = interval_bounds(network_ops(target, dense=True), network_ops(effective, dense=True), tuple(shape), lo, hi)
    per = torch.maximum(b[-1]["ud"], -b[-1]["ld"])[0]
    # the pruned network g equals ``effective`` up to the float64 rounding of two forward passes: widen by
    # 1e-9 of the output magnitude bound
    mag = max(float(b[-1][k].abs().max()) for k in ("lx", "ux", "ly", "uy"))
    per = per + 1e-9 * mag
    return {"abs": float(per.max()) * (1 + 1e-9) + 1e-300, "per_output": per, "method": "interval",
            "output_bound": mag}
