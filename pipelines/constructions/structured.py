"""The NeurIPS 2023 structured construction (da Cunha, d'Amore, Natale; Theorem 3, Lemmas 11-12): filter
removal decided by one multidimensional random subset sum (MRSS) per input channel and half-block.

Random network (Theorem 3; :mod:`models.structured_cnn`). Every target conv K (c1 x c0 x d x d) becomes
V ~ N (1 x 1, c0 -> 2 c0 n) -> ReLU -> U ~ N (d x d, 2 c0 n -> c1, stride and padding of K), drawn from
``np.random.default_rng([seed, block, 2023])``, V first, then U. The mask of V starts as Eq. 21: the
2n-channel-blocked mask of Definition 2 (hidden channel k belongs to input channel t = k // 2n) keeping,
in t's block, the positive entries of V in the first n channels (positive half-block) and the negative
ones in the second n (negative half-block). Each hidden channel then has exactly one possible entry, so
zeroing a wrong-signed entry *is* removing that filter; U's mask keeps the input channels of the
surviving filters.

Filter removal by MRSS (proof of Lemma 12). For each input channel t0 (``kind="filter+"``): candidates
U[:, k] * V+[k, t0] (flattened to c1 d d coordinates) for k in t0's positive half-block with V > 0 (the
set I_+^(t0)), target K[:, t0] (scaled, see below), in max norm. For the negative half-block
(``kind="filter-"``): candidates U[:, k] * V-[k, t0] (V- = -V > 0) with target -K[:, t0]: the block
computes conv(x+, L+) + conv(x-, L-) (Lemma 11, Eq. 23-24) and x = x+ - x-, so L+ must approach K and
L- must approach -K. Every unselected filter is removed: its V entry (output channel of V) and its
input channel of U. ``k``: subsets of exactly k vectors (the cardinality row; Theorem 5 / Corollary 19),
clamped to the number of candidates of an instance that has fewer.

Blocks per channel pair (``blocks="pair"``; beyond the paper, experiment (c) of issue 12). Every
(input channel t, output channel j) gets its own 2n-block of hidden channels, and a hidden channel of
pair (t, j) feeds output channel j only (U is a grouped convolution, ``groups=c1``;
:class:`models.structured_cnn.StructuredBlock`). The proof of Lemma 12 goes through per pair: the block
computes L+[j, t] = sum_k U[j, k] V+[k, t] over the pair's channels, so each MRSS (``pair+`` /
``pair-``, entry (t, j)) has candidates U[j, k] * V+[k, t] of dimension d d (25 for LeNet5) instead of
c1 d d, and target K[j, t]. Still filter removal (unselected channels leave V and U); H = 2 c0 c1 n
hidden channels instead of 2 c0 n.

Input domains (``domain``). Theorem 3 is stated on [-1, 1] inputs, where both half-blocks are needed.

- ``signed``: input domain [-1, 1]^{...}; every block keeps both half-blocks (Theorem 3 verbatim). A
  signed block computes conv(x+, L+) + conv(x-, L-) + b exactly for *every* real input (Lemma 11).
- ``nonnegative``: input domain [0, 1]^{...}; every block keeps only its positive half-block (X- = 0 in
  Lemma 11: the negative half-block sees only zeros, it is removed and no instance is solved for it).
  Every conv must see non-negative inputs (the first conv, or after a ReLU; max-pooling keeps the sign);
  another target is refused.
- ``auto`` (default): input domain [0, 1]^{...}; per block, ``nonnegative`` where its input is known
  non-negative (the first conv, after a ReLU / max-pool of a ReLU), ``signed`` elsewhere (a conv
  directly after a conv).

A nonnegative block computes conv(x+, L+) + b for every input (its negative half-block is empty), which
is conv(x, L+) + b on x >= 0. With the same seed, n, solver and scale factors (``none`` or a fixed
scale; ``auto`` may choose other lambdas per domain), a ``nonnegative`` / ``auto`` network and the
``signed`` one share the random weights and the positive-half instances, hence the same selections,
and compute the same function on non-negative inputs (the signed one's negative half-blocks output 0).

Biases. Theorem 3 has none. A target bias b_i is carried exactly by U's own bias, set to b_i / Lambda_i
(a frozen, non-random parameter: the block computes U * relu(V * x) + b_U), and reported as kept *target*
parameters (``parameter_counts()["target_bias"]``), apart from the random ones. The effective bias in
the target's units is Lambda_i (b_i / Lambda_i) = b_i up to one float64 rounding, and the certificate
carries |b_i - c_i| anyway.

Target scaling (``scale``; :mod:`pipelines.constructions.base`): conv i is approximated as
(K_i / lambda_i, b_i / Lambda_i) and the output multiplied by Lambda_l. ``auto``: per layer the
smallest lambda_i >= 1 putting every coordinate of every scaled target vector inside what its
instance's candidates can reach in that coordinate, [sum of negative, sum of positive] (a necessary
condition for a vector target; coordinates with no candidate of their sign are left out and counted).

Certificate (:meth:`StructuredConstruction.certify`): the Appendix B propagation of
:func:`pipelines.verify.certified`, valid on the declared input domain ([0, B] for ``auto`` /
``nonnegative``, [-B, B] for ``signed``: only max norms enter). Without signed blocks it *is*
:func:`pipelines.verify.certified` on (lambda_i L+_i, Lambda_i c_i). With signed blocks, Proposition 1
per output channel on the two-part kernel: K*x - (L+*x+ + L-*x-) = (K - L+)*x+ - (K + L-)*x-, and at
each input coordinate at most one of x+, x- is non-zero, so the error of one output is at most
sum_j max(|K - L+|_j, |K + L-|_j) ||x||_max: the last step of the proof of Lemma 12 with a max in
place of its sum (:func:`certified_split`).
"""
from __future__ import annotations

