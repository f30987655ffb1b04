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
