"""The random over-parameterised CNN of ICLR 2022 (da Cunha, Natale, Viennot), Lemma 2 / Theorem 1,
as a plain PyTorch module with masks.

Every target convolution K (PyTorch layout c1 x c0 x d x d, bias b) becomes a block of two random
convolutions (Section 4.3, proof of Lemma 2)::

    U: Conv2d(c0, c1*n, d)   random entries, same stride/padding as K, bias b_U if K has a bias
    ReLU
    V: Conv2d(c1*n, c1, 1)   random entries, no bias

ReLU and max-pooling layers of the target are kept as they are. An optional :class:`OutputScale`
at the end multiplies the output by a constant (target scaling by positive homogeneity, see
:mod:`pipelines.constructions.base`). Which masks are chosen, and why, is the construction's business
(:mod:`pipelines.constructions.iclr`); this module only holds the network, its masks
(``torch.nn.utils.prune`` reparametrisation through :mod:`models.masks`), parameter counts, the
compact export and save/load.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
from torch import nn

from .masks import freeze, ones_mask, set_mask


class ConstructionError(ValueError):
    """The target network cannot be built by this construction, or a pruned-network file is not one
    of ours; the message says why and what to do."""


FORMAT = "slth-pruned-random-cnn/2"
READABLE_FORMATS = ("slth-pruned-random-cnn/1", FORMAT)


@dataclass
class BlockSpec:
    """One target convolution and its random block."""

    index: int  # position in the target Sequential
    c0: int
    c1: int
    kernel: tuple
    stride: tuple
    padding: tuple
    bias: bool


class RandomBlock(nn.Module):
    """U (d x d, c0 -> c1*n, with bias if the target has one) -> ReLU -> V (1 x 1, c1*n -> c1, no bias)."""

    def __init__(self, spec: BlockSpec, n: int):
        super().__init__()
        self.n = n
        self.U = nn.Conv2d(spec.c0, spec.c1 * n, tuple(spec.kernel), stride=tuple(spec.stride),
                           padding=tuple(spec.padding), bias=spec.bias)
        self.act = nn.ReLU()
        self.V = nn.Conv2d(spec.c1 * n, spec.c1, 1, bias=False)

    def forward(self, x):
        return self.V(self.act(self.U(x)))

    def masked(self, module: str, name: str = "weight") -> torch.Tensor:
        """The pruned tensor (random values times mask) of ``U`` or ``V``."""
        m = getattr(self, module)
        return getattr(m, f"{name}_orig") * getattr(m, f"{name}_mask")


class OutputScale(nn.Module):
    """Multiplies its input by a constant (a buffer, so it is saved): the product of the target
    scaling factors lambda_i. Positive, so it commutes with ReLU and max-pooling."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConstructionError(f"scale: the output scale must be a finite positive number, got {value!r}")
        self.register_buffer("value", torch.tensor(float(value), dtype=torch.float64))

    def forward(self, x):
        return x * self.value.to(x.dtype)