import copy
import json

import numpy as np
import torch
from torch import nn

from models.masks import freeze
from models.random_cnn import ConstructionError
from models.random_tensors import DISTRIBUTIONS, random_tensor
from models.structured_cnn import BLOCKINGS, SignSplitConv2d, StructuredRandomCNN

from ..verify import certified
from .base import (Construction, LayerOptions, Subproblem, check_finite_weights, cumulative,
                   fixed_lambdas, parse_scale, sequential_layers, solve_subproblems)
from .iclr import _layers_spec

DOMAINS = ("signed", "nonnegative", "auto")


def block_domains(layers: list[nn.Module], domain: str) -> list[str]:
    """Per conv of ``layers``: ``"signed"`` or ``"nonnegative"`` under the declared ``domain`` (module
    docstring). Refuses ``nonnegative`` for a conv whose input may be negative."""
    if domain not in DOMAINS:
        raise ConstructionError(f"domain: expected one of {', '.join(DOMAINS)}, got {domain!r}")
    out, nonneg = [], domain != "signed"  # the network's input: [0, 1] (auto, nonnegative) or [-1, 1]
    for i, m in enumerate(layers):
        if isinstance(m, nn.Conv2d):
            if domain == "signed" or not nonneg:
                if domain == "nonnegative":
                    raise ConstructionError(
                        f"target[{i}]: this Conv2d receives possibly negative inputs (no ReLU before it), but the "
                        f"domain is nonnegative (one half-block per input channel, Lemma 11 with X- = 0); use "
                        f"domain auto or signed, or put a ReLU before it")
                out.append("signed")
            else:
                out.append("nonnegative")
            nonneg = False
        elif isinstance(m, nn.ReLU):
            nonneg = True
    return out


def _channel_l1(W: torch.Tensor) -> torch.Tensor:
    return W.abs().flatten(1).sum(1)


