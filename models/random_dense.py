"""The random over-parameterised dense block of the dense SLTH proofs (Pensia et al. 2020, Malach et al.
2020; with fixed-size subsets: "On the Sparsity of the SLTH", arXiv 2410.14754, Section 4), and a whole
pruned random network: an optional random CNN (ICLR, :mod:`models.random_cnn`, or the structured one of
NeurIPS 2023, :mod:`models.structured_cnn`) followed by dense blocks.

One target dense layer W (m_out x m_in, bias b) becomes the block::

    fan-out: m_in -> m_in*n (+ m_in*n) + n
                 hidden (i, t)        = relu(u[i, t] * x_i),  t < n    (input i's positive half: u relu(x_i))
                 [signed inputs only] = relu(-w[i, t] * x_i)            (its negative half: w relu(-x_i))
                 bias neuron t        = relu(beta[t])                   (the constant input 1)
    V:       Linear(hidden, m_out, bias=False)   random, masked

Each hidden neuron sees one input only (Pensia et al.: the first layer is pruned to this block structure
a priori; it is stored here as that structure, ``u`` of shape m_in x n, so a 784-input layer does not
allocate a dense 784 x 18840 matrix of zeros). ``u`` and ``beta`` are non-negative: a random sample's
magnitude (|Unif[-1, 1]| = Unif[0, 1], or |N(0, 1)|), the distribution of a Uniform[-1, 1] sample given
its sign; in Pensia et al. the sign of a first-layer weight decides whether its neuron serves the
positive part relu(x) or the negative part relu(-x) of the input (x = relu(x) - relu(-x)); fixing the sign
by construction gives every input exactly n usable neurons per half, which the fixed-size subsets (exactly
k of n) need. With inputs known to be non-negative only the positive half is built (``signed=False``);
otherwise both halves (``signed=True``: n more neurons per input, weights ``w = weight_neg >= 0``).

What a block computes. For x >= 0, relu(u x) = u x and relu(beta) = beta, so with V~ = V o mask

    block(x)_j = sum_i L[j, i] x_i + c[j],  L[j, i] = sum_t V~[j, i n + t] u[i, t],  c[j] = sum_t V~[j, H + t] beta[t]

(H = m_in n, the bias neurons' offset). Signed block, for every real x (x+ = relu(x), x- = relu(-x)):

    block(x)_j = sum_i (L+[j, i] x+_i + L-[j, i] x-_i) + c[j],  L-[j, i] = sum_t V~[j, m_in n + i n + t] w[i, t]

(H = 2 m_in n); approximating W x = W x+ - W x- means L+ ~ W and L- ~ -W.

(the effective weights: the subset sums of the RFSS / RSS instances). Masks: only on V (``torch.nn.utils.prune``
through :mod:`models.masks`); ``u`` and ``beta`` are never pruned entry by entry, a hidden neuron no output
keeps is dead (dropped by :meth:`PrunedRandomNet.compact`, not counted as kept).
"""
from __future__ import annotations

import json
import math

import torch
from torch import nn
from torch.nn.utils import prune

from .masks import freeze, ones_mask, set_mask
from . import structured_cnn
from .random_cnn import (ConstructionError, OutputScale, PrunedRandomCNN, _first_line, _json, check_layers_spec,
                         check_memory, check_state_shapes, check_state_values, expected_state_shapes, parameter_count)

FORMAT = "slth-pruned-random-net/1"
_FILE_KEYS = {"format", "construction", "conv", "dense", "extra", "state_dict"}
MAX_UNITS = 1 << 20  # m_in, m_out bound for a file
MAX_N = 1 << 16


