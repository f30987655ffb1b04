"""The random over-parameterised CNN of NeurIPS 2023 (da Cunha, d'Amore, Natale), Theorem 3 / Lemma 12,
as a plain PyTorch module with masks.

Every target convolution K (PyTorch layout c1 x c0 x d x d, bias b) becomes a block of two random
convolutions (Theorem 3: L^(2i-1), L^(2i); Lemma 12: V, U)::

    V: Conv2d(c0, 2*c0*n, 1, bias=False)    random entries (the paper's L^(2i-1) ~ N^{1 x 1 x c0 x 2 c0 n})
    ReLU
    U: Conv2d(2*c0*n, c1, d)                 random entries, same stride/padding as K (L^(2i) ~ N^{d x d x 2 c0 n x c1})
                                             bias: the target's bias b_i / Lambda_i, *not* random (see below)

Hidden channel k of a block belongs to input channel t = k // (2n) (Definition 2 with 2n): the first n
channels of t's block are its *positive half-block*, the next n its *negative half-block* (Eq. 21/22).

Masks (``torch.nn.utils.prune`` reparametrisation through :mod:`models.masks`) sit on ``V.weight`` and
``U.weight``; which ones are chosen, and why, is the construction's business
(:mod:`pipelines.constructions.structured`). This module holds the network, its masks, the products
L^+ and L^- that a block computes (Lemma 11 / proof of Lemma 12), parameter counts, the compact export
and save/load.

What a block computes. If every hidden channel k keeps at most one entry of V (true for every mask
contained in a 2n-channel-blocked mask), then relu(V~ x)_k = V~+[k,t] x_t^+ + V~-[k,t] x_t^- (Lemma 11,
Eq. 23-24), so for *every* real input x

    block(x) = conv(x^+, L^+) + conv(x^-, L^-) + b_U,   L^+[:, t] = sum_k U~[:, k] V~+[k, t],
                                                       L^-[:, t] = sum_k U~[:, k] V~-[k, t]

(U~, V~ the masked weights, V~+ / V~- the positive / negative parts of Definition 10). On non-negative
inputs x^- = 0 and the block is the plain convolution conv(x, L^+) + b_U. :class:`SignSplitConv2d` is
that formula as a module (no random weights, no masks): an independent computation of a block.

Biases. Theorem 3 has none; a target conv's bias is carried by U's own bias, a frozen parameter equal to
the (scaled) target bias: the block's output is U * relu(V * x) + b_U, so this is exact. These are kept
*target* parameters, reported apart from the random ones by :meth:`StructuredRandomCNN.parameter_counts`.
"""
from __future__ import annotations

import json
import math

import torch
from torch import nn
from torch.nn import functional as F

from .masks import freeze, ones_mask, set_mask
from .random_cnn import (BlockSpec, ConstructionError, OutputScale, _first_line, _json, check_layers_spec, check_memory,
                         check_state_shapes, check_state_values)

FORMAT = "slth-structured-random-cnn/1"
#: what a block is built to be exact on: every real input, or non-negative inputs only
BLOCK_DOMAINS = ("signed", "nonnegative")
_FILE_KEYS = {"format", "n", "spec", "domain", "domains", "construction", "scales", "extra", "state_dict", "blocks"}
#: how hidden channels are grouped: per input channel (Theorem 3) or per (input, output) channel pair
BLOCKINGS = ("channel", "pair")


def hidden_channels(c0: int, c1: int, n: int, blocks: str = "channel") -> int:
    """Hidden channels of one block: 2 c0 n (``channel``, Theorem 3) or 2 c0 c1 n (``pair``)."""
    return 2 * c0 * n * (c1 if blocks == "pair" else 1)


