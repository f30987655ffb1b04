"""The one copy of the measurements the experiments report (ICLR 2022, Section 3, Figs. 3-4).

- :func:`accuracy`: test accuracy (percent) of a whole network; :func:`accuracy_with_features`:
  the same for LeNet5 with its convolutional part replaced (e.g. by a pruned random network).
- :func:`max_rel_weight_error` (Figure 3): per parameter tensor max |p - p'| / max |p|, and the max.
- :func:`conv_outputs` and :func:`output_errors` (Figure 4) on the output of the convolutional part:
  ``per_image`` = the paper's text (per image, max activation error / max original activation,
  then the max over images); ``global`` = the authors' public code (largest activation error over
  the data set / largest original activation over the data set); ``max_abs`` = the raw error.

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


def conv_outputs(features, images, batch_size: int = 100):
    """Flattened outputs (N, 784 for LeNet5) of a conv part over ``images``, in the features' dtype.

    Small batches keep the im2col buffers in cache: on 2 cores the float64 pass over the 60k
    training images takes ~4 s with batches of 100 and ~17 s with batches of 2000."""
    import torch

    features.eval()
    dt = next(features.parameters()).dtype
    outs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            outs.append(features(torch.as_tensor(images[start:start + batch_size]).to(dt)).flatten(1))
    return torch.cat(outs)


def output_errors(f_out, g_out) -> dict:
    """Figure 4 metrics from the conv-part outputs (N, D) of the target (``f_out``) and the approximation.

    Returns ``per_image`` (paper's text: max over images of max|f - g| / max|f| per image),
    ``global`` (authors' code: max over everything of |f - g| / max over everything of |f|),
    and the raw ``max_abs`` error.
    """
    err = (f_out - g_out).abs().amax(dim=1)
    top = f_out.abs().amax(dim=1)
    ratio = relative_errors(err, top)
    max_abs, max_f = float(err.max()), float(top.max())
    return {"per_image": float(ratio.max()), "global": max_abs / max_f if max_f > 0 else float("inf"),
            "max_abs": max_abs}


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