class FanOut(nn.Module):
    """m_in -> hidden (pre-activations): (i, t) = u[i, t] * x_i (index i*n + t); if signed, then (i, t) =
    -w[i, t] * x_i (index m_in*n + i*n + t); then the n bias neurons beta[t]."""

    def __init__(self, m_in: int, n: int, bias: bool, signed: bool = False):
        super().__init__()
        self.m_in, self.n, self.signed = m_in, n, signed
        self.weight = nn.Parameter(torch.zeros(m_in, n))
        self.weight_neg = nn.Parameter(torch.zeros(m_in, n)) if signed else None
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    @property
    def bias_offset(self) -> int:
        return self.m_in * self.n * (2 if self.signed else 1)

    @property
    def hidden(self) -> int:
        return self.bias_offset + (self.n if self.bias is not None else 0)

    def forward(self, x):
        h = (x.unsqueeze(2) * self.weight.to(x.dtype)).flatten(1)
        if self.signed:
            h = torch.cat([h, (x.unsqueeze(2) * -self.weight_neg.to(x.dtype)).flatten(1)], dim=1)
        if self.bias is not None:
            h = torch.cat([h, self.bias.to(x.dtype).expand(x.shape[0], self.n)], dim=1)
        return h


class DenseBlock(nn.Module):
    """FanOut -> ReLU -> V (Linear, no bias, masked)."""

    def __init__(self, m_in: int, m_out: int, n: int, bias: bool, signed: bool = False):
        super().__init__()
        self.m_in, self.m_out, self.n, self.has_bias, self.signed = m_in, m_out, n, bias, signed
        self.U = FanOut(m_in, n, bias, signed)
        self.act = nn.ReLU()
        self.V = nn.Linear(self.U.hidden, m_out, bias=False)

    def forward(self, x):
        return self.V(self.act(self.U(x)))

    def masked_V(self) -> torch.Tensor:
        return self.V.weight_orig * self.V.weight_mask

    @torch.no_grad()
    def products(self):
        """(L, c) in float64: what the block computes on x >= 0; signed blocks: ((L+, L-), c), what it computes
        on every x as L+ x+ + L- x- + c (module docstring)."""
        Vm = self.masked_V().double()
        n, m_in, off = self.n, self.m_in, self.U.bias_offset
        L = (Vm[:, :m_in * n].reshape(self.m_out, m_in, n) * self.U.weight.double().clamp_min(0)).sum(-1)
        c = Vm[:, off:] @ self.U.bias.double().clamp_min(0) if self.U.bias is not None else None
        if self.signed:
            Ln = (Vm[:, m_in * n:off].reshape(self.m_out, m_in, n) * self.U.weight_neg.double().clamp_min(0)).sum(-1)
            return (L, Ln), c
        return L, c

    def live(self) -> torch.Tensor:
        """Hidden neurons some output keeps (a kept V entry)."""
        return self.V.weight_mask.sum(0) > 0

    def density(self) -> float:
        """Share of ones in V's mask (k/n with fixed-size subsets)."""
        m = self.V.weight_mask
        return float(m.sum()) / max(1, m.numel())