class StructuredBlock(nn.Module):
    """V (1 x 1, c0 -> H, no bias) -> ReLU -> U (d x d, H -> c1, stride/padding of K, bias if K has one), with
    H = 2*c0*n (``blocks="channel"``, Theorem 3) or H = 2*c0*c1*n (``blocks="pair"``, beyond the paper).

    Hidden channels come in 2n-blocks g = j*c0 + t (first n: positive half-block, next n: negative), where
    t is the input channel and j = 0 (``channel``) or the one output channel the block may feed
    (``pair``). In ``pair`` mode U is a grouped convolution (``groups=c1``): output j reads only the
    hidden channels of its own pairs [j*2*c0*n, (j+1)*2*c0*n), so its weight is c1 x 2*c0*n x d x d and
    every random entry it holds is usable; each MRSS then has dimension d*d instead of c1*d*d."""

    def __init__(self, spec: BlockSpec, n: int, domain: str, blocks: str = "channel"):
        super().__init__()
        if domain not in BLOCK_DOMAINS:
            raise ConstructionError(f"domain: expected one of {', '.join(BLOCK_DOMAINS)}, got {domain!r}")
        if blocks not in BLOCKINGS:
            raise ConstructionError(f"blocks: expected one of {', '.join(BLOCKINGS)}, got {blocks!r}")
        self.n, self.c0, self.c1, self.domain, self.blocking = n, spec.c0, spec.c1, domain, blocks
        self.group = spec.c1 if blocks == "pair" else 1  # 2n-blocks per input channel
        H = hidden_channels(spec.c0, spec.c1, n, blocks)
        self.V = nn.Conv2d(spec.c0, H, 1, bias=False)
        self.act = nn.ReLU()
        self.U = nn.Conv2d(H, spec.c1, tuple(spec.kernel), stride=tuple(spec.stride), groups=self.group,
                           padding=tuple(spec.padding), bias=spec.bias)
        if self.U.bias is not None:
            with torch.no_grad():
                self.U.bias.zero_()  # set to the target's bias by the construction

    @property
    def hidden(self) -> int:
        return self.V.out_channels

    def forward(self, x):
        return self.U(self.act(self.V(x)))

    def masked(self, module: str) -> torch.Tensor:
        """The pruned weight (random values times mask) of ``U`` or ``V``."""
        m = getattr(self, module)
        return m.weight_orig * m.weight_mask

    def half_blocks(self, t: int, j: int = 0) -> tuple[range, range]:
        """Hidden channels of input channel t (0-based; with ``blocks="pair"`` of the pair (t, output j)):
        (positive half-block, negative half-block), Eq. 22: k in [2gn, 2gn + n) and [2gn + n, 2(g+1)n)
        with g = j c0 + t (j = 0 for ``channel``: g = t, Eq. 22 verbatim)."""
        n, g = self.n, j * self.c0 + t
        return range(2 * g * n, 2 * g * n + n), range(2 * g * n + n, 2 * (g + 1) * n)

    def pairs(self) -> list[tuple[int, int]]:
        """(t, j) of every 2n-block: (t, 0) per input channel (``channel``), every (t, j) (``pair``)."""
        return [(t, j) for t in range(self.c0) for j in range(self.group)]

    def blocked_mask(self) -> torch.Tensor:
        """Definition 2 with 2n: S[k, t] = 1 iff hidden channel k is in one of t's 2n-blocks (PyTorch layout
        of V; ``pair``: t owns c1 blocks, contiguous after permuting the hidden channels)."""
        S = torch.zeros_like(self.V.weight_orig)
        for t, j in self.pairs():
            pos, neg = self.half_blocks(t, j)
            S[pos.start:neg.stop, t] = 1.0
        return S

    def sign_blocked_mask(self) -> torch.Tensor:
        """Eq. 21: the 2n-channel-blocked mask keeping, in each 2n-block of t, the positive entries of V in the
        first n channels and the negative entries in the second n (everything else zero)."""
        V = self.V.weight_orig.detach()
        S = torch.zeros_like(V)
        for t, j in self.pairs():
            pos, neg = self.half_blocks(t, j)
            S[pos.start:pos.stop, t] = (V[pos.start:pos.stop, t] > 0).to(S.dtype)
            S[neg.start:neg.stop, t] = (V[neg.start:neg.stop, t] < 0).to(S.dtype)
        return S

    def output_of(self) -> torch.Tensor | None:
        """``pair``: the output channel j each hidden channel feeds (None for ``channel``)."""
        if self.blocking != "pair":
            return None
        return torch.arange(self.hidden) // (2 * self.n * self.c0)

    def input_channel_mask(self, alive: torch.Tensor) -> torch.Tensor:
        """U's mask keeping exactly the input channels (hidden channels) flagged in ``alive`` (length H)."""
        M = torch.zeros_like(self.U.weight_orig)
        if self.blocking == "pair":
            M[:] = alive.to(M.dtype).view(self.c1, -1)[:, :, None, None]
        else:
            M[:, alive] = 1.0
        return M

    def u_column(self, k: int) -> torch.Tensor:
        """The random weights U[j, k] (d x d) through which hidden channel k reaches its output channel j
        (``pair``), or U[:, k] (c1 x d x d, ``channel``)."""
        if self.blocking == "pair":
            G = self.U.weight_orig.shape[1]
            return self.U.weight_orig[k // G, k % G]
        return self.U.weight_orig[:, k]

    def dense_masked_U(self) -> torch.Tensor:
        """The masked U as a dense c1 x H x d x d tensor (zeros outside the groups in ``pair`` mode)."""
        Um = self.masked("U")
        if self.blocking != "pair":
            return Um
        G = Um.shape[1]
        D = Um.new_zeros((self.c1, self.hidden, *Um.shape[2:]))
        for j in range(self.c1):
            D[j, j * G:(j + 1) * G] = Um[j]
        return D

    def u_column_counts(self) -> torch.Tensor:
        """Per hidden channel, how many entries of U's mask it keeps (length H)."""
        M = self.U.weight_mask
        if self.blocking == "pair":
            return M.sum((2, 3)).flatten()
        return M.sum((0, 2, 3))

    def live_channels(self) -> torch.Tensor:
        """Hidden channels that carry something: a kept V entry and some kept U entry."""
        return (self.V.weight_mask.flatten(1).sum(1) > 0) & (self.u_column_counts() > 0)

    @torch.no_grad()
    def products(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(L^+, L^-, b_U) in float64, PyTorch layout c1 x c0 x d x d (proof of Lemma 12):
        L^+[:, t] = sum_k U~[:, k] V~+[k, t], L^-[:, t] = sum_k U~[:, k] V~-[k, t]."""
        Vm = self.masked("V")[:, :, 0, 0].double()  # H x c0
        Um = self.masked("U").double()               # c1 x H x d x d (``pair``: c1 x H / c1 x d x d, grouped)
        if self.blocking == "pair":
            G = Um.shape[1]
            Vg = Vm.view(self.c1, G, self.c0)  # output j's hidden channels
            Lp = torch.einsum("lkij,lkt->ltij", Um, Vg.clamp(min=0))
            Lm = torch.einsum("lkij,lkt->ltij", Um, (-Vg).clamp(min=0))
        else:
            Lp = torch.einsum("lkij,kt->ltij", Um, Vm.clamp(min=0))
            Lm = torch.einsum("lkij,kt->ltij", Um, (-Vm).clamp(min=0))
        b = self.U.bias.detach().double().clone() if self.U.bias is not None else None
        return Lp, Lm, b


class SignSplitConv2d(nn.Module):
    """x -> conv(relu(x), W+) + conv(relu(-x), W-) + b: what a structured block computes on every real input
    (Lemma 11 and the proof of Lemma 12), with plain tensors (no random weights, no masks). ``weight_neg``
    None: conv(relu(x), W+) + b (a block without negative half-block; on x >= 0 the plain conv)."""

    def __init__(self, weight_pos: torch.Tensor, weight_neg: torch.Tensor | None, bias: torch.Tensor | None,
                 stride, padding):
        super().__init__()
        self.register_buffer("weight_pos", weight_pos.detach().clone())
        self.register_buffer("weight_neg", None if weight_neg is None else weight_neg.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.stride, self.padding = tuple(stride), tuple(padding)

    def forward(self, x):
        y = F.conv2d(F.relu(x), self.weight_pos.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype),
                     self.stride, self.padding)
        if self.weight_neg is not None:
            y = y + F.conv2d(F.relu(-x), self.weight_neg.to(x.dtype), None, self.stride, self.padding)
        return y


def state_shapes(spec: list[dict], n: int, blocks: str = "channel") -> dict[str, tuple]:
    """The state_dict of ``StructuredRandomCNN(spec, n, ..., blocks=blocks)``: tensor name -> shape, computed
    without building it."""
    shapes: dict[str, tuple] = {}
    for i, layer in enumerate(spec):
        if layer["type"] != "conv":
            continue
        b = layer["block"]
        hidden = hidden_channels(b["c0"], b["c1"], n, blocks)
        shapes[f"net.{i}.V.weight_orig"] = shapes[f"net.{i}.V.weight_mask"] = (hidden, b["c0"], 1, 1)
        per_out = hidden // b["c1"] if blocks == "pair" else hidden  # pair: U grouped by output channel
        shapes[f"net.{i}.U.weight_orig"] = shapes[f"net.{i}.U.weight_mask"] = (b["c1"], per_out, *b["kernel"])
        if b["bias"]:
            shapes[f"net.{i}.U.bias"] = (b["c1"],)
    shapes["output_scale.value"] = ()
    return shapes


def random_parameter_count(spec: list[dict], n: int, blocks: str = "channel") -> int:
    """Random parameters (all of V and U; not the target biases) of ``StructuredRandomCNN(spec, n, ...)``."""
    return sum(math.prod(s) for k, s in state_shapes(spec, n, blocks).items() if k.endswith("_orig"))



class StructuredRandomCNN(nn.Module):
    """The 2l-layer random CNN of Theorem 3 with its masks, as a real module.

    ``layers_spec``: the target's layers as JSON-able dicts (the format of :mod:`models.random_cnn`);
    ``domains``: per conv, ``"signed"`` or ``"nonnegative"`` (what its block is pruned to be exact on);
    ``domain``: the declared domain of the construction (``signed``, ``nonnegative`` or ``auto``), kept for
    the file; ``scales``: the target scaling factors lambda_i. Masks start at all-ones."""

    def __init__(self, layers_spec: list[dict], n: int, domains: list[str], scales: list[float] | None = None,
                 construction: str = "structured", domain: str = "auto", blocks: str = "channel"):
        super().__init__()
        convs = check_layers_spec(layers_spec)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConstructionError(f"n: expected a positive integer, got {n!r}")
        if not isinstance(domains, list) or len(domains) != len(convs) or any(d not in BLOCK_DOMAINS for d in domains):
            raise ConstructionError(f"domains: expected a list of {len(convs)} values in {list(BLOCK_DOMAINS)}, got "
                                    f"{str(domains)[:80]}")
        self.n, self.layers_spec, self.domains = n, layers_spec, list(domains)
        if blocks not in BLOCKINGS:
            raise ConstructionError(f"blocks: expected one of {', '.join(BLOCKINGS)}, got {blocks!r}")
        self.construction, self.domain, self.blocking = construction, domain, blocks
        self.scales = [1.0] * len(convs) if scales is None else [float(s) for s in scales]
        if len(self.scales) != len(convs):
            raise ConstructionError(f"scales: {len(self.scales)} factors for {len(convs)} convolutions")
        check_memory(random_parameter_count(layers_spec, n, blocks))  # before allocating
        mods, dom = [], iter(self.domains)
        for s in layers_spec:
            if s["type"] == "conv":
                mods.append(StructuredBlock(BlockSpec(**s["block"]), n, next(dom), blocks))
            elif s["type"] == "relu":
                mods.append(nn.ReLU())
            else:
                mods.append(nn.MaxPool2d(s["kernel_size"], stride=s["stride"], padding=s["padding"]))
        self.net = nn.Sequential(*mods)
        self.output_scale = OutputScale(math.prod(self.scales))
        freeze(self)  # first: the masked ``weight`` attributes are then computed without autograd history
        for b in self.blocks():  # (so the module can be deep-copied, e.g. by pipelines.verify, at any time)
            ones_mask(b.V, "weight")
            ones_mask(b.U, "weight")

    def blocks(self) -> list[StructuredBlock]:
        return [m for m in self.net if isinstance(m, StructuredBlock)]

    def forward(self, x):
        return self.output_scale(self.net(x))

    def set_block_masks(self, index: int, V=None, U=None) -> None:
        """Replace the masks of block ``index`` (validated 0/1 tensors of the parameter's shape)."""
        b = self.blocks()[index]
        if V is not None:
            set_mask(b.V, "weight", V)
        if U is not None:
            set_mask(b.U, "weight", U)

    # ------------------------------------------------------------------ counts and views
    def parameter_counts(self) -> dict:
        """``random``: all random parameters (V and U); ``kept``: random ones kept and used (entries of live
        hidden channels); ``target_bias``: target biases carried by U's bias (not random, not in the other
        two); per block the hidden channels before and after filter removal."""
        total = kept = bias = 0
        hidden, live_counts = [], []
        for b in self.blocks():
            total += b.V.weight_orig.numel() + b.U.weight_orig.numel()
            live = b.live_channels()
            kept += int(b.V.weight_mask[live].sum()) + int(b.u_column_counts()[live].sum())
            bias += b.U.bias.numel() if b.U.bias is not None else 0
            hidden.append(b.hidden)
            live_counts.append(int(live.sum()))
        return {"random": int(total), "kept": int(kept), "target_bias": int(bias), "hidden_channels": hidden,
                "kept_channels": live_counts}

    def block_products(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Per block (L^+, L^-, b_U) in float64 (:meth:`StructuredBlock.products`)."""
        return [b.products() for b in self.blocks()]

    def compact(self) -> nn.Sequential:
        """A plain ``nn.Sequential`` without masks whose hidden channels are only the live ones, in their
        order (per input channel: kept positive half-block, then kept negative half-block, as in Remark 13);
        computes the same function. ``pair`` blocks: U becomes a grouped conv (``groups=c1``), see
        :func:`_compact_pair_block`."""
        mods = []
        dt = next(self.parameters()).dtype
        for m in self.net:
            if isinstance(m, nn.MaxPool2d):
                mods.append(nn.MaxPool2d(m.kernel_size, stride=m.stride, padding=m.padding))
                continue
            if isinstance(m, nn.ReLU):
                mods.append(nn.ReLU())
                continue
            if m.blocking == "pair":
                mods += _compact_pair_block(m, dt)
                continue
            live = m.live_channels().nonzero().flatten()
            k = max(int(live.numel()), 1)
            V = nn.Conv2d(m.V.in_channels, k, 1, bias=False, dtype=dt)
            U = nn.Conv2d(k, m.U.out_channels, m.U.kernel_size, stride=m.U.stride, padding=m.U.padding,
                          bias=m.U.bias is not None, dtype=dt)
            with torch.no_grad():
                V.weight.zero_()
                U.weight.zero_()
                if live.numel():
                    V.weight.copy_(m.masked("V")[live])
                    U.weight.copy_(m.masked("U")[:, live])
                if U.bias is not None:
                    U.bias.copy_(m.U.bias)
            mods += [V, nn.ReLU(), U]
        if float(self.output_scale.value) != 1.0:
            mods.append(OutputScale(float(self.output_scale.value)))
        return freeze(nn.Sequential(*mods))

    # ------------------------------------------------------------------ save / load
    def save(self, path, extra: dict | None = None) -> None:
        """state_dict (weight_orig/weight_mask pairs and the target biases), architecture, domains,
        construction name and scaling factors (JSON strings; read back with ``weights_only=True``)."""
        torch.save({"format": FORMAT, "n": self.n, "spec": json.dumps(self.layers_spec),
                    "domain": self.domain, "domains": json.dumps(self.domains), "construction": self.construction,
                    "scales": json.dumps(self.scales), "extra": json.dumps(extra or {}),
                    "blocks": self.blocking, "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path) -> "StructuredRandomCNN":
        """Reads a file written by :meth:`save` (``weights_only=True``); the architecture, the domains, the
        scales and every tensor's name, shape, dtype and 0/1 mask are checked before the module is built.
        Every failure is one :class:`ConstructionError` line ``<path>: <field>: ...``."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConstructionError(f"{path}: not a readable pruned-network file ({_first_line(exc)})") from exc
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            fmt = blob.get("format") if isinstance(blob, dict) else None
            hint = " (an ICLR network: read it with models.random_cnn.PrunedRandomCNN.load)" if (
                isinstance(fmt, str) and fmt.startswith("slth-pruned-random-cnn/")) else ""
            raise ConstructionError(f"{path}: format: not a file written by StructuredRandomCNN.save{hint}")
        try:
            spec, n, domains, scales, blocks, sd = _check_blob(blob)
            model = cls(spec, n, domains, scales, blob["construction"], blob["domain"], blocks)
            if any(v.dtype == torch.float64 for k, v in sd.items() if k.endswith("_orig")):
                model = model.double()
            model.load_state_dict(sd)
        except ConstructionError as exc:
            raise ConstructionError(f"{path}: {_first_line(exc)}") from None
        except Exception as exc:  # checked above; a last guard so it stays one line
            raise ConstructionError(f"{path}: state_dict: the file is damaged or inconsistent "
                                    f"({type(exc).__name__}: {_first_line(exc)})") from exc
        model.extra = json.loads(blob.get("extra", "{}"))
        return model


def _compact_pair_block(m: StructuredBlock, dt) -> list[nn.Module]:
    """A ``pair`` block as V (1 x 1, c0 -> c1 g) -> ReLU -> U (grouped, ``groups=c1``: output j reads only
    its g channels): the live hidden channels of each output channel, each group padded with zero channels
    to the largest group g (a zero V row gives relu(0) = 0: exact)."""
    live = m.live_channels()
    out = m.output_of()
    G = m.U.weight_orig.shape[1]
    groups = [torch.nonzero(live & (out == j)).flatten() for j in range(m.c1)]
    g = max(max(int(x.numel()) for x in groups), 1)
    V = nn.Conv2d(m.V.in_channels, m.c1 * g, 1, bias=False, dtype=dt)
    U = nn.Conv2d(m.c1 * g, m.c1, m.U.kernel_size, stride=m.U.stride, padding=m.U.padding,
                  bias=m.U.bias is not None, groups=m.c1, dtype=dt)
    Vm, Um = m.masked("V"), m.masked("U")
    with torch.no_grad():
        V.weight.zero_()
        U.weight.zero_()
        for j, ks in enumerate(groups):
            if ks.numel():
                V.weight[j * g:j * g + ks.numel()] = Vm[ks]
                U.weight[j, :ks.numel()] = Um[j, ks - j * G]
        if U.bias is not None:
            U.bias.copy_(m.U.bias)
    return [V, nn.ReLU(), U]



def _check_blob(blob: dict):
    """(spec, n, domains, scales, state_dict) of a file's dict, validated before anything is allocated."""
    unknown = sorted(map(str, set(blob) - _FILE_KEYS))
    if unknown:
        raise ConstructionError(f"{unknown[0]}: unknown key in a structured pruned-network file")
    for key in sorted(_FILE_KEYS - {"extra", "blocks"}):
        if key not in blob:
            raise ConstructionError(f"{key}: missing")
    n = blob["n"]
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1 << 20:
        raise ConstructionError(f"n: expected an integer in [1, {1 << 20}], got {n!r:.80}")
    spec = _json(blob, "spec")
    convs = check_layers_spec(spec)
    domains = _json(blob, "domains")
    if not isinstance(domains, list) or len(domains) != len(convs) or any(d not in BLOCK_DOMAINS for d in domains):
        raise ConstructionError(f"domains: expected {len(convs)} values in {list(BLOCK_DOMAINS)}, got {str(domains)[:80]}")
    if blob["domain"] not in ("signed", "nonnegative", "auto"):
        raise ConstructionError(f"domain: expected signed, nonnegative or auto, got {blob['domain']!r:.80}")
    blocks = blob.get("blocks", "channel")
    if blocks not in BLOCKINGS:
        raise ConstructionError(f"blocks: expected one of {', '.join(BLOCKINGS)}, got {blocks!r:.80}")
    construction = blob["construction"]
    if not isinstance(construction, str) or not construction or len(construction) > 100:
        raise ConstructionError(f"construction: expected a construction name, got {construction!r:.80}")
    scales = _json(blob, "scales")
    if (not isinstance(scales, list) or len(scales) != len(convs)
            or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0
                   for s in scales)):
        raise ConstructionError(f"scales: expected {len(convs)} finite positive numbers, got {str(scales)[:80]}")
    extra = _json(blob, "extra") if "extra" in blob else {}
    if not isinstance(extra, dict):
        raise ConstructionError(f"extra: expected a JSON object, got {type(extra).__name__}")
    sd = blob["state_dict"]
    shapes = state_shapes(spec, n, blocks)
    check_state_shapes(sd, shapes)
    check_memory(random_parameter_count(spec, n, blocks), "spec")
    check_state_values(sd, shapes)
    value = float(sd["output_scale.value"])
    if not math.isclose(value, math.prod(float(s) for s in scales), rel_tol=1e-6):
        raise ConstructionError(f"state_dict['output_scale.value']: {value!r} is not the product of the scales")
    return spec, n, domains, [float(s) for s in scales], blocks, dict(sd)
