"""The one copy of the measurements the experiments report (ICLR 2022, Section 3, Figs. 3-4).

- :func:`accuracy`: test accuracy (percent) of a whole network; :func:`accuracy_with_features`:
  the same for LeNet5 with its convolutional part replaced (e.g. by a pruned random network).
- :func:`max_rel_weight_error` (Figure 3): per parameter tensor max |p - p'| / max |p|, and the max.
- :func:`conv_outputs` and :func:`output_errors` (Figure 4) on the output of the convolutional part:
  ``per_image`` = the paper's text (per image, max activation error / max original activation,
  then the max over images); ``global`` = the authors' public code (largest activation error over
  the data set / largest original activation over the data set); ``max_abs`` = the raw error.
  :func:`conv_outputs` runs float64 conv parts as im2col + dgemm in worker threads (same values as
  the module's own forward, :func:`conv_outputs_reference`, to rounding); :func:`output_errors`
  reduces row by row through a cache-sized buffer (bit for bit the whole-array result).

Relative errors follow one convention (:func:`relative_error`, :func:`relative_errors`): err / top
when top > 0, else 0 for an exact match and inf otherwise. Pass float64 outputs so the metrics are
not limited by float32 resolution. Imports torch lazily; no experiment is imported here.
"""
from __future__ import annotations

import math


def relative_error(err: float, top: float) -> float:
    """``err / top``; with ``top == 0``: 0 when ``err == 0`` (matched exactly), else inf."""
    return err / top if top > 0 else (0.0 if err == 0 else float("inf"))


def relative_errors(err, top):
    """Elementwise :func:`relative_error` of two tensors of the same shape (same dtype as ``err``)."""
    import torch

    zero = torch.zeros((), dtype=err.dtype)
    return torch.where(top > 0, err / top.clamp_min(1e-300), torch.where(err > 0, torch.inf, zero))


def max_rel_weight_error(params, approx) -> tuple[float, dict]:
    """Figure 3 metric: per tensor max|p - p'| / max|p|, and the max over tensors. ``params`` and
    ``approx``: matching lists of ``(name, numpy array)``. An all-zero tensor counts 0 when
    approximated exactly (the empty subset) and inf otherwise."""
    import numpy as np

    per = {}
    for (name, p), (_, q) in zip(params, approx):
        err, top = float(np.abs(p - q).max()), float(np.abs(p).max())
        per[name] = relative_error(err, top)
    return max(per.values()), per


def conv_outputs_reference(features, images, batch_size: int = 100):
    """The original :func:`conv_outputs`: ``features``' own forward over batches of ``batch_size``.

    Kept as the reference the fast path is tested and benchmarked against
    (``tests/test_metrics_fast.py``, ``scripts/bench_metrics.py``)."""
    import torch

    features.eval()
    dt = next(features.parameters()).dtype
    outs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            outs.append(features(torch.as_tensor(images[start:start + batch_size]).to(dt)).flatten(1))
    return torch.cat(outs)


#: images per chunk on the fast path for LeNet5 on 28x28 inputs (measured best of 8..256; see
#: scripts/bench_metrics.py); other shapes get the same bytes per chunk (:func:`_auto_chunk`)
FAST_CHUNK = 32
_CHUNK_BYTES = FAST_CHUNK * 25 * 784 * 8  # LeNet5's largest buffer: 25 x 784 im2col doubles per image


def conv_outputs(features, images, batch_size: int | None = None):
    """Flattened outputs (N, 784 for LeNet5) of a conv part over ``images``, in the features' dtype.

    The values of :func:`conv_outputs_reference` (the module's own forward), computed faster when
    ``features`` is a float64 ``nn.Sequential``:

    - each plain ``Conv2d`` (groups 1, zeros padding, any stride / padding / dilation, bias or not) is
      im2col + a float64 GEMM per image (MKL / OpenBLAS dgemm) + bias; with stride 1 in height and
      at least 16 (channel, kernel column) pairs, the im2col copy is made along the width only and
      each kernel row is one GEMM on a window of it (kernel-width instead of kernel-area copies);
    - ``MaxPool2d`` with kernel = stride, no padding, dilation 1, floor mode: elementwise maxima of
      strided views (exact); a ``ReLU`` just before it runs after it (relu(max) = max(relu), exact),
      in place;
    - any other layer, or a hooked / parametrized / subclassed one: its own forward.

    Other dtypes (float32) and other containers take :func:`conv_outputs_reference` unchanged.

    Images go in chunks (``batch_size``; default :data:`FAST_CHUNK` for LeNet5) whose buffers stay
    in cache and are reused chunk after chunk; ``torch.get_num_threads()`` worker threads each run
    whole chunks with one intra-op thread, so no OpenMP region is opened per small op (with 2 threads
    on a busy machine those make the reference 10x slower than with 1). The GEMMs sum in another
    order than ``slow_conv2d``: results differ from the reference by rounding only (max relative
    difference ~1e-15, see tests/test_metrics_fast.py).
    """
    import torch

    plan = _fast_plan(features)
    if plan is None or len(images) == 0:
        return conv_outputs_reference(features, images, 100 if batch_size is None else batch_size)
    features.eval()
    shape = tuple(torch.as_tensor(images[0:1]).shape[1:])
    chunk = int(batch_size) if batch_size else _auto_chunk(plan, shape)
    return _run_chunks(plan, images, max(1, chunk))