class SignSplitLinear(nn.Module):
    """x -> relu(x) L+^T + relu(-x) L-^T + c: what a signed block computes (no random weights, no masks); with
    L+ = W and L- = -W it is the plain Linear (W, c). An independent computation of a signed block."""

    def __init__(self, weight_pos: torch.Tensor, weight_neg: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.weight_pos = nn.Parameter(weight_pos.detach().clone(), requires_grad=False)
        self.weight_neg = nn.Parameter(weight_neg.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False) if bias is not None else None

    def forward(self, x):
        y = torch.relu(x) @ self.weight_pos.to(x.dtype).T + torch.relu(-x) @ self.weight_neg.to(x.dtype).T
        return y + self.bias.to(x.dtype) if self.bias is not None else y


class GatherScale(nn.Module):
    """Compact form of a fan-out restricted to live neurons: h = x[:, index] * weight + bias (plain tensors,
    no masks): hidden neuron r reads input ``index[r]`` (bias neurons read input 0 with weight 0)."""

    def __init__(self, index: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("index", index.long())
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)

    def forward(self, x):
        return x.index_select(1, self.index) * self.weight.to(x.dtype) + self.bias.to(x.dtype)


def _refresh(module: nn.Module) -> None:
    """Recompute every masked ``weight`` attribute now (after :func:`freeze`), so none carries autograd
    history and the module can be deep-copied before its first forward pass."""
    for m in module.modules():
        for hook in list(m._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                hook(m, None)


def dense_state_shapes(dense: dict) -> dict[str, tuple]:
    """The state_dict of the head described by ``dense`` (its ``layers`` and ``n``), without building it."""
    shapes: dict[str, tuple] = {}
    n = dense["n"]
    for i, layer in enumerate(dense["layers"]):
        if layer["type"] != "dense":
            continue
        hidden = layer["m_in"] * n * (2 if layer["signed"] else 1) + (n if layer["bias"] else 0)
        shapes[f"head.{i}.U.weight"] = (layer["m_in"], n)
        if layer["signed"]:
            shapes[f"head.{i}.U.weight_neg"] = (layer["m_in"], n)
        if layer["bias"]:
            shapes[f"head.{i}.U.bias"] = (n,)
        shapes[f"head.{i}.V.weight_orig"] = shapes[f"head.{i}.V.weight_mask"] = (layer["m_out"], hidden)
    shapes["output_scale.value"] = ()
    return shapes


def dense_parameter_count(dense: dict) -> int:
    """Random parameters of the head: u, beta and all of V."""
    return sum(math.prod(s) for k, s in dense_state_shapes(dense).items()
               if k.endswith(("U.weight", "U.weight_neg", "U.bias", "V.weight_orig")))


def conv_parameter_count(conv: dict) -> int:
    """Random parameters of the conv part described by ``conv`` (ICLR: U, b_U, V; structured: V, U)."""
    if conv.get("construction", "iclr") == "structured":
        return structured_cnn.random_parameter_count(conv["spec"], conv["n"], conv["blocks"])
    return parameter_count(conv["spec"], conv["n"])


def _conv_part(conv: dict) -> nn.Module:
    if conv.get("construction", "iclr") == "structured":
        return structured_cnn.StructuredRandomCNN(conv["spec"], conv["n"], list(conv["domains"]), conv["scales"],
                                                  "structured", conv["domain"], conv["blocks"])
    return PrunedRandomCNN(conv["spec"], conv["n"], conv["scales"], conv.get("construction", "iclr"))


def _int(v, field: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConstructionError(f"{field}: expected an integer in [{lo}, {hi}], got {v!r:.80}")
    return v


def _scales(v, count: int, field: str) -> list[float]:
    if (not isinstance(v, list) or len(v) != count
            or any(isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0 for s in v)):
        raise ConstructionError(f"{field}: expected a list of {count} finite positive numbers, got {str(v)[:80]}")
    return [float(s) for s in v]


def check_dense_spec(dense) -> list[int]:
    """Validate the head description (layers flatten / relu / dense chaining m_out -> m_in, n, k, scales);
    returns the positions of its dense layers. One-line :class:`ConstructionError` naming the field."""
    if not isinstance(dense, dict) or set(dense) != {"layers", "n", "k", "scales"}:
        got = sorted(map(str, dense)) if isinstance(dense, dict) else type(dense).__name__
        raise ConstructionError(f"dense: expected the keys ['k', 'layers', 'n', 'scales'], got {got}")
    _int(dense["n"], "dense.n", 1, MAX_N)
    if dense["k"] is not None:
        _int(dense["k"], "dense.k", 1, dense["n"])
    layers = dense["layers"]
    if not isinstance(layers, list) or len(layers) > 1024:
        raise ConstructionError("dense.layers: expected a list of at most 1024 layers")
    pos, m_prev = [], None
    for i, layer in enumerate(layers):
        where = f"dense.layers[{i}]"
        if not isinstance(layer, dict) or layer.get("type") not in ("flatten", "relu", "dense"):
            raise ConstructionError(f"{where}: expected an object with type flatten, relu or dense")
        if layer["type"] != "dense":
            if set(layer) != {"type"}:
                raise ConstructionError(f"{where}: a {layer['type']} layer has only the key 'type'")
            continue
        if set(layer) != {"type", "m_in", "m_out", "bias", "signed"}:
            raise ConstructionError(f"{where}: a dense layer has the keys ['bias', 'm_in', 'm_out', 'signed', 'type']")
        m_in = _int(layer["m_in"], f"{where}.m_in", 1, MAX_UNITS)
        _int(layer["m_out"], f"{where}.m_out", 1, MAX_UNITS)
        for key in ("bias", "signed"):
            if not isinstance(layer[key], bool):
                raise ConstructionError(f"{where}.{key}: expected true or false")
        if m_prev is not None and m_in != m_prev:
            raise ConstructionError(f"{where}.m_in: {m_in} inputs after a dense layer with {m_prev} outputs")
        m_prev = layer["m_out"]
        pos.append(i)
    _scales(dense["scales"], len(pos), "dense.scales")
    return pos


class PrunedRandomNet(nn.Module):
    """conv part (a :class:`~models.random_cnn.PrunedRandomCNN` or :class:`~models.structured_cnn.StructuredRandomCNN`,
    or none) -> head (flatten / relu / dense
    blocks) -> output scale (the product of the head's scaling factors; the conv part carries its own).

    ``conv``: None, ``{"spec": layers_spec, "n": n_conv, "scales": [...], "construction": "iclr"}`` (a
    :class:`~models.random_cnn.PrunedRandomCNN`) or ``{..., "construction": "structured", "domain": declared
    domain, "domains": per conv signed / nonnegative, "blocks": channel / pair}`` (a
    :class:`~models.structured_cnn.StructuredRandomCNN`, Theorem 3 of NeurIPS 2023);
    ``dense``: ``{"layers": [...], "n": n, "k": k or None, "scales": [...]}`` (:func:`check_dense_spec`)."""

    def __init__(self, conv: dict | None, dense: dict, construction: str = "rfss"):
        super().__init__()
        check_dense_spec(dense)
        self.conv_spec, self.dense_spec, self.construction = conv, dense, construction
        total = dense_parameter_count(dense) + (conv_parameter_count(conv) if conv else 0)
        check_memory(total)  # before allocating anything
        self.conv = _conv_part(conv) if conv else None
        mods = []
        for layer in dense["layers"]:
            if layer["type"] == "flatten":
                mods.append(nn.Flatten())
            elif layer["type"] == "relu":
                mods.append(nn.ReLU())
            else:
                mods.append(DenseBlock(layer["m_in"], layer["m_out"], dense["n"], layer["bias"], layer["signed"]))
        self.head = nn.Sequential(*mods)
        self.output_scale = OutputScale(math.prod(dense["scales"]) if dense["scales"] else 1.0)
        freeze(self)
        for b in self.blocks():
            ones_mask(b.V, "weight")
        freeze(self)
        _refresh(self)

    @property
    def n(self) -> int:
        return self.dense_spec["n"]

    @property
    def k(self) -> int | None:
        return self.dense_spec["k"]

    @property
    def scales(self) -> list[float]:
        return list(self.dense_spec["scales"])

    def blocks(self) -> list[DenseBlock]:
        return [m for m in self.head if isinstance(m, DenseBlock)]

    def forward(self, x):
        if self.conv is not None:
            x = self.conv(x)
        return self.output_scale(self.head(x))

    def set_block_mask(self, index: int, V) -> None:
        set_mask(self.blocks()[index].V, "weight", V)

    def block_products(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        return [b.products() for b in self.blocks()]

    # ------------------------------------------------------------------ counts and views
    def parameter_counts(self) -> dict:
        """``random``: all random parameters (conv part: U, b_U, V; head: u, beta, V); ``kept``: kept and used
        ones (head: kept V entries plus u / beta of live neurons); per dense block its V density."""
        out = self.conv.parameter_counts() if self.conv is not None else {"random": 0, "kept": 0}
        conv_random, conv_kept = out["random"], out["kept"]
        random = kept = 0
        layers = []
        for b in self.blocks():
            r = sum(p.numel() for p in b.U.parameters()) + b.V.weight_orig.numel()
            kv = int(b.V.weight_mask.sum())
            kk = kv + int(b.live().sum())  # one fan-out weight (u, w or beta) per live hidden neuron
            random += r
            kept += kk
            layers.append({"random": int(r), "kept": int(kk), "V_density": b.density(),
                           "kept_per_target_weight": kv / (b.m_out * (b.m_in + (1 if b.has_bias else 0)))})
        return {"random": int(conv_random + random), "kept": int(conv_kept + kept), "conv_random": int(conv_random),
                "conv_kept": int(conv_kept), "dense_random": int(random), "dense_kept": int(kept), "dense_layers": layers}

    def compact(self) -> nn.Sequential:
        """A plain ``nn.Sequential`` without masks (dead hidden neurons dropped) computing the same function:
        the conv part's own compact form, then per dense block GatherScale -> ReLU -> Linear."""
        mods = list(self.conv.compact()) if self.conv is not None else []
        dt = next(iter(self.head.parameters()), torch.zeros((), dtype=torch.float64)).dtype
        for m in self.head:
            if isinstance(m, nn.Flatten):
                mods.append(nn.Flatten())
            elif isinstance(m, nn.ReLU):
                mods.append(nn.ReLU())
            else:
                live = m.live().nonzero().flatten()
                nw, off = m.m_in * m.n, m.U.bias_offset
                isw = live < off
                idx = torch.where(isw, (live % nw) // m.n, torch.zeros_like(live))
                w = torch.zeros(live.numel(), dtype=dt)
                bias = torch.zeros(live.numel(), dtype=dt)
                weights = m.U.weight.detach().flatten()
                if m.U.weight_neg is not None:
                    weights = torch.cat([weights, -m.U.weight_neg.detach().flatten()])
                w[isw] = weights[live[isw]].to(dt)
                if m.U.bias is not None:
                    bias[~isw] = m.U.bias.detach()[live[~isw] - off].to(dt)
                V = nn.Linear(max(live.numel(), 1), m.m_out, bias=False, dtype=dt)
                with torch.no_grad():
                    V.weight.zero_()
                    if live.numel():
                        V.weight.copy_(m.masked_V()[:, live])
                if not live.numel():  # nothing kept: one zero neuron keeps the shapes valid
                    idx, w, bias = torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=dt), torch.zeros(1, dtype=dt)
                mods += [GatherScale(idx, w, bias), nn.ReLU(), V]
        if float(self.output_scale.value) != 1.0:
            mods.append(OutputScale(float(self.output_scale.value)))
        return freeze(nn.Sequential(*mods))

    # ------------------------------------------------------------------ save / load
    def save(self, path, extra: dict | None = None) -> None:
        torch.save({"format": FORMAT, "construction": self.construction, "conv": json.dumps(self.conv_spec),
                    "dense": json.dumps(self.dense_spec), "extra": json.dumps(extra or {}),
                    "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path) -> "PrunedRandomNet":
        """Reads a file written by :meth:`save` (``weights_only=True``); everything checked before the module
        is built (names, shapes, dtypes, 0/1 masks, finite values, scales); one line per failure."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConstructionError(f"{path}: not a readable pruned-network file ({_first_line(exc)})") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ConstructionError(f"{path}: format: not a file written by PrunedRandomNet.save / slth prune")
        try:
            conv, dense, construction, extra, sd = _check_blob(blob)
            model = cls(conv, dense, construction)
            if any(v.dtype == torch.float64 for k, v in sd.items() if k.endswith(("_orig", "U.weight"))):
                model = model.double()
            model.load_state_dict(sd)
            _refresh(model)
        except ConstructionError as exc:
            raise ConstructionError(f"{path}: {_first_line(exc)}") from None
        except Exception as exc:  # checked above; a last guard so it stays one line
            raise ConstructionError(f"{path}: state_dict: the file is damaged or inconsistent "
                                    f"({type(exc).__name__}: {_first_line(exc)})") from None
        model.extra = extra
        return model




def _check_blob(blob: dict):
    unknown = sorted(map(str, set(blob) - _FILE_KEYS))
    if unknown:
        raise ConstructionError(f"{unknown[0]}: unknown key in a pruned random-network file")
    for key in sorted(_FILE_KEYS - {"extra"}):
        if key not in blob:
            raise ConstructionError(f"{key}: missing")
    construction = blob["construction"]
    if not isinstance(construction, str) or not construction or len(construction) > 100:
        raise ConstructionError(f"construction: expected a construction name, got {construction!r:.80}")
    conv = _json(blob, "conv")
    shapes: dict[str, tuple] = {}
    if conv is not None:
        keys = {"spec", "n", "scales", "construction"}
        structured = isinstance(conv, dict) and conv.get("construction") == "structured"
        if structured:
            keys |= {"domain", "domains", "blocks"}
        if isinstance(conv, dict) and conv.get("construction") not in ("iclr", "structured"):
            raise ConstructionError(f"conv.construction: only iclr and structured conv parts are stored, got "
                                    f"{conv.get('construction')!r:.40}")
        if not isinstance(conv, dict) or set(conv) != keys:
            raise ConstructionError(f"conv: expected null or an object with the keys {', '.join(sorted(keys))}")
        convs = check_layers_spec(conv["spec"])
        _int(conv["n"], "conv.n", 1, 1 << 20)
        _scales(conv["scales"], len(convs), "conv.scales")
        if structured:
            domains = conv["domains"]
            if (not isinstance(domains, list) or len(domains) != len(convs)
                    or any(d not in structured_cnn.BLOCK_DOMAINS for d in domains)):
                raise ConstructionError(f"conv.domains: expected {len(convs)} values in "
                                        f"{list(structured_cnn.BLOCK_DOMAINS)}, got {str(domains)[:80]}")
            if conv["domain"] not in ("signed", "nonnegative", "auto"):
                raise ConstructionError(f"conv.domain: expected signed, nonnegative or auto, got {conv['domain']!r:.80}")
            if conv["blocks"] not in structured_cnn.BLOCKINGS:
                raise ConstructionError(f"conv.blocks: expected one of {', '.join(structured_cnn.BLOCKINGS)}, got "
                                        f"{conv['blocks']!r:.80}")
            conv_shapes = structured_cnn.state_shapes(conv["spec"], conv["n"], conv["blocks"])
        else:
            conv_shapes = expected_state_shapes(conv["spec"], conv["n"])
        shapes.update({f"conv.{k}": s for k, s in conv_shapes.items()})
    dense = _json(blob, "dense")
    check_dense_spec(dense)
    if conv is not None and dense["layers"] and dense["layers"][0]["type"] != "flatten":
        raise ConstructionError("dense.layers[0]: a head after a conv part starts with flatten")
    shapes.update(dense_state_shapes(dense))
    extra = _json(blob, "extra") if "extra" in blob else {}
    if not isinstance(extra, dict):
        raise ConstructionError(f"extra: expected a JSON object, got {type(extra).__name__}")
    sd = blob["state_dict"]
    check_state_shapes(sd, shapes, "specs")
    check_state_values(sd, shapes)
    for key in shapes:
        if key.endswith(("U.weight", "U.weight_neg", "U.bias")) and key.startswith("head.") and bool((sd[key] < 0).any()):
            raise ConstructionError(f"state_dict[{key!r}]: the fan-out weights are non-negative by construction")
    for prefix, scales in (("conv.", conv["scales"] if conv else None), ("", dense["scales"])):
        if scales is None:
            continue
        value = float(sd[f"{prefix}output_scale.value"])
        if not math.isclose(value, math.prod(scales) if scales else 1.0, rel_tol=1e-6):
            raise ConstructionError(f"state_dict['{prefix}output_scale.value']: {value!r} is not the product of "
                                    f"the scales")
    return conv, dense, construction, extra, dict(sd)