def certified_split(layers, kernels, input_bound: float = 1.0) -> dict:
    """Upper bound on sup ||f(X) - g(X)||_max over ||X||_max <= input_bound, for blocks computing
    conv(x+, L+) + conv(x-, L-) + c (``kernels``: per conv (L+, L- or None, c) in the target's units; None:
    no negative half-block, the block sees only x >= 0 on the domain).

    The propagation of :func:`pipelines.verify.certified` (Appendix B: e bounds ||x - x~||, B ||x||, Bt
    ||x~||) with, per output channel l, D_l = sum max(|K_l - L+_l|, |K_l + L-_l|) in place of ||K_l - L_l||_1
    and N_l = sum max(|L+_l|, |L-_l|) in place of ||L_l||_1 (module docstring); with L- = None everywhere it
    computes exactly what :func:`pipelines.verify.certified` computes for L = L+."""
    eff = iter(kernels)
    e, B, Bt = 0.0, float(input_bound), float(input_bound)
    per_layer = []
    for i, m in enumerate(layers):
        if not isinstance(m, nn.Conv2d):
            continue
        K = m.weight.detach().double()
        b = m.bias.detach().double() if m.bias is not None else torch.zeros(K.shape[0], dtype=torch.float64)
        Lp, Lm, c = next(eff)
        Lp = Lp.double()
        c = c.double() if c is not None else torch.zeros_like(b)
        if Lm is None:
            D, N = (K - Lp).abs(), Lp.abs()
        else:
            Lm = Lm.double()
            D, N = torch.maximum((K - Lp).abs(), (K + Lm).abs()), torch.maximum(Lp.abs(), Lm.abs())
        nK, nD, nN = _channel_l1(K), _channel_l1(D), _channel_l1(N)
        db = (b - c).abs()
        e_new = float(nK.max()) * e + float((nD * Bt + db).max())
        B_new = float((nK * B + b.abs()).max())
        Bt_new = min(float((nN * Bt + c.abs()).max()), B_new + e_new)
        e, B, Bt = e_new, B_new, Bt_new
        per_layer.append({"layer": i, "error_bound": e, "target_l1_max": float(nK.max()),
                          "target_l1_total": float(K.abs().sum()), "max_entry_error": float(D.max()),
                          "max_bias_error": float(db.max()) if db.numel() else 0.0, "signed": Lm is not None})
    return {"abs": e * (1 + 1e-9) + 1e-300, "output_bound": B, "layers": per_layer}


