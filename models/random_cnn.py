"""The random over-parameterised CNN of ICLR 2022 (da Cunha, Natale, Viennot), Lemma 2 / Theorem 1,
and its pruning by subset-sum masks.

Every target convolution K (PyTorch layout c1 x c0 x d x d, bias b) becomes a block of two random
convolutions (Section 4.3, proof of Lemma 2)::

    U: Conv2d(c0, c1*n, d)   entries Unif[-1, 1] (or N(0, 1)), same stride/padding as K, bias b_U
    ReLU
    V: Conv2d(c1*n, c1, 1)   entries Unif[-1, 1] (or N(0, 1)), no bias

Masks: ``T`` (on V) is fixed a priori to the block-diagonal matrix B_{t,l} = 1[l*n <= t < (l+1)*n]
(Section 4.3); ``S`` (on U) first prunes every negative entry of U (Section 4.2, Eq. 1: with
non-negative inputs the ReLU is then the identity), then keeps, for every target entry
K[l, k, i, j], the subset of t in block l chosen by the RSS instance
``min | K[l,k,i,j] - sum_t a_t V[l, ln+t] U+[ln+t, k, i, j] |`` (Eq. 2). Biases follow footnote 1:
the block's bias is sum_t V[l, ln+t] b_U+[ln+t], the same RSS configuration with one more entry
per kernel. With every block input non-negative the pruned block computes exactly the convolution
with the *effective* kernel L[l,k,i,j] = sum_t V[l,ln+t] (U o S)[ln+t,k,i,j] and bias
c[l] = sum_t V[l,ln+t] (b_U o S_b)[ln+t] (Section 4.2, Eq. 2).

Masks are applied with :mod:`torch.nn.utils.prune` (``weight_orig`` parameter + ``weight_mask``
buffer + a forward pre-hook), so state_dicts follow that module's conventions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune


class ConstructionError(ValueError):
    """The target network cannot be built by this construction; the message says why and what to do."""


SUPPORTED = (nn.Conv2d, nn.ReLU, nn.MaxPool2d)


def check_target(target: nn.Module) -> list[nn.Module]:
    """The target's layers, validated: an ``nn.Sequential`` of Conv2d (groups 1, dilation 1, zero
    padding), ReLU and MaxPool2d, where every convolution sees non-negative inputs (Theorem 1's
    hypothesis: it is the first layer, whose input domain is [0, 1], or it follows a ReLU)."""
    if not isinstance(target, nn.Sequential):
        raise ConstructionError(f"target: expected an nn.Sequential of Conv2d/ReLU/MaxPool2d, got "
                                f"{type(target).__name__} (pass e.g. model.features)")
    layers = list(target)
    if not layers:
        raise ConstructionError("target: the nn.Sequential is empty")
    nonneg = True  # the input domain [0, 1]^{D x D x c0}
    for i, m in enumerate(layers):
        if isinstance(m, nn.Linear):
            raise ConstructionError(
                f"target[{i}]: nn.Linear is not supported; the ICLR construction covers convolutions. Express it as "
                f"an nn.Conv2d whose kernel covers its whole input (kernel_size = input size, no padding) or prune "
                f"only the convolutional part (e.g. model.features)")
        if not isinstance(m, SUPPORTED):
            raise ConstructionError(f"target[{i}]: {type(m).__name__} is not supported; allowed layers: Conv2d, "
                                    f"ReLU, MaxPool2d (Theorem 1's networks)")
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros":
                raise ConstructionError(f"target[{i}]: Conv2d needs groups=1, dilation=1 and zero padding "
                                        f"(got groups={m.groups}, dilation={m.dilation}, padding_mode={m.padding_mode})")
            if isinstance(m.padding, str):
                raise ConstructionError(f"target[{i}]: give Conv2d an integer padding, not {m.padding!r}")
            if not nonneg:
                raise ConstructionError(
                    f"target[{i}]: this Conv2d receives possibly negative inputs (no ReLU before it); the "
                    f"construction needs non-negative inputs to bypass the ReLU of each random block (Section 2.1, "
                    f"Limitations). Put a ReLU before it")
            for name, p in (("weight", m.weight), ("bias", m.bias)):
                if p is not None and not torch.isfinite(p).all():
                    raise ConstructionError(f"target[{i}].{name}: contains NaN or inf; fix the model's weights")
            nonneg = False
        elif isinstance(m, nn.ReLU):
            nonneg = True
        # MaxPool2d keeps non-negativity as it is
    return layers


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


def _random(shape, rng: np.random.Generator, dist: str) -> np.ndarray:
    if dist == "uniform":
        return rng.uniform(-1.0, 1.0, size=shape)
    if dist == "normal":
        return rng.standard_normal(size=shape)
    raise ConstructionError(f"dist: unknown distribution {dist!r}; use 'uniform' (the paper's) or 'normal'")


class RandomBlock(nn.Module):
    """U (d x d, c0 -> c1*n, with bias if the target has one) -> ReLU -> V (1 x 1, c1*n -> c1, no bias)."""

    def __init__(self, spec: BlockSpec, n: int):
        super().__init__()
        self.n = n
        self.U = nn.Conv2d(spec.c0, spec.c1 * n, spec.kernel, stride=spec.stride, padding=spec.padding,
                           bias=spec.bias)
        self.act = nn.ReLU()
        self.V = nn.Conv2d(spec.c1 * n, spec.c1, 1, bias=False)

    def forward(self, x):
        return self.V(self.act(self.U(x)))


class PrunedRandomCNN(nn.Module):
    """The 2l-layer random CNN with its masks (``torch.nn.utils.prune`` style), as a real module."""

    def __init__(self, layers_spec: list[dict], n: int):
        super().__init__()
        self.n = n
        self.layers_spec = layers_spec
        mods = []
        for s in layers_spec:
            if s["type"] == "conv":
                mods.append(RandomBlock(BlockSpec(**s["block"]), n))
            elif s["type"] == "relu":
                mods.append(nn.ReLU())
            else:
                mods.append(nn.MaxPool2d(s["kernel_size"], stride=s["stride"], padding=s["padding"]))
        self.net = nn.Sequential(*mods)
        for b in self.blocks():  # masks start at all-ones; construct() or load_state_dict() sets them
            prune.identity(b.U, "weight")
            if b.U.bias is not None:
                prune.identity(b.U, "bias")
            prune.identity(b.V, "weight")

    def blocks(self) -> list[RandomBlock]:
        return [m for m in self.net if isinstance(m, RandomBlock)]

    def forward(self, x):
        return self.net(x)

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
    def effective(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(L, c) per block: L[l] = sum_t V[l,t] (U o S)[t], c[l] = sum_t V[l,t] (b_U o S_b)[t] (Eq. 2)."""
        out = []
        for b in self.blocks():
            Vm = (b.V.weight_orig * b.V.weight_mask)[:, :, 0, 0].double()  # c1 x c1*n
            Um = (b.U.weight_orig * b.U.weight_mask).double()               # c1*n x c0 x d x d
            L = torch.einsum("lt,tkij->lkij", Vm, Um)
            c = None
            if b.U.bias is not None:
                c = Vm @ (b.U.bias_orig * b.U.bias_mask).double()
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
                    U.weight.copy_((m.U.weight_orig * m.U.weight_mask)[live])
                    if U.bias is not None:
                        U.bias.copy_((m.U.bias_orig * m.U.bias_mask)[live])
                    V.weight.copy_((m.V.weight_orig * m.V.weight_mask)[:, live])
            mods += [U, nn.ReLU(), V]
        return nn.Sequential(*mods)

    # ------------------------------------------------------------------ save / load
    def save(self, path, extra: dict | None = None) -> None:
        """state_dict (weight_orig/weight_mask pairs) plus the architecture as a JSON string."""
        torch.save({"format": "slth-pruned-random-cnn/1", "n": self.n, "spec": json.dumps(self.layers_spec),
                    "extra": json.dumps(extra or {}), "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path) -> "PrunedRandomCNN":
        """Reads a file written by :meth:`save` (``weights_only=True``: data, never code)."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConstructionError(f"{path}: not a readable pruned-network file ({exc})") from exc
        if not isinstance(blob, dict) or blob.get("format") != "slth-pruned-random-cnn/1":
            raise ConstructionError(f"{path}: not a file written by PrunedRandomCNN.save / slth prune")
        model = cls(json.loads(blob["spec"]), int(blob["n"]))
        sd = blob["state_dict"]
        if sd and next(iter(sd.values())).dtype == torch.float64:
            model = model.double()
        model.load_state_dict(sd)
        model.extra = json.loads(blob.get("extra", "{}"))
        return model


def layers_spec(layers: list[nn.Module]) -> list[dict]:
    spec = []
    for i, m in enumerate(layers):
        if isinstance(m, nn.Conv2d):
            spec.append({"type": "conv", "block": {"index": i, "c0": m.in_channels, "c1": m.out_channels,
                                                   "kernel": list(m.kernel_size), "stride": list(m.stride),
                                                   "padding": list(m.padding), "bias": m.bias is not None}})
        elif isinstance(m, nn.ReLU):
            spec.append({"type": "relu"})
        else:
            spec.append({"type": "maxpool", "kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding})
    return spec


def build_random(target: nn.Sequential, n: int, seed: int = 0, dist: str = "uniform") -> PrunedRandomCNN:
    """The random network for ``target`` with masks T = block diagonal and S = all ones (unpruned U)."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ConstructionError(f"n: samples per target entry must be a positive integer, got {n!r}")
    layers = check_target(target)
    model = PrunedRandomCNN(layers_spec(layers), int(n)).double()
    with torch.no_grad():
        for bi, b in enumerate(model.blocks()):
            rng = np.random.default_rng([seed, bi, 2022])
            b.U.weight_orig.copy_(torch.from_numpy(_random(tuple(b.U.weight_orig.shape), rng, dist)))
            if b.U.bias is not None:
                b.U.bias_orig.copy_(torch.from_numpy(_random(tuple(b.U.bias_orig.shape), rng, dist)))
            b.V.weight_orig.copy_(torch.from_numpy(_random(tuple(b.V.weight_orig.shape), rng, dist)))
            c1 = b.V.out_channels
            T = torch.zeros_like(b.V.weight_mask)
            for l in range(c1):
                T[l, l * n:(l + 1) * n] = 1.0  # Section 4.3: B_{1,1,t,l} = 1[(l-1)n' < t <= l n']
            b.V.weight_mask.copy_(T)
    return model


def apply_masks(model: PrunedRandomCNN, index, masks) -> None:
    """Sets S from the RSS masks: S = 0 everywhere (negative entries and unchosen ones), 1 on chosen t."""
    with torch.no_grad():
        for b in model.blocks():
            b.U.weight_mask.zero_()
            if b.U.bias is not None:
                b.U.bias_mask.zero_()
        blocks = model.blocks()
        for (bi, kind, entry, ts, _), mask in zip(index, masks):
            if mask is None or not len(ts):
                continue
            chosen = torch.as_tensor(ts[np.asarray(mask, dtype=bool)], dtype=torch.long)
            b = blocks[bi]
            if kind == "weight":
                l, k, i, j = entry
                b.U.weight_mask[chosen, k, i, j] = 1.0
            else:
                b.U.bias_mask[chosen] = 1.0


def rss_problems(model: PrunedRandomCNN, target: nn.Sequential):
    """One RSS instance per target entry (weights, then bias, per block): candidates are the products
    V[l, ln+t] * U+[ln+t, k, i, j] over the t of block l with U >= 0 (negative entries are pruned first,
    Section 4.2). Returns (problems, index): problems[j] = (candidates float64 (m,), target) or None when
    no t of the block has U >= 0 at that entry; index[j] = (block, 'weight'|'bias', entry tuple, hidden
    channels t used as candidates, target value). Plain arrays: :mod:`pipelines.construct` turns them
    into MILP instances (``models`` stays independent of the solvers)."""

    convs = [m for m in check_target(target) if isinstance(m, nn.Conv2d)]
    n = model.n
    instances, index = [], []
    for bi, (b, K) in enumerate(zip(model.blocks(), convs)):
        W = K.weight.detach().double().cpu().numpy()
        U = b.U.weight_orig.detach().double().cpu().numpy()
        V = b.V.weight_orig.detach().double().cpu().numpy()[:, :, 0, 0]
        for l, k, i, j in np.ndindex(*W.shape):
            ts = np.arange(l * n, (l + 1) * n)
            ts = ts[U[ts, k, i, j] >= 0]
            index.append((bi, "weight", (l, k, i, j), ts, float(W[l, k, i, j])))
            instances.append((V[l, ts] * U[ts, k, i, j], float(W[l, k, i, j])) if ts.size else None)
        if K.bias is not None:
            bU = b.U.bias_orig.detach().double().cpu().numpy()
            bK = K.bias.detach().double().cpu().numpy()
            for l in range(W.shape[0]):
                ts = np.arange(l * n, (l + 1) * n)
                ts = ts[bU[ts] >= 0]
                index.append((bi, "bias", (l,), ts, float(bK[l])))
                instances.append((V[l, ts] * bU[ts], float(bK[l])) if ts.size else None)
    return instances, index