class PrunedRandomCNN(nn.Module):
    """The 2l-layer random CNN with its masks (``torch.nn.utils.prune`` style), as a real module.

    ``layers_spec``: the target's layers as JSON-able dicts (``conv`` / ``relu`` / ``maxpool``);
    ``scales``: the target scaling factors lambda_i, one per conv (all 1 for no scaling)."""

    def __init__(self, layers_spec: list[dict], n: int, scales: list[float] | None = None,
                 construction: str = "iclr"):
        super().__init__()
        self.n = n
        self.layers_spec = layers_spec
        self.construction = construction
        n_conv = sum(s["type"] == "conv" for s in layers_spec)
        self.scales = [1.0] * n_conv if scales is None else [float(s) for s in scales]
        if len(self.scales) != n_conv:
            raise ConstructionError(f"scales: {len(self.scales)} factors for {n_conv} convolutions")
        mods = []
        for s in layers_spec:
            if s["type"] == "conv":
                mods.append(RandomBlock(BlockSpec(**s["block"]), n))
            elif s["type"] == "relu":
                mods.append(nn.ReLU())
            elif s["type"] == "maxpool":
                mods.append(nn.MaxPool2d(s["kernel_size"], stride=s["stride"], padding=s["padding"]))
            else:
                raise ConstructionError(f"layers_spec: unknown layer type {s.get('type')!r}")
        self.net = nn.Sequential(*mods)
        self.output_scale = OutputScale(math.prod(self.scales))
        for b in self.blocks():  # masks start at all-ones; the construction or load_state_dict sets them
            ones_mask(b.U, "weight")
            if b.U.bias is not None:
                ones_mask(b.U, "bias")
            ones_mask(b.V, "weight")
        freeze(self)

    def blocks(self) -> list[RandomBlock]:
        return [m for m in self.net if isinstance(m, RandomBlock)]

    def forward(self, x):
        return self.output_scale(self.net(x))

    def set_block_masks(self, index: int, U=None, U_bias=None, V=None) -> None:
        """Replace the masks of block ``index`` (validated 0/1 tensors of the parameter's shape)."""
        b = self.blocks()[index]
        if U is not None:
            set_mask(b.U, "weight", U)
        if U_bias is not None:
            if b.U.bias is None:
                raise ConstructionError(f"block {index}: U has no bias to mask")
            set_mask(b.U, "bias", U_bias)
        if V is not None:
            set_mask(b.V, "weight", V)

    # ------------------------------------------------------------------ counts and views
    def parameter_counts(self) -> dict:
        """Random network parameters (all of U, b_U, V), kept ones (mask = 1 and actually used:
        U entries of live channels and the V entries that connect them), and per block."""
        total = kept = 0
        for b in self.blocks():
            total += b.U.weight_orig.numel() + (b.U.bias_orig.numel() if b.U.bias is not None else 0) + b.V.weight_orig.numel()
            live = self.live_channels(b)
            kept += int(b.U.weight_mask[live].sum()) + (int(b.U.bias_mask[live].sum()) if b.U.bias is not None else 0)
            kept += int(b.V.weight_mask[:, live].sum())
        return {"random": int(total), "kept": int(kept)}

    @staticmethod
    def live_channels(b: RandomBlock) -> torch.Tensor:
        """Hidden channels t that carry something: some kept U entry (or bias) and a kept V entry."""
        wm = b.U.weight_mask.flatten(1).sum(1) > 0
        if b.U.bias is not None:
            wm = wm | (b.U.bias_mask > 0)
        return wm & (b.V.weight_mask[:, :, 0, 0].sum(0) > 0)

    @torch.no_grad()
    def block_products(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(L, c) per block in float64: L[l] = sum_t V[l,t] (U o S)[t], c[l] = sum_t V[l,t] (b_U o S_b)[t]
        (ICLR 2022, Section 4.2, Eq. 2): what the block computes on non-negative inputs."""
        out = []
        for b in self.blocks():
            Vm = b.masked("V")[:, :, 0, 0].double()  # c1 x c1*n
            L = torch.einsum("lt,tkij->lkij", Vm, b.masked("U").double())
            c = Vm @ b.masked("U", "bias").double() if b.U.bias is not None else None
            out.append((L, c))
        return out

    def compact(self) -> nn.Sequential:
        """A plain ``nn.Sequential`` without masks whose hidden channels are only the live ones (pruned
        channels dropped, pruned entries stored as zeros); computes the same function."""
        mods = []
        dt = next(self.parameters()).dtype
        for m in self.net:
            if not isinstance(m, RandomBlock):
                mods.append(type(m)(**({"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding}
                                       if isinstance(m, nn.MaxPool2d) else {})))
                continue
            live = self.live_channels(m).nonzero().flatten()
            k = max(int(live.numel()), 1)
            U = nn.Conv2d(m.U.in_channels, k, m.U.kernel_size, stride=m.U.stride, padding=m.U.padding,
                          bias=m.U.bias is not None, dtype=dt)
            V = nn.Conv2d(k, m.V.out_channels, 1, bias=False, dtype=dt)
            with torch.no_grad():
                U.weight.zero_()
                V.weight.zero_()
                if U.bias is not None:
                    U.bias.zero_()
                if live.numel():
                    U.weight.copy_(m.masked("U")[live])
                    if U.bias is not None:
                        U.bias.copy_(m.masked("U", "bias")[live])
                    V.weight.copy_(m.masked("V")[:, live])
            mods += [U, nn.ReLU(), V]
        if float(self.output_scale.value) != 1.0:
            mods.append(OutputScale(float(self.output_scale.value)))
        return freeze(nn.Sequential(*mods))

    # ------------------------------------------------------------------ save / load
    def save(self, path, extra: dict | None = None) -> None:
        """state_dict (weight_orig/weight_mask pairs), the architecture, the construction's name and
        the scaling factors, as JSON strings (read back with ``weights_only=True``)."""
        torch.save({"format": FORMAT, "n": self.n, "spec": json.dumps(self.layers_spec),
                    "construction": self.construction, "scales": json.dumps(self.scales),
                    "extra": json.dumps(extra or {}), "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path) -> "PrunedRandomCNN":
        """Reads a file written by :meth:`save` (``weights_only=True``: data, never code)."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConstructionError(f"{path}: not a readable pruned-network file ({exc})") from exc
        if not isinstance(blob, dict) or blob.get("format") not in READABLE_FORMATS:
            raise ConstructionError(f"{path}: not a file written by PrunedRandomCNN.save / slth prune")
        try:
            scales = json.loads(blob.get("scales", "null"))
            model = cls(json.loads(blob["spec"]), int(blob["n"]), scales, blob.get("construction", "iclr"))
            sd = dict(blob["state_dict"])
            sd.setdefault("output_scale.value", model.output_scale.value)  # format 1 had no scaling
            if sd and next(iter(sd.values())).dtype == torch.float64:
                model = model.double()
            model.load_state_dict(sd)
            model.extra = json.loads(blob.get("extra", "{}"))
        except ConstructionError:
            raise
        except Exception as exc:
            raise ConstructionError(f"{path}: the pruned-network file is damaged or inconsistent ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:200]}); write it again with slth prune") from exc
        return model