class StructuredConstruction(Construction):
    """NeurIPS 2023 Theorem 3 / Lemma 12: V -> ReLU -> U per conv, 2n-channel-blocked V, filter removal by MRSS."""

    name = "structured"
    description = ("NeurIPS 2023 (Thm 3 / Lemma 12): V 1x1 -> ReLU -> U per conv, 2n-channel-blocked V, one MRSS "
                   "per input channel and half-block (filter removal)")
    LAYERS = LayerOptions({
        nn.Conv2d: {"groups": (1,), "dilation": ((1, 1),), "padding_mode": ("zeros",), "stride": None,
                    "kernel_size": None, "padding": None, "bias": None},
        nn.ReLU: {"inplace": None},
        nn.MaxPool2d: {"dilation": (1, (1, 1)), "ceil_mode": (False,), "return_indices": (False,),
                       "kernel_size": None, "stride": None, "padding": None},
    })
    RANDOM_TAG = 2023  # rng = default_rng([seed, block, RANDOM_TAG])

    def __init__(self, target: nn.Sequential, n: int, seed: int = 0, dist: str = "normal", scale="none",
                 domain: str = "auto", k: int | None = None, blocks: str = "channel"):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConstructionError(f"n: channels per half-block must be a positive integer, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
            raise ConstructionError(f"seed: expected an integer in [0, 2^63), got {seed!r}")
        if dist not in DISTRIBUTIONS:
            raise ConstructionError(f"dist: expected one of {', '.join(DISTRIBUTIONS)} (Theorem 3: normal), got {dist!r}")
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n):
            raise ConstructionError(f"k: the subset size must be None or an integer in [1, n={n}], got {k!r}")
        if blocks not in BLOCKINGS:
            raise ConstructionError(f"blocks: expected one of {', '.join(BLOCKINGS)} (channel: Theorem 3; pair: one "
                                    f"2n-block per (input, output) channel pair), got {blocks!r}")
        self.blocks = blocks
        self.layers = self.check_target(target, domain)
        self.target = target
        self.n, self.seed, self.dist, self.domain = int(n), int(seed), dist, domain
        self.k = None if k is None else int(k)
        self.scale = parse_scale(scale)
        self.domains = block_domains(self.layers, domain)
        network = StructuredRandomCNN(_layers_spec(self.layers), self.n, self.domains, construction=self.name,
                                      domain=domain, blocks=blocks).double()
        with torch.no_grad():
            for bi, b in enumerate(network.blocks()):
                rng = np.random.default_rng([self.seed, bi, self.RANDOM_TAG])
                b.V.weight_orig.copy_(torch.from_numpy(random_tensor(b.V.weight_orig.shape, rng, dist)))
                b.U.weight_orig.copy_(torch.from_numpy(random_tensor(b.U.weight_orig.shape, rng, dist)))
                S = b.sign_blocked_mask()  # Eq. 21
                network.set_block_masks(bi, V=S, U=self._input_channel_mask(b, S))
        self.network = network
        self.lambdas, self.scaling_info = self._choose_lambdas()
        self._set_scales_and_biases()

    # ------------------------------------------------------------------ target
    @classmethod
    def check_target(cls, target: nn.Module, domain: str = "auto") -> list[nn.Module]:
        """The target's layers, validated: an ``nn.Sequential`` of the layers and options in ``LAYERS``
        with finite weights, whose convs all see non-negative inputs if ``domain == "nonnegative"``."""
        layers = sequential_layers(target, "Conv2d/ReLU/MaxPool2d")
        for i, m in enumerate(layers):
            if isinstance(m, nn.Linear):
                raise ConstructionError(
                    f"target[{i}]: nn.Linear is not supported; the structured construction covers convolutions. "
                    f"Express it as an nn.Conv2d whose kernel covers its whole input or prune only model.features")
            cls.LAYERS.check(i, m, cls.name)
            if isinstance(m, nn.Conv2d):
                if isinstance(m.padding, str):
                    raise ConstructionError(f"target[{i}]: give Conv2d an integer padding, not {m.padding!r}")
                check_finite_weights(i, m)
        if not any(isinstance(m, nn.Conv2d) for m in layers):
            raise ConstructionError("target: no Conv2d to approximate")
        block_domains(layers, domain)  # refuses what the domain cannot carry
        return layers

    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.layers if isinstance(m, nn.Conv2d)]

    @staticmethod
    def _input_channel_mask(block, V_mask: torch.Tensor) -> torch.Tensor:
        """U's mask: input channel k of U kept iff filter k of V survives (Theorem 3: removing a filter
        at layer 2i-1 removes the corresponding channel at layer 2i)."""
        return block.input_channel_mask(V_mask.flatten(1).sum(1) > 0)

    # ------------------------------------------------------------------ candidates and scaling
    def _candidates(self, bi: int):
        """Per block, in float64 numpy: (kind, entry, units ks, candidates (|ks| x dim), unscaled target).
        ``channel`` blocks, for each input channel t0: ``filter+`` always, ``filter-`` only in signed blocks
        (proof of Lemma 12), entry (t0,), dim c1 d d. ``pair`` blocks: the same per (t0, output j) on U[j, k]
        and K[j, t0] (``pair+`` / ``pair-``, entry (t0, j), dim d d)."""
        b, K = self.network.blocks()[bi], self.convs()[bi]
        W = K.weight.detach().double().cpu().numpy()
        U = b.U.weight_orig.detach().double().cpu().numpy()          # c1 x H x d x d (pair: c1 x H / c1 x d x d)
        V = b.V.weight_orig.detach().double().cpu().numpy()[:, :, 0, 0]  # H x c0
        if self.blocks == "pair":
            return self._pair_candidates(b, W, U, V)
        dim = U.shape[0] * U.shape[2] * U.shape[3]  # c1 d d
        out = []
        for t0 in range(W.shape[1]):
            pos, neg = b.half_blocks(t0)
            z = W[:, t0].reshape(-1)
            ks = np.array([k for k in pos if V[k, t0] > 0], dtype=np.int64)
            out.append(("filter+", (t0,), ks, np.moveaxis(U[:, ks], 1, 0).reshape(ks.size, dim) * V[ks, t0][:, None],
                        z))
            if self.domains[bi] == "signed":
                ks = np.array([k for k in neg if V[k, t0] < 0], dtype=np.int64)
                out.append(("filter-", (t0,), ks,
                            np.moveaxis(U[:, ks], 1, 0).reshape(ks.size, dim) * -V[ks, t0][:, None], -z))
        return out

    def _pair_candidates(self, b, W, U, V):
        """``pair`` blocks (beyond the paper): for input channel t0 and output channel j, candidates
        U[j, k] * V+[k, t0] (d d coordinates) for k in the pair's positive half-block with V > 0, target
        K[j, t0]; the negative half-block likewise with V- and -K[j, t0] (signed blocks only). The proof of
        Lemma 12 applies per pair unchanged: each hidden channel reaches one output channel only."""
        G, dim = U.shape[1], U.shape[2] * U.shape[3]
        signed = b.domain == "signed"
        out = []
        for t0 in range(W.shape[1]):
            for j in range(W.shape[0]):
                pos, neg = b.half_blocks(t0, j)
                z = W[j, t0].reshape(-1)
                halves = [("pair+", pos, 1.0)] + ([("pair-", neg, -1.0)] if signed else [])
                for kind, rng, sign in halves:
                    ks = np.array([k for k in rng if sign * V[k, t0] > 0], dtype=np.int64)
                    C = U[j, ks - j * G].reshape(ks.size, dim) * (sign * V[ks, t0])[:, None]
                    out.append((kind, (t0, j), ks, C, sign * z))
        return out

    def _choose_lambdas(self):
        convs = self.convs()
        fixed = fixed_lambdas(self.scale, len(convs))
        if fixed is not None:
            return fixed
        lambdas, unreachable = [], []
        for bi in range(len(convs)):
            need, skipped = 1.0, 0
            for _, _, _, C, z in self._candidates(bi):
                hi = np.where(C > 0, C, 0.0).sum(0)
                lo = np.where(C < 0, C, 0.0).sum(0)
                reach = np.where(z > 0, hi, -lo)
                live = z != 0
                ok = live & (reach > 0)
                skipped += int((live & ~ok).sum())
                if ok.any():
                    need = max(need, float((np.abs(z[ok]) / reach[ok]).max()))
            lambdas.append(need)
            unreachable.append(skipped)
        return lambdas, {"mode": "auto", "unreachable_coordinates": unreachable,
                         "rule": "smallest lambda_i >= 1 with every coordinate of every scaled target vector in "
                                 "[sum of negative, sum of positive candidates] of its instance"}

    def _set_scales_and_biases(self) -> None:
        """Output scale Lambda_l and U's bias = b_i / Lambda_i (the target's bias, carried exactly)."""
        self._set_output_scale()
        with torch.no_grad():
            for b, K, cum in zip(self.network.blocks(), self.convs(), cumulative(self.lambdas)):
                if K.bias is not None:
                    b.U.bias.copy_(K.bias.detach().double() / cum)

    # ------------------------------------------------------------------ subproblems and masks
    def subproblems(self) -> list[Subproblem]:
        """One MRSS per input channel and half-block, block by block, on the *scaled* target vectors."""
        import milp

        out = []
        for bi, lam in enumerate(self.lambdas):
            for kind, entry, ks, C, z in self._candidates(bi):
                zs = z / lam
                card = None if self.k is None else min(self.k, int(ks.size))
                inst = milp.Instance(C, zs, cardinality=card) if ks.size else None
                out.append(Subproblem(instance=inst, layer=bi, kind=kind, entry=entry, units=ks, target=zs))
        return out

    def apply(self, solutions, subproblems: list[Subproblem] | None = None) -> None:
        """Filter removal: V keeps exactly the selected filters (entry [k, t0] for every chosen k), U the
        matching input channels; everything else (unselected, wrong-signed, the negative half-blocks of
        nonnegative blocks, instances without a solution) is removed. ``solutions[j]`` belongs to
        ``subproblems[j]``; None (or not found) keeps nothing (L = 0 for that channel and half)."""
        subs = subproblems if subproblems is not None else self.subproblems()
        if len(solutions) != len(subs):
            raise ValueError(f"apply: {len(solutions)} solutions for {len(subs)} subproblems")
        blocks = self.network.blocks()
        SV = [torch.zeros_like(b.V.weight_mask) for b in blocks]
        for sp, sol in zip(subs, solutions):
            if sol is None or sp.instance is None or not getattr(sol, "found", False):
                continue
            chosen = torch.as_tensor(sp.units[np.asarray(sol.mask, dtype=bool)], dtype=torch.long)
            SV[sp.layer][chosen, sp.entry[0]] = 1.0
        for bi, b in enumerate(blocks):
            self.network.set_block_masks(bi, V=SV[bi], U=self._input_channel_mask(b, SV[bi]))

    def domain_summary(self) -> str:
        """What the declared domain saves (Lemma 11 with X- = 0): per block nonnegative or signed, the MRSS
        instances solved against the 2x of Theorem 3 verbatim (``signed``), and the hidden channels of the
        negative half-blocks that are removed without solving anything."""
        solved = full = unused = hidden = 0
        for b, dom in zip(self.network.blocks(), self.domains):
            per_half = b.c0 * b.group
            full += 2 * per_half
            solved += per_half * (2 if dom == "signed" else 1)
            hidden += b.hidden
            if dom == "nonnegative":
                unused += b.hidden // 2
        nonneg = self.domains.count("nonnegative")
        return (f"domain {self.domain}: {nonneg} of {len(self.domains)} blocks see non-negative inputs (X- = 0, "
                f"Lemma 11): {solved} MRSS instances instead of {full} for signed inputs, {unused:,} of {hidden:,} "
                f"hidden channels (negative half-blocks) removed without solving")

    # ------------------------------------------------------------------ views and certificate
    def effective_kernels(self) -> list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
        """Per conv, what the pruned block computes on its domain, in the target's units:
        (lambda_i L+_i, lambda_i L-_i or None for a nonnegative block, Lambda_i b_U)."""
        out = []
        for (Lp, Lm, c), lam, cum, dom in zip(self.network.block_products(), self.lambdas, cumulative(self.lambdas),
                                              self.domains):
            out.append((Lp * lam, Lm * lam if dom == "signed" else None, None if c is None else c * cum))
        return out

    def effective(self) -> nn.Sequential:
        """The target's layers with every conv replaced by what its block computes: a Conv2d (lambda L+,
        Lambda c) for a nonnegative block (exact on its non-negative inputs), a
        :class:`models.structured_cnn.SignSplitConv2d` (L+ on x+, L- on x-) for a signed block (exact on
        every input). No random weights, no masks: an independent computation of the pruned network on
        the declared domain."""
        eff = iter(self.effective_kernels())
        mods = []
        for m in self.layers:
            if not isinstance(m, nn.Conv2d):
                mods.append(copy.deepcopy(m))
                continue
            Lp, Lm, c = next(eff)
            if Lm is None:
                conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                                 bias=m.bias is not None, dtype=torch.float64)
                with torch.no_grad():
                    conv.weight.copy_(Lp)
                    if conv.bias is not None:
                        conv.bias.copy_(c)
                mods.append(conv)
            else:
                mods.append(SignSplitConv2d(Lp, Lm, c, m.stride, m.padding))
        net = nn.Sequential(*mods).double()
        return freeze(net).eval()

    def input_domain(self, input_bound: float = 1.0) -> tuple[float, float]:
        """The declared input domain: [-B, B] (``signed``) or [0, B] (``auto``, ``nonnegative``) per entry."""
        return (-float(input_bound) if self.domain == "signed" else 0.0, float(input_bound))

    def certify(self, input_bound: float = 1.0) -> dict:
        """Certified sup-norm bound on the declared input domain (:meth:`input_domain`; module docstring):
        :func:`pipelines.verify.certified` on (lambda L+, Lambda c) when every block is nonnegative,
        :func:`certified_split` otherwise."""
        kernels = self.effective_kernels()
        if all(Lm is None for _, Lm, _ in kernels):
            cert = certified(self.layers, [(Lp, c) for Lp, _, c in kernels], input_bound)
        else:
            cert = certified_split(self.layers, kernels, input_bound)
        cert["lambdas"] = list(self.lambdas)
        cert["domain"] = self.domain
        cert["input_domain"] = list(self.input_domain(input_bound))
        return cert

    @classmethod
    def attach(cls, target: nn.Sequential, network: StructuredRandomCNN) -> "StructuredConstruction":
        """The construction around a pruned network read from a file (masks, random values, biases, domains
        and scales as saved); refuses a network that was not built for this target."""
        if not isinstance(network, StructuredRandomCNN) or network.construction != cls.name:
            raise ConstructionError(f"pruned network: built by construction {getattr(network, 'construction', '?')!r}, "
                                    f"not {cls.name!r}")
        layers = cls.check_target(target, network.domain)
        if json.loads(json.dumps(network.layers_spec)) != json.loads(json.dumps(_layers_spec(layers))):
            raise ConstructionError("pruned network: its layers do not match the target's (another architecture "
                                    "or other conv options)")
        if block_domains(layers, network.domain) != network.domains:
            raise ConstructionError(f"pruned network: its block domains {network.domains} do not follow from its "
                                    f"declared domain {network.domain!r} on this target")
        c = cls.__new__(cls)
        c.layers, c.target, c.network = layers, target, network
        c.n, c.seed, c.dist, c.k = network.n, None, None, None
        c.domain, c.domains, c.blocks = network.domain, list(network.domains), network.blocking
        c.scale, c.lambdas = "file", list(network.scales)
        c.scaling_info = {"mode": "from file"}
        return c


def solve(c: Construction, solver: str = "auto", n_jobs: int = 1, store=None, time_limit=None, seed: int = 0,
          progress: bool = False) -> dict:
    """:func:`pipelines.constructions.base.solve_subproblems` (kept under this name for callers)."""
    return solve_subproblems(c, solver=solver, n_jobs=n_jobs, store=store, time_limit=time_limit, seed=seed,
                             progress=progress)
