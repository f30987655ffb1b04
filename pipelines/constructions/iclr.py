"""The ICLR 2022 construction (da Cunha, Natale, Viennot; Lemma 2 / Theorem 1): one RSS per target entry.

Every target convolution K (c1 x c0 x d x d, bias b) becomes the random block U -> ReLU -> V of
:class:`models.random_cnn.RandomBlock` (Section 4.3, proof of Lemma 2) with n hidden channels per
output channel. Masks:

- ``T`` (on V) is fixed a priori to the block-diagonal matrix B_{t,l} = 1[l*n <= t < (l+1)*n] (Section 4.3).
- ``S`` (on U) first prunes every negative entry of U (Section 4.2, Eq. 1: with non-negative inputs the
  ReLU is then the identity), then keeps, for every target entry K[l, k, i, j], the subset of t in
  block l chosen by the RSS instance ``min | K[l,k,i,j] - sum_t a_t V[l, ln+t] U+[ln+t, k, i, j] |``
  (Eq. 2). Biases follow footnote 1: the block's bias is sum_t V[l, ln+t] b_U+[ln+t], the same RSS
  configuration with one more entry per output channel.

With every block input non-negative the pruned block computes exactly the convolution with the
*effective* kernel L[l,k,i,j] = sum_t V[l,ln+t] (U o S)[ln+t,k,i,j] and bias c[l] = sum_t V[l,ln+t]
(b_U o S_b)[ln+t] (Section 4.2, Eq. 2). Theorem 1 needs non-negative inputs at every conv: the first
layer's domain [0, 1] or a ReLU before it.

Target scaling (``scale``; see :mod:`pipelines.constructions.base`): conv i is approximated as
(K_i / lambda_i, b_i / Lambda_i) and the output multiplied by Lambda_l. ``scale="auto"`` picks, layer by
layer, the smallest lambda_i >= 1 that puts every scaled target entry (and bias) inside the range its
candidates can reach, [sum of its negative candidates, sum of its positive candidates]; entries with
no candidate of their sign at all cannot be reached by any lambda and are left out (counted in
``scaling_info``). ``auto`` never scales up (lambda_i >= 1): where everything is reachable it is ``none``.
"""
from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from models.masks import freeze
from models.random_cnn import ConstructionError, PrunedRandomCNN
from models.random_tensors import random_tensor

from ..verify import certified
from .base import (Construction, LayerOptions, Subproblem, check_finite_weights, cumulative,
                   fixed_lambdas, parse_scale, sequential_layers)


def _layers_spec(layers: list[nn.Module]) -> list[dict]:
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


