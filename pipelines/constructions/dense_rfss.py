"""Fixed-density tickets for dense layers (RFSS) and the whole pruned random network (conv part + dense head).

Paper: "On the Sparsity of the Strong Lottery Ticket Hypothesis" (arXiv 2410.14754; summary in
``shared/papers/sparsity-slth-rfss-summary.md``): the Random Fixed-Size Subset Sum problem (RFSS, every
subset has exactly k of its n samples) gives strong tickets of uniform density k/n for dense networks
(its Section 4, dense networks, following Pensia et al. 2020 and Malach et al. 2020).

Dense layers. Every target ``nn.Linear`` W (m_out x m_in, bias b) becomes the random block of
:mod:`models.random_dense`: a fan-out with n hidden neurons per input (hidden (i, t) = relu(u[i,t] x_i),
u >= 0: the positive half, the input being non-negative), n bias neurons relu(beta[t]) (the bias as one
more input fixed to 1, as in Pensia et al.), then a random V (m_out x hidden). Each target weight W[j, i]
is approximated by the subset sum of its n products V[j, i n + t] u[i, t] (t < n), each bias b[j] by
the subset sum of V[j, H + t] beta[t]: one instance per target entry, the choice is the mask of V.
With ``k`` (an integer 1 <= k <= n) every instance carries the cardinality row sum_t a_t = k (RFSS), so
the mask of V has exactly k ones in each group of n: its density is exactly k/n in every block (the
paper's uniform density; kept parameters of a block: k (m_in + 1) m_out entries of V plus the fan-out
entries of live neurons). ``k=None`` gives plain RSS (free subset size). The pruned block computes, for
x >= 0, x -> L x + c with L[j, i], c[j] the subset sums (the *effective* weights). A dense layer whose
input may be negative (no ReLU before it; the first layer's domain is [0, 1]) gets both halves of the
block (x = relu(x) - relu(-x)): n more neurons per input computing w[i, t] relu(-x_i), and a second
instance per weight, the subset of V[j, m_in n + i n + t] w[i, t] approximating -W[j, i]; the block then
computes x -> L+ relu(x) + L- relu(-x) + c (:class:`models.random_dense.SignSplitLinear`), exactly k of
n kept in each of the two groups.

Convolutional part. A target may start with the convolutional layers of a CNN (Conv2d / ReLU /
MaxPool2d), then ``nn.Flatten`` and the dense head (the whole LeNet5: ``nn.Sequential(*model.features,
*model.classifier)``). The conv part is built by ``conv``: ``"iclr"`` (default), the ICLR 2022
construction (:class:`IclrConstruction`, plain RSS, ``n_conv`` samples per entry, default n, random
values of ``dist``), or ``"structured"``, Theorem 3 of NeurIPS 2023 (:class:`StructuredConstruction`: V
1x1 -> ReLU -> U per conv, filter removal by one MRSS per input channel and half-block, ``n_conv``
channels per half-block; its own options ``conv_domain`` (default auto), ``conv_blocks`` (default channel),
``conv_k`` (default free size) and ``conv_dist`` (default normal, Theorem 3's), its own seeds
``[seed, block, 2023]``). The head is the dense construction above. One pruned random network
(:class:`models.random_dense.PrunedRandomNet`), one list of subproblems (conv part first), one certificate:
:func:`pipelines.verify.certified` over conv and dense layers together, the conv part entering with its own
effective kernels in the target's units (a structured block whose input may be negative as the sign-split
pair (L+, L-), the same inequality as :func:`pipelines.constructions.structured.certified_split`), so the
error bound e, ||x|| and ||x~|| leaving the conv part are what the head's propagation starts from.

Scaling (:mod:`pipelines.constructions.base`): the conv part scales as the ICLR construction does; the head
approximates (W_d / lambda_d, b_d / Lambda_d) with its own cumulative products and multiplies its output by
Lambda_head. ``auto``: per dense layer the smallest lambda_d >= 1 putting every scaled entry inside what its
subsets can reach (k-subsets: between the sum of the k smallest and of the k largest products).
"""
from __future__ import annotations

import copy
import json
import numbers

