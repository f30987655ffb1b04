"""Masks on random weights, carried the way the PyTorch ecosystem carries them.

A mask is applied with :func:`torch.nn.utils.prune.custom_from_mask`: the parameter ``weight`` becomes
``weight_orig`` (the random values) plus a ``weight_mask`` buffer and a forward pre-hook computing
``weight = weight_orig * weight_mask``; masks therefore live in the ``state_dict`` and survive
save/load. For strong lottery tickets the random values are never trained: :func:`freeze` sets
``requires_grad=False`` on every ``*_orig`` parameter. Masks are validated as exact 0/1 tensors of
the parameter's shape (the open_lth ``Mask`` rule): validation lives here, not in every caller.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune


class MaskError(ValueError):
    """A mask that is not an exact 0/1 tensor of the right shape; the message names the parameter."""


def check_mask(mask, like: torch.Tensor, where: str = "mask") -> torch.Tensor:
    """``mask`` as a tensor of ``like``'s dtype and shape, after checking every entry is exactly 0 or 1."""
    m = torch.as_tensor(mask)
    if tuple(m.shape) != tuple(like.shape):
        raise MaskError(f"{where}: mask shape {tuple(m.shape)} differs from the parameter's {tuple(like.shape)}")
    if m.dtype == torch.bool:
        m = m.to(like.dtype)
    elif not torch.all((m == 0) | (m == 1)):
        bad = m[(m != 0) & (m != 1)].flatten()[:3].tolist()
        raise MaskError(f"{where}: masks hold only 0 and 1, found {bad}")
    return m.to(dtype=like.dtype, device=like.device)


def is_masked(module: nn.Module, name: str) -> bool:
    return hasattr(module, f"{name}_mask") and hasattr(module, f"{name}_orig")


def set_mask(module: nn.Module, name: str, mask) -> None:
    """Give ``module.<name>`` exactly the 0/1 ``mask`` (replacing any previous one).

    First call: :func:`prune.custom_from_mask` installs the reparametrisation. Later calls write the
    validated mask into the ``<name>_mask`` buffer that the same hook reads (``custom_from_mask`` on an
    already pruned parameter would multiply the masks instead of replacing them)."""
    if is_masked(module, name):
        buf = getattr(module, f"{name}_mask")
        with torch.no_grad():
            buf.copy_(check_mask(mask, buf, f"{type(module).__name__}.{name}"))
        return
    param = getattr(module, name)
    prune.custom_from_mask(module, name, check_mask(mask, param, f"{type(module).__name__}.{name}"))


def ones_mask(module: nn.Module, name: str) -> None:
    """Install the reparametrisation with an all-ones mask (the unpruned random network)."""
    set_mask(module, name, torch.ones_like(getattr(module, f"{name}_orig") if is_masked(module, name)
                                           else getattr(module, name)))


def freeze(module: nn.Module) -> nn.Module:
    """Random weights are never trained: ``requires_grad=False`` on every parameter."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def density(module: nn.Module, name: str) -> float:
    """Share of ones in ``module.<name>_mask`` (1.0 for an unmasked parameter)."""
    if not is_masked(module, name):
        return 1.0
    m = getattr(module, f"{name}_mask")
    return float(m.sum()) / max(1, m.numel())