class IclrConstruction(Construction):
    """ICLR 2022 Lemma 2 / Theorem 1: unstructured pruning of U, one RSS per target weight and bias."""

    name = "iclr"
    description = "ICLR 2022 (Lemma 2 / Thm 1): U -> ReLU -> V per conv, one 1-D RSS per target entry"
    #: exactly what the random network reproduces; anything else is refused with the layer and option
    LAYERS = LayerOptions({
        nn.Conv2d: {"groups": (1,), "dilation": ((1, 1),), "padding_mode": ("zeros",), "stride": None,
                    "kernel_size": None, "padding": None, "bias": None},
        nn.ReLU: {"inplace": None},
        nn.MaxPool2d: {"dilation": (1, (1, 1)), "ceil_mode": (False,), "return_indices": (False,),
                       "kernel_size": None, "stride": None, "padding": None},
    })
    RANDOM_TAG = 2022  # rng = default_rng([seed, block, RANDOM_TAG]): the seeds of every committed result

    def __init__(self, target: nn.Sequential, n: int, seed: int = 0, dist: str = "uniform", scale="none"):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConstructionError(f"n: samples per target entry must be a positive integer, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
            raise ConstructionError(f"seed: expected an integer in [0, 2^63), got {seed!r}")
        self.layers = self.check_target(target)
        self.target = target
        self.n, self.seed, self.dist = int(n), int(seed), dist
        self.scale = parse_scale(scale)
        network = PrunedRandomCNN(_layers_spec(self.layers), self.n, construction=self.name).double()
        with torch.no_grad():
            for bi, b in enumerate(network.blocks()):
                rng = np.random.default_rng([self.seed, bi, self.RANDOM_TAG])
                b.U.weight_orig.copy_(torch.from_numpy(random_tensor(b.U.weight_orig.shape, rng, dist)))
                if b.U.bias is not None:
                    b.U.bias_orig.copy_(torch.from_numpy(random_tensor(b.U.bias_orig.shape, rng, dist)))
                b.V.weight_orig.copy_(torch.from_numpy(random_tensor(b.V.weight_orig.shape, rng, dist)))
                T = torch.zeros_like(b.V.weight_mask)
                for l in range(b.V.out_channels):
                    T[l, l * self.n:(l + 1) * self.n] = 1.0  # Section 4.3: B_{1,1,t,l} = 1[(l-1)n' < t <= l n']
                network.set_block_masks(bi, V=T)
        self.network = network
        self.lambdas, self.scaling_info = self._choose_lambdas()
        self._set_output_scale()

    # ------------------------------------------------------------------ target
    @classmethod
    def check_target(cls, target: nn.Module) -> list[nn.Module]:
        """The target's layers, validated: an ``nn.Sequential`` of the layers and options in ``LAYERS``,
        where every convolution sees non-negative inputs (Theorem 1's hypothesis: it is the first
        layer, whose input domain is [0, 1], or it follows a ReLU) and has finite weights."""
        layers = sequential_layers(target, "Conv2d/ReLU/MaxPool2d")
        nonneg = True  # the input domain [0, 1]^{D x D x c0}
        for i, m in enumerate(layers):
            if isinstance(m, nn.Linear):
                raise ConstructionError(
                    f"target[{i}]: nn.Linear is not supported; the ICLR construction covers convolutions. Express it "
                    f"as an nn.Conv2d whose kernel covers its whole input (kernel_size = input size, no padding) or "
                    f"prune only the convolutional part (e.g. model.features)")
            cls.LAYERS.check(i, m, cls.name)
            if isinstance(m, nn.Conv2d):
                if isinstance(m.padding, str):
                    raise ConstructionError(f"target[{i}]: give Conv2d an integer padding, not {m.padding!r}")
                if not nonneg:
                    raise ConstructionError(
                        f"target[{i}]: this Conv2d receives possibly negative inputs (no ReLU before it); the "
                        f"construction needs non-negative inputs to bypass the ReLU of each random block (Section "
                        f"2.1, Limitations). Put a ReLU before it")
                check_finite_weights(i, m)
                nonneg = False
            elif isinstance(m, nn.ReLU):
                nonneg = True
            # MaxPool2d keeps non-negativity as it is
        return layers

    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.layers if isinstance(m, nn.Conv2d)]

    # ------------------------------------------------------------------ candidates and scaling
    def _candidates(self, bi: int):
        """Per block: (W, bK, per-entry hidden channels ts, candidate products) in float64 numpy.
        Candidates of entry (l, k, i, j): V[l, t] * U[t, k, i, j] for t in block l with U >= 0."""
        b, K = self.network.blocks()[bi], self.convs()[bi]
        n = self.n
        W = K.weight.detach().double().cpu().numpy()
        U = b.U.weight_orig.detach().double().cpu().numpy()
        V = b.V.weight_orig.detach().double().cpu().numpy()[:, :, 0, 0]
        out = []
        for l, k, i, j in np.ndindex(*W.shape):
            ts = np.arange(l * n, (l + 1) * n)
            ts = ts[U[ts, k, i, j] >= 0]
            out.append(("weight", (l, k, i, j), ts, V[l, ts] * U[ts, k, i, j], float(W[l, k, i, j])))
        if K.bias is not None:
            bU = b.U.bias_orig.detach().double().cpu().numpy()
            bK = K.bias.detach().double().cpu().numpy()
            for l in range(W.shape[0]):
                ts = np.arange(l * n, (l + 1) * n)
                ts = ts[bU[ts] >= 0]
                out.append(("bias", (l,), ts, V[l, ts] * bU[ts], float(bK[l])))
        return out

    def _choose_lambdas(self):
        convs = self.convs()
        fixed = fixed_lambdas(self.scale, len(convs))
        if fixed is not None:
            return fixed
        lambdas, unreachable, cum = [], [], 1.0
        for bi in range(len(convs)):
            need, skipped = 1.0, 0
            for kind, _, _, cand, w in self._candidates(bi):
                if w == 0.0:
                    continue
                reach = cand[cand > 0].sum() if w > 0 else -cand[cand < 0].sum()
                if reach <= 0:
                    skipped += 1
                    continue
                ratio = abs(w) / reach / (cum if kind == "bias" else 1.0)  # bias: b / (Lambda_{i-1} lambda_i)
                need = max(need, ratio)
            lambdas.append(float(need))
            unreachable.append(skipped)
            cum *= need
        return lambdas, {"mode": "auto", "unreachable_entries": unreachable,
                         "rule": "smallest lambda_i >= 1 with every scaled entry in [sum of negative, sum of positive "
                                 "candidates]"}

    # ------------------------------------------------------------------ subproblems and masks
    def subproblems(self) -> list[Subproblem]:
        """One RSS per target weight then bias, block by block, on the *scaled* target values."""
        import milp

        out = []
        for bi, (lam, cum) in enumerate(zip(self.lambdas, cumulative(self.lambdas))):
            for kind, entry, ts, cand, w in self._candidates(bi):
                z = w / (lam if kind == "weight" else cum)
                inst = milp.Instance(cand, z) if ts.size else None
                out.append(Subproblem(instance=inst, layer=bi, kind=kind, entry=entry, units=ts, target=z))
        return out

    def apply(self, solutions, subproblems: list[Subproblem] | None = None) -> None:
        """Sets S from the RSS masks: 0 everywhere (negative entries and unchosen ones), 1 on chosen t.
        ``solutions[j]`` belongs to ``subproblems[j]``; None (or not found) keeps no channel (value 0)."""
        subs = subproblems if subproblems is not None else self.subproblems()
        if len(solutions) != len(subs):
            raise ValueError(f"apply: {len(solutions)} solutions for {len(subs)} subproblems")
        S = [torch.zeros_like(b.U.weight_mask) for b in self.network.blocks()]
        Sb = [torch.zeros_like(b.U.bias_mask) if b.U.bias is not None else None for b in self.network.blocks()]
        for sp, sol in zip(subs, solutions):
            if sol is None or sp.instance is None or not getattr(sol, "found", False):
                continue
            chosen = torch.as_tensor(sp.units[np.asarray(sol.mask, dtype=bool)], dtype=torch.long)
            if sp.kind == "weight":
                l, k, i, j = sp.entry
                S[sp.layer][chosen, k, i, j] = 1.0
            else:
                Sb[sp.layer][chosen] = 1.0
        for bi in range(len(S)):
            self.network.set_block_masks(bi, U=S[bi], U_bias=Sb[bi])

    # ------------------------------------------------------------------ views and certificate
    def effective_weights(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per conv, what the pruned network computes in its place, in the target's units:
        (lambda_i L_i, Lambda_i c_i) with (L_i, c_i) the block products (Eq. 2)."""
        out = []
        for (L, c), lam, cum in zip(self.network.block_products(), self.lambdas, cumulative(self.lambdas)):
            out.append((L * lam, None if c is None else c * cum))
        return out

    def effective(self) -> nn.Sequential:
        """The target's architecture with every conv replaced by its effective kernel and bias: an
        independent computation of the pruned network (valid because every block input is >= 0, and
        by positive homogeneity for the scaling)."""
        import copy

        net = copy.deepcopy(self.target).double()
        eff = iter(self.effective_weights())
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.Conv2d):
                    L, c = next(eff)
                    m.weight.copy_(L)
                    if m.bias is not None:
                        m.bias.copy_(c)
        return freeze(net).eval()

    def certify(self, input_bound: float = 1.0) -> dict:
        """Certified sup-norm bound over [0, input_bound]^{...} (Appendix A-B; see
        :func:`pipelines.verify.certified`) on the effective weights in the target's units, so the
        scaling factors are accounted for exactly."""
        cert = certified(self.layers, self.effective_weights(), input_bound)
        cert["lambdas"] = list(self.lambdas)
        return cert

    @classmethod
    def attach(cls, target: nn.Sequential, network: PrunedRandomCNN) -> "IclrConstruction":
        """The construction around a pruned network read from a file (masks, random values and scales as
        saved); refuses a network that was not built for this target."""
        layers = cls.check_target(target)
        if not isinstance(network, PrunedRandomCNN) or network.construction != cls.name:
            raise ConstructionError(f"pruned network: built by construction {getattr(network, 'construction', '?')!r}, "
                                    f"not {cls.name!r}")
        if json.loads(json.dumps(network.layers_spec)) != json.loads(json.dumps(_layers_spec(layers))):
            raise ConstructionError("pruned network: its layers do not match the target's (another architecture "
                                    "or other layer options); pass the target it was pruned for")
        self = cls.__new__(cls)
        self.layers, self.target, self.network = layers, target, network
        self.n, self.seed, self.dist = network.n, None, None
        self.lambdas = list(network.scales)
        self.scale = "fixed"
        self.scaling_info = {"mode": "from file"}
        return self