def _fast_plan(features):
    """``[(step or None, module)]`` for :func:`_run_plan`, or None when the fast path does not apply."""
    import torch
    from torch import nn
    from torch.nn.utils import parametrize

    if type(features) is not nn.Sequential or features._forward_hooks or features._forward_pre_hooks:
        return None
    params = list(features.parameters())
    if not params or any(p.dtype != torch.float64 or p.device.type != "cpu" for p in params):
        return None
    plan = []
    for m in features:
        step = None
        if not (m._forward_hooks or m._forward_pre_hooks or parametrize.is_parametrized(m)):
            if type(m) is nn.Conv2d:
                step = _conv_step(m)
            elif type(m) is nn.ReLU:
                step = ("relu",)
            elif type(m) is nn.MaxPool2d:
                step = _pool_step(m)
        plan.append((step, m))
    for i in range(len(plan) - 1):  # ReLU then MaxPool -> MaxPool then ReLU: 4x fewer elements
        if plan[i][0] == ("relu",) and plan[i + 1][0] is not None and plan[i + 1][0][0] == "pool":
            plan[i], plan[i + 1] = plan[i + 1], plan[i]
    return plan


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv_step(m):
    """("conv", ...) for a zeros-padded, ungrouped Conv2d; None otherwise."""
    if m.groups != 1 or m.padding_mode != "zeros":
        return None
    kh, kw = _pair(m.kernel_size)
    sh, sw = _pair(m.stride)
    dh, dw = _pair(m.dilation)
    if isinstance(m.padding, str):  # "valid", or "same" (stride 1; an odd total pads one more at the end)
        th, tw = (0, 0) if m.padding == "valid" else (dh * (kh - 1), dw * (kw - 1))
        pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    else:
        ph, pw = _pair(m.padding)
        pads = (ph, ph, pw, pw)
    w = m.weight.detach()
    cout, cin = w.shape[:2]
    bias = None if m.bias is None else m.bias.detach().reshape(1, cout, 1)
    rows = sh == 1 and kh > 1 and cin * kw >= 16
    if rows:  # one (cout x cin*kw) matrix per kernel row, columns ordered (channel, kernel column)
        weights = [w[:, :, i, :].reshape(cout, cin * kw).contiguous() for i in range(kh)]
    else:
        weights = w.reshape(cout, cin * kh * kw).contiguous()
    return ("conv", rows, weights, bias, cout, cin, (kh, kw), (sh, sw), (dh, dw), pads)


def _pool_step(m):
    """("pool", kh, kw) for MaxPool2d with kernel = stride > 1, no padding, dilation 1, floor mode."""
    k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
    if (k != s or _pair(m.padding) != (0, 0) or _pair(m.dilation) != (1, 1) or m.ceil_mode
            or m.return_indices or k == (1, 1)):
        return None
    return ("pool", *k)