import numpy as np
import torch
from torch import nn

from models.masks import freeze
from models.random_cnn import ConstructionError
from models.random_dense import PrunedRandomNet, SignSplitLinear
from models.structured_cnn import SignSplitConv2d
from models.random_tensors import random_tensor

from ..verify import certified
from .base import (Construction, LayerOptions, Subproblem, check_finite_weights, cumulative,
                   fixed_lambdas, parse_scale, sequential_layers)
from .iclr import IclrConstruction, _layers_spec
from .structured import StructuredConstruction

CONV_CONSTRUCTIONS = ("iclr", "structured")


def check_k(k, n: int):
    """``None`` or an integer 1 <= k <= n; anything else is one clear line."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        if isinstance(k, float) and k.is_integer():
            k = int(k)
        else:
            raise ConstructionError(f"k: the subset size must be an integer 1 <= k <= n = {n} (or none for free "
                                    f"size), got {k!r:.40}")
    if not 1 <= int(k) <= n:
        raise ConstructionError(f"k: the subset size must satisfy 1 <= k <= n = {n}, got {int(k)}; choose k in "
                                f"1..{n} (density k/n) or none")
    return int(k)


def _dense_layers_spec(head: list[nn.Module]) -> list[dict]:
    out = []
    for m in head:
        if isinstance(m, nn.Flatten):
            out.append({"type": "flatten"})
        elif isinstance(m, nn.ReLU):
            out.append({"type": "relu"})
        else:
            out.append({"type": "dense", "m_in": m.in_features, "m_out": m.out_features, "bias": m.bias is not None,
                        "signed": False})
    return out


def _signed_flags(layers: list[nn.Module]) -> list[bool]:
    """Per Linear of ``layers`` (a whole validated target): whether its input may be negative."""
    flags, nonneg = [], True
    for m in layers:
        if isinstance(m, nn.Linear):
            flags.append(not nonneg)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nonneg = False
        elif isinstance(m, nn.ReLU):
            nonneg = True
    return flags


class RfssConstruction(Construction):
    """Dense layers by fixed-size (RFSS) or free (RSS) subsets of a two-layer random block; conv part by ICLR
    or by the structured construction (Theorem 3)."""

    name = "rfss"
    description = ("arXiv 2410.14754: dense layers by a fan-out/V random block, one RFSS (exactly k of n, uniform "
                   "density k/n) or RSS (k none) per weight; conv part by ICLR 2022 or structured (Thm 3)")
    LAYERS = LayerOptions({**IclrConstruction.LAYERS.allowed,
                           nn.Flatten: {"start_dim": (1,), "end_dim": (-1,)},
                           nn.Linear: {}})
    WHOLE_NETWORK = True
    RANDOM_TAG = 2410  # rng = default_rng([seed, dense block, RANDOM_TAG])

    def __init__(self, target: nn.Sequential, n: int, seed: int = 0, dist: str = "uniform", scale="none",
                 k=None, conv: str = "iclr", n_conv: int | None = None, conv_domain: str = "auto",
                 conv_blocks: str = "channel", conv_k: int | None = None, conv_dist: str | None = None):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConstructionError(f"n: samples per target entry must be a positive integer, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
            raise ConstructionError(f"seed: expected an integer in [0, 2^63), got {seed!r}")
        self.k = check_k(k, int(n))
        if conv not in CONV_CONSTRUCTIONS:
            raise ConstructionError(f"conv: the conv part of the rfss construction is built by "
                                    f"{' or '.join(CONV_CONSTRUCTIONS)}, got {conv!r:.40}")
        self.conv_layers, self.head_layers = self.check_target(target, conv, conv_domain)
        self.layers = self.conv_layers + self.head_layers
        self.target = target
        self.n, self.seed, self.dist = int(n), int(seed), dist
        self.n_conv = int(n_conv) if n_conv is not None else self.n
        self.scale = parse_scale(scale)
        self.conv = conv
        self.conv_part = None
        if self.conv_layers and conv == "structured":
            self.conv_part = StructuredConstruction(nn.Sequential(*self.conv_layers), self.n_conv, seed=self.seed,
                                                    dist=conv_dist or "normal", scale=scale, domain=conv_domain,
                                                    k=conv_k, blocks=conv_blocks)
        elif self.conv_layers:
            self.conv_part = IclrConstruction(nn.Sequential(*self.conv_layers), self.n_conv, seed=self.seed,
                                              dist=conv_dist or dist, scale=scale)
        conv_spec = None
        if self.conv_part is not None:
            conv_spec = {"spec": _layers_spec(self.conv_layers), "n": self.n_conv,
                         "scales": list(self.conv_part.lambdas), "construction": conv}
            if conv == "structured":
                conv_spec.update(domain=self.conv_part.domain, domains=list(self.conv_part.domains),
                                 blocks=self.conv_part.blocks)
        dense = {"layers": self._head_spec(self.conv_layers, self.head_layers), "n": self.n, "k": self.k,
                 "scales": [1.0] * len(self.linears())}
        network = PrunedRandomNet(conv_spec, dense, construction=self.name).double()
        if self.conv_part is not None:  # the conv part's random values, a-priori masks, biases and output scale
            network.conv.load_state_dict(self.conv_part.network.state_dict())
            self.conv_part.network = network.conv
        with torch.no_grad():
            for bi, b in enumerate(network.blocks()):
                rng = np.random.default_rng([self.seed, bi, self.RANDOM_TAG])
                b.U.weight.copy_(torch.from_numpy(np.abs(random_tensor(b.U.weight.shape, rng, dist))))
                if b.U.bias is not None:
                    b.U.bias.copy_(torch.from_numpy(np.abs(random_tensor(b.U.bias.shape, rng, dist))))
                b.V.weight_orig.copy_(torch.from_numpy(random_tensor(b.V.weight_orig.shape, rng, dist)))
                if b.U.weight_neg is not None:  # drawn last: the positive-only blocks keep their values
                    b.U.weight_neg.copy_(torch.from_numpy(np.abs(random_tensor(b.U.weight_neg.shape, rng, dist))))
        self.network = network
        self.dense_lambdas, self.dense_scaling = self._choose_lambdas()
        network.dense_spec["scales"] = list(self.dense_lambdas)
        with torch.no_grad():
            network.output_scale.value.fill_(float(np.prod(self.dense_lambdas)) if self.dense_lambdas else 1.0)

    # ------------------------------------------------------------------ target
    @classmethod
    def check_target(cls, target: nn.Module, conv: str = "iclr",
                     conv_domain: str = "auto") -> tuple[list[nn.Module], list[nn.Module]]:
        """(conv part, head) of a validated target: ``nn.Sequential`` of Conv2d / ReLU / MaxPool2d layers (checked
        by the conv part's construction, ``conv``: ICLR, or structured on ``conv_domain``), then optionally
        Flatten and Linear / ReLU layers with finite weights."""
        layers = sequential_layers(target, "Conv2d/ReLU/MaxPool2d/Flatten/Linear", hint="")
        split = next((i for i, m in enumerate(layers) if isinstance(m, (nn.Flatten, nn.Linear))), len(layers))
        conv_layers, head = layers[:split], layers[split:]
        for i, m in enumerate(layers):
            cls.LAYERS.check(i, m, cls.name)
            if i >= split and not isinstance(m, (nn.Flatten, nn.Linear, nn.ReLU)):
                raise ConstructionError(f"target[{i}]: {type(m).__name__} after the dense head started is not supported "
                                        f"by the {cls.name} construction (conv part first, then Flatten and Linear/ReLU)")
            if isinstance(m, nn.Flatten) and i != split:
                raise ConstructionError(f"target[{i}]: Flatten is supported only where the dense head starts")
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                check_finite_weights(i, m)
        if conv_layers and head and not isinstance(head[0], nn.Flatten):
            raise ConstructionError(f"target[{split}]: put an nn.Flatten between the convolutions and the first Linear")
        if conv_layers and conv == "structured":
            StructuredConstruction.check_target(nn.Sequential(*conv_layers), conv_domain)
        elif conv_layers:
            IclrConstruction.check_target(nn.Sequential(*conv_layers))
        return conv_layers, head

    @property
    def iclr(self):
        """The conv part when it is the ICLR construction (else None)."""
        return self.conv_part if isinstance(self.conv_part, IclrConstruction) else None

    @staticmethod
    def _head_spec(conv: list[nn.Module], head: list[nn.Module]) -> list[dict]:
        spec, flags = _dense_layers_spec(head), iter(_signed_flags(conv + head))
        for layer in spec:
            if layer["type"] == "dense":
                layer["signed"] = next(flags)
        return spec

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.head_layers if isinstance(m, nn.Linear)]

    @property
    def lambdas(self) -> list[float]:
        return (list(self.conv_part.lambdas) if self.conv_part is not None else []) + list(self.dense_lambdas)

    @property
    def scaling_info(self) -> dict:
        return {"conv": dict(self.conv_part.scaling_info) if self.conv_part is not None else None,
                "dense": self.dense_scaling}

    def conv_blocks(self) -> int:
        return len(self.conv_part.convs()) if self.conv_part is not None else 0

    # ------------------------------------------------------------------ candidates and scaling
    def _candidates(self, di: int):
        """Dense block ``di``: (W, b, cand_w (m_out x m_in x n), cand_b (m_out x n) or None, cand_neg (m_out x m_in
        x n, the negative half's products, or None)), float64 numpy."""
        b, lin = self.network.blocks()[di], self.linears()[di]
        n, m_in, off = self.n, lin.in_features, b.U.bias_offset
        V = b.V.weight_orig.detach().double().cpu().numpy()
        u = b.U.weight.detach().double().cpu().numpy()
        W = lin.weight.detach().double().cpu().numpy()
        cw = V[:, :m_in * n].reshape(lin.out_features, m_in, n) * u[None]
        cn = None
        if b.U.weight_neg is not None:
            w = b.U.weight_neg.detach().double().cpu().numpy()
            cn = V[:, m_in * n:off].reshape(lin.out_features, m_in, n) * w[None]
        if lin.bias is None:
            return W, None, cw, None, cn
        beta = b.U.bias.detach().double().cpu().numpy()
        return W, lin.bias.detach().double().cpu().numpy(), cw, V[:, off:] * beta[None], cn

    def _reach(self, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per group (last axis): the lowest and highest subset sum (k-subsets with k, any subset without)."""
        if self.k is None:
            return np.where(cand < 0, cand, 0).sum(-1), np.where(cand > 0, cand, 0).sum(-1)
        s = np.sort(cand, axis=-1)
        return s[..., :self.k].sum(-1), s[..., -self.k:].sum(-1)

    def _choose_lambdas(self):
        count = len(self.linears())
        fixed = fixed_lambdas(self.scale, count)
        if fixed is not None:
            return fixed
        lambdas, unreachable, cum = [], [], 1.0
        for di in range(count):
            W, bias, cw, cb, cn = self._candidates(di)
            need, skipped = 1.0, 0
            for w, cand, div in ((W, cw, 1.0), (bias, cb, cum), (None if cn is None else -W, cn, 1.0)):
                if w is None:
                    continue
                lo, hi = self._reach(cand)
                reach = np.where(w > 0, hi, -lo)
                ok = (w != 0) & (reach > 0)
                skipped += int(((w != 0) & (reach <= 0)).sum())
                if ok.any():
                    need = max(need, float((np.abs(w[ok]) / reach[ok]).max()) / div)
            lambdas.append(need)
            unreachable.append(skipped)
            cum *= need
        return lambdas, {"mode": "auto", "unreachable_entries": unreachable,
                         "rule": "smallest lambda_d >= 1 with every scaled entry within its subsets' reach"}

    # ------------------------------------------------------------------ subproblems and masks
    def subproblems(self) -> list[Subproblem]:
        """The conv part's subproblems (ICLR: one RSS per conv entry; structured: one MRSS per input channel and
        half-block), then per dense block one instance per target weight (row-major,
        entry (j, i)), for a signed block one more per weight (kind ``weight-``: the negative half, target
        -W[j, i]), then one per bias (entry (j,)); RFSS with cardinality k, RSS without."""
        import milp

        out = list(self.conv_part.subproblems()) if self.conv_part is not None else []
        nc, n = self.conv_blocks(), self.n
        for di, (lam, cum) in enumerate(zip(self.dense_lambdas, cumulative(self.dense_lambdas))):
            W, bias, cw, cb, cn = self._candidates(di)
            m_out, m_in = W.shape
            for j in range(m_out):
                for i in range(m_in):
                    z = float(W[j, i]) / lam
                    out.append(Subproblem(instance=milp.Instance(cw[j, i], z, cardinality=self.k), layer=nc + di,
                                          kind="weight", entry=(j, i), units=np.arange(i * n, (i + 1) * n), target=z))
            if cn is not None:
                for j in range(m_out):
                    for i in range(m_in):
                        z = -float(W[j, i]) / lam
                        units = np.arange((m_in + i) * n, (m_in + i + 1) * n)
                        out.append(Subproblem(instance=milp.Instance(cn[j, i], z, cardinality=self.k), layer=nc + di,
                                              kind="weight-", entry=(j, i), units=units, target=z))
            if bias is not None:
                off = self.network.blocks()[di].U.bias_offset
                units = np.arange(off, off + n)
                for j in range(m_out):
                    z = float(bias[j]) / cum
                    out.append(Subproblem(instance=milp.Instance(cb[j], z, cardinality=self.k), layer=nc + di,
                                          kind="bias", entry=(j,), units=units, target=z))
        return out

    def apply(self, solutions, subproblems: list[Subproblem] | None = None) -> None:
        """Conv part: its own construction's masks. Dense block: V's mask is 1 exactly on the chosen (j, unit) pairs (k per
        group with RFSS); an unsolved instance keeps nothing in its group (value 0)."""
        subs = subproblems if subproblems is not None else self.subproblems()
        if len(solutions) != len(subs):
            raise ValueError(f"apply: {len(solutions)} solutions for {len(subs)} subproblems")
        nc = self.conv_blocks()
        conv = [(sp, s) for sp, s in zip(subs, solutions) if sp.layer < nc]
        if self.conv_part is not None:
            self.conv_part.apply([s for _, s in conv], [sp for sp, _ in conv])
        masks = [torch.zeros_like(b.V.weight_mask) for b in self.network.blocks()]
        for sp, sol in zip(subs, solutions):
            if sp.layer < nc or sol is None or sp.instance is None or not getattr(sol, "found", False):
                continue
            chosen = torch.as_tensor(sp.units[np.asarray(sol.mask, dtype=bool)], dtype=torch.long)
            masks[sp.layer - nc][sp.entry[0], chosen] = 1.0
        for di, m in enumerate(masks):
            self.network.set_block_mask(di, m)

    # ------------------------------------------------------------------ views and certificate
    def effective_weights(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per weighted layer (convs, then linears), what the pruned network computes in its place, in the
        target's units: the conv part's effective kernels (ICLR: (lambda L, Lambda c); structured: (lambda L+,
        Lambda c) for a nonnegative block, ((lambda L+, lambda L-), Lambda c) for a signed one), and
        (lambda_d L_d, Lambda_d c_d) per dense block (signed: ((L+, L-), c))."""
        out = self._conv_effective()
        for (L, c), lam, cum in zip(self.network.block_products(), self.dense_lambdas, cumulative(self.dense_lambdas)):
            L = (L[0] * lam, L[1] * lam) if isinstance(L, tuple) else L * lam  # signed: (L+, L-)
            out.append((L, None if c is None else c * cum))
        return out

    def _conv_effective(self) -> list:
        if self.conv_part is None:
            return []
        if isinstance(self.conv_part, StructuredConstruction):
            return [(Lp if Lm is None else (Lp, Lm), c) for Lp, Lm, c in self.conv_part.effective_kernels()]
        return list(self.conv_part.effective_weights())

    def effective(self) -> nn.Sequential:
        """The target's architecture with every conv and linear replaced by its effective weights: an independent
        computation of the pruned network (valid because every block input is >= 0)."""
        net = copy.deepcopy(self.target).double()
        eff = iter(self.effective_weights())
        with torch.no_grad():
            for pos, m in enumerate(net):
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    L, c = next(eff)
                    if isinstance(L, tuple):  # a signed block: x -> L+ relu(x) + L- relu(-x) + c
                        net[pos] = (SignSplitLinear(L[0], L[1], c) if isinstance(m, nn.Linear)
                                    else SignSplitConv2d(L[0], L[1], c, m.stride, m.padding))
                        continue
                    m.weight.copy_(L)
                    if m.bias is not None:
                        m.bias.copy_(c)
        return freeze(net).eval()

    def densities(self) -> list[dict]:
        """Per random block: which layer, the density of its pruned layer (ICLR conv: U's mask; structured conv:
        V's mask, i.e. the share of its possible filter entries kept; dense: V's mask, exactly k/n with RFSS) and
        the kept share of all its random parameters."""
        out = []
        if self.conv_part is not None:
            which = "V" if isinstance(self.conv_part, StructuredConstruction) else "U"
            for bi, b in enumerate(self.network.conv.blocks()):
                out.append({"block": bi, "kind": "conv",
                            "mask_density": float(getattr(b, which).weight_mask.double().mean())})
        counts = self.network.parameter_counts()["dense_layers"]
        for di, (b, c) in enumerate(zip(self.network.blocks(), counts)):
            out.append({"block": self.conv_blocks() + di, "kind": "dense", "mask_density": b.density(),
                        "kept_share": c["kept"] / c["random"], "k_over_n": None if self.k is None else self.k / self.n})
        return out

    def certify(self, input_bound: float = 1.0) -> dict:
        """Certified sup-norm bound over [0, input_bound]^{...} (:func:`pipelines.verify.certified`: the ICLR
        Appendix B propagation, with ||W_j - L_j||_1 per output row for the dense layers, Flatten and ReLU
        1-Lipschitz) on the effective weights in the target's units, conv part and head in one pass (a signed
        layer, conv or dense, with the sign-split norms). For a structured conv part with only nonnegative
        blocks this is, up to the conv layers, exactly :meth:`StructuredConstruction.certify`; with signed
        blocks its :func:`certified_split` (the same formulas)."""
        cert = certified(self.layers, self.effective_weights(), input_bound)
        cert["lambdas"] = list(self.lambdas)
        return cert

    @classmethod
    def attach(cls, target: nn.Sequential, network: PrunedRandomNet) -> "RfssConstruction":
        """The construction around a pruned network read from a file; refuses one built for another target."""
        if not isinstance(network, PrunedRandomNet) or network.construction != cls.name:
            raise ConstructionError(f"pruned network: built by construction {getattr(network, 'construction', '?')!r}, "
                                    f"not {cls.name!r}")
        kind = network.conv_spec.get("construction", "iclr") if network.conv_spec else "iclr"
        conv, head = cls.check_target(target, kind, network.conv_spec.get("domain", "auto") if network.conv_spec
                                      else "auto")
        want_conv = _layers_spec(conv) if conv else None
        have_conv = network.conv_spec["spec"] if network.conv_spec else None
        if (json.loads(json.dumps(want_conv)) != json.loads(json.dumps(have_conv))
                or cls._head_spec(conv, head) != network.dense_spec["layers"]):
            raise ConstructionError("pruned network: its layers do not match the target's (another architecture "
                                    "or other layer options); pass the target it was pruned for")
        self = cls.__new__(cls)
        self.conv_layers, self.head_layers = conv, head
        self.layers, self.target, self.network = conv + head, target, network
        self.n, self.k, self.seed, self.dist = network.n, network.k, None, None
        self.n_conv = network.conv_spec["n"] if network.conv_spec else None
        self.scale = "fixed"
        self.conv = network.conv_spec.get("construction", "iclr") if network.conv_spec else None
        part = StructuredConstruction if self.conv == "structured" else IclrConstruction
        self.conv_part = part.attach(nn.Sequential(*conv), network.conv) if conv else None
        self.dense_lambdas = list(network.scales)
        self.dense_scaling = {"mode": "from file"}
        return self