def _conv_geometry(step, h: int, w: int):
    """Padded and output sizes ``(hp, wp, ho, wo)`` of a conv step on an h x w input."""
    _, _, _, _, _, _, (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = step
    hp, wp = h + pt + pb, w + pl + pr
    return hp, wp, (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1


def _auto_chunk(plan, shape) -> int:
    """Images per chunk: about :data:`_CHUNK_BYTES` in the largest per-chunk buffer, 4 to 256
    (:data:`FAST_CHUNK` for LeNet5 on 28x28)."""
    if len(shape) != 3:
        return FAST_CHUNK
    _, h, w = shape
    biggest = 0
    for step, _ in plan:
        if step is None:
            break  # sizes unknown from here on
        if step[0] == "conv":
            rows, cout, cin, (kh, kw) = step[1], step[4], step[5], step[6]
            hp, _, ho, wo = _conv_geometry(step, h, w)
            if ho < 1 or wo < 1:
                break
            cols = cin * kw * hp * wo if rows else cin * kh * kw * ho * wo
            biggest = max(biggest, 8 * max(cols, cout * ho * wo))
            h, w = ho, wo
        elif step[0] == "pool":
            h, w = h // step[1], w // step[2]
    if biggest == 0:
        return FAST_CHUNK
    return int(min(256, max(4, _CHUNK_BYTES // biggest)))


def _buffers(ws: dict, key, shapes):
    """Float64 buffers of ``shapes`` (zeroed once) kept in ``ws`` under ``key``: reused chunk after
    chunk, they stay warm in cache and their zero borders (the padding) need no rewriting."""
    import torch

    bufs = ws.get(key)
    if bufs is None or [tuple(b.shape) for b in bufs] != [tuple(s) for s in shapes]:
        bufs = ws[key] = [torch.zeros(s, dtype=torch.float64) for s in shapes]
    return bufs


def _run_conv(step, x, ws: dict, key):
    """One Conv2d on a (B, C, H, W) chunk of any dtype / strides -> float64 (B, Cout, Ho, Wo), held in
    a buffer of ``ws`` (valid until the next chunk)."""
    import torch

    _, rows, weights, bias, cout, cin, (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = step
    b, _, h, w = x.shape
    hp, wp, ho, wo = _conv_geometry(step, h, w)
    length = ho * wo
    k = cin * kw if rows else cin * kh * kw
    padded = bool(pt or pb or pl or pr) or x.dtype != torch.float64
    cols_shape = (b, k, hp * wo) if rows else (b, k, length)
    xp, cols, y = _buffers(ws, key, [(b, cin, hp, wp) if padded else (0,), cols_shape, (b, cout, length)])
    if padded:
        xp[:, :, pt:pt + h, pl:pl + w] = x  # the borders stay zero from the allocation
    else:
        xp = x
    s0, s1, s2, s3 = xp.stride()
    if rows:
        # cols[b, (c, j), (r, o)] = xp[b, c, r, o * sw + j * dw]; kernel row i reads input rows
        # i*dh .. i*dh + ho - 1: the window [i*dh*wo, i*dh*wo + ho*wo) of every (c, j) row
        cols.view(b, cin, kw, hp, wo).copy_(xp.as_strided((b, cin, kw, hp, wo), (s0, s1, dw * s3, s2, sw * s3)))
        gemms = [(wi, cols[:, :, i * dh * wo:i * dh * wo + length]) for i, wi in enumerate(weights)]
    else:
        cols.view(b, cin, kh, kw, ho, wo).copy_(
            xp.as_strided((b, cin, kh, kw, ho, wo), (s0, s1, dh * s2, dw * s3, sh * s2, sw * s3)))
        gemms = [(weights, cols)]
    for n, (wi, ci) in enumerate(gemms):
        if n == 0 and bias is None:
            torch.bmm(wi.expand(b, cout, k), ci, out=y)
        else:
            if n == 0:
                y.copy_(bias.expand(b, cout, length))
            y.baddbmm_(wi.expand(b, cout, k), ci)
    return y.view(b, cout, ho, wo)


def _run_pool(step, x):
    """MaxPool2d(k, stride=k) as maxima of strided views (exact; NaN propagates as in max_pool2d)."""
    import torch

    _, kh, kw = step
    ho, wo = x.shape[-2] // kh, x.shape[-1] // kw
    x = x[..., :ho * kh, :wo * kw]
    if kw > 1:
        a = torch.maximum(x[..., 0::kw], x[..., 1::kw])
        for j in range(2, kw):
            torch.maximum(a, x[..., j::kw], out=a)
        x = a
    if kh > 1:
        a = torch.maximum(x[..., 0::kh, :], x[..., 1::kh, :])
        for i in range(2, kh):
            torch.maximum(a, x[..., i::kh, :], out=a)
        x = a
    return x


def _run_plan(plan, x, ws: dict):
    """``features(x).flatten(1)`` in float64 through the plan; ``x``: one chunk of images."""
    import torch

    owned = False  # may x be changed in place?
    for n, (step, module) in enumerate(plan):
        kind = None if step is None else step[0]
        if (kind == "conv" and x.dim() == 4 and x.shape[1] == step[5]
                and min(_conv_geometry(step, *x.shape[-2:])[2:]) > 0):
            x, owned = _run_conv(step, x, ws, n), True
        elif kind == "pool" and x.dim() == 4 and x.shape[-2] >= step[1] and x.shape[-1] >= step[2]:
            x, owned = _run_pool(step, x.to(torch.float64)), True
        elif kind == "relu":
            x, owned = (x.relu_() if owned else torch.relu(x.to(torch.float64))), True
        else:  # any other layer, or an input a fast step does not take: the layer's own forward
            x, owned = module(x.to(torch.float64)), False
    return x.flatten(1)


def _run_chunks(plan, images, chunk: int):
    """The (N, D) float64 outputs, chunk by chunk. ``torch.get_num_threads()`` worker threads take
    chunks in turn, each with one intra-op thread and its own buffers (the setting is restored)."""
    import threading

    import torch

    n = len(images)
    starts = list(range(chunk, n, chunk))
    before = torch.get_num_threads()
    threads = max(1, min(before, len(starts)))
    lock, queue, errors = threading.Lock(), iter(starts), []
    out = None

    def work(ws):
        try:
            with torch.no_grad():
                while not errors:
                    with lock:
                        s = next(queue, None)
                    if s is None:
                        return
                    out[s:s + chunk] = _run_plan(plan, torch.as_tensor(images[s:s + chunk]), ws)
        except BaseException as exc:  # re-raised by the caller
            errors.append(exc)

    torch.set_num_threads(1)  # for this thread and the threads started below
    try:
        ws = {}
        with torch.no_grad():
            first = _run_plan(plan, torch.as_tensor(images[0:chunk]), ws)
        out = torch.empty((n, first.shape[1]), dtype=torch.float64)
        out[0:chunk] = first
        if threads == 1:
            work(ws)
        else:
            pool = [threading.Thread(target=work, args=(ws if t == 0 else {},), daemon=True)
                    for t in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
    except BaseException as exc:  # e.g. KeyboardInterrupt in join: the workers stop after their chunk
        errors.append(exc)
        raise
    finally:
        torch.set_num_threads(before)
    if errors:
        raise errors[0]
    return out


def output_errors(f_out, g_out) -> dict:
    """Figure 4 metrics from the conv-part outputs (N, D) of the target (``f_out``) and the approximation.

    Returns ``per_image`` (paper's text: max over images of max|f - g| / max|f| per image),
    ``global`` (authors' code: max over everything of |f - g| / max over everything of |f|),
    and the raw ``max_abs`` error.
    """
    err, top = _row_maxima(f_out, g_out)
    ratio = relative_errors(err, top)
    max_abs, max_f = float(err.max()), float(top.max())
    return {"per_image": float(ratio.max()), "global": max_abs / max_f if max_f > 0 else float("inf"),
            "max_abs": max_abs}


def _row_maxima(f_out, g_out, rows: int = 1024):
    """``(|f - g|.amax(1), |f|.amax(1))``, bit for bit, through a cache-sized buffer of ``rows`` rows
    (10x faster on 60000 x 784 than the whole-array temporaries; only for two same-shape 2-D tensors)."""
    import torch

    if not (isinstance(f_out, torch.Tensor) and isinstance(g_out, torch.Tensor) and f_out.dim() == 2
            and f_out.shape == g_out.shape and len(f_out) > rows and f_out.shape[1] > 0):
        return (f_out - g_out).abs().amax(dim=1), f_out.abs().amax(dim=1)
    n = len(f_out)
    dt = torch.promote_types(f_out.dtype, g_out.dtype)
    err, top = torch.empty(n, dtype=dt), torch.empty(n, dtype=f_out.dtype)
    diff, absf = torch.empty((rows, f_out.shape[1]), dtype=dt), torch.empty((rows, f_out.shape[1]), dtype=f_out.dtype)
    for s in range(0, n, rows):
        e = min(n, s + rows)
        d, a = diff[:e - s], absf[:e - s]
        torch.amax(torch.sub(f_out[s:e], g_out[s:e], out=d).abs_(), dim=1, out=err[s:e])
        torch.amax(torch.abs(f_out[s:e], out=a), dim=1, out=top[s:e])
    return err, top


def accuracy(model, images, labels, batch_size: int = 500) -> float:
    """Top-1 accuracy in percent of ``model`` (switched to eval mode) on float32 ``images``."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.as_tensor(images[start:start + batch_size]).float()
            y = torch.as_tensor(labels[start:start + batch_size])
            correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / len(images)


def accuracy_with_features(model, features, images, labels, batch_size: int = 250) -> float:
    """Top-1 accuracy in percent of LeNet5 ``model`` whose conv part is replaced by ``features``:
    ``model.classifier(features(x))`` in float32. Both modules are set to float32 and eval mode
    (in place, as :meth:`torch.nn.Module.float` does; a trained LeNet5 already is)."""
    import torch

    head = model.classifier.float().eval()
    rep = features.float().eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(images), batch_size):
            x = torch.as_tensor(images[s:s + batch_size]).float()
            y = torch.as_tensor(labels[s:s + batch_size])
            correct += int((head(rep(x)).argmax(1) == y).sum())
    return 100.0 * correct / len(images) if len(images) else math.nan
