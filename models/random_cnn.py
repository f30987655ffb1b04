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

from .masks import MaskError, check_mask, freeze, ones_mask, set_mask


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
        check_memory(parameter_count(layers_spec, n))  # before allocating anything
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
        """Reads a file written by :meth:`save` (``weights_only=True``: data, never code).

        Everything is checked before the module is built (:func:`check_pruned_blob`): the architecture,
        ``n``, the scales, and every tensor of the state_dict against the names and shapes the
        architecture implies, so a file claiming more channels than it holds is refused without
        allocating them. Every failure is one :class:`ConstructionError` line ``<path>: <field>: ...``."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConstructionError(f"{path}: not a readable pruned-network file ({_first_line(exc)})") from exc
        if not isinstance(blob, dict) or blob.get("format") not in READABLE_FORMATS:
            raise ConstructionError(f"{path}: format: not a file written by PrunedRandomCNN.save / slth prune")
        spec, n, scales, construction, extra, sd = check_pruned_blob(blob, path)
        try:
            model = cls(spec, n, scales, construction)
            if any(v.dtype == torch.float64 for k, v in sd.items() if k.endswith("_orig")):
                model = model.double()
            sd.setdefault("output_scale.value", model.output_scale.value)  # format 1 had no scaling
            model.load_state_dict(sd)
        except ConstructionError as exc:
            raise ConstructionError(f"{path}: {_first_line(exc)}") from exc
        except Exception as exc:  # checked above; a last guard so it stays one line
            raise ConstructionError(f"{path}: state_dict: the pruned-network file is damaged or inconsistent "
                                    f"({type(exc).__name__}: {_first_line(exc)}); write it again with slth "
                                    f"prune") from exc
        model.extra = extra
        return model


# ---------------------------------------------------------------------- file validation
#: bounds of an architecture read from a file (far above any network this project builds)
MAX_LAYERS = 1024
MAX_CHANNELS = 1 << 16
MAX_KERNEL = 1024  # kernel size, stride and padding
MAX_N = 1 << 20
#: bytes per random-network parameter while the module is built: ``*_orig``, ``*_mask`` and the
#: computed ``weight`` (3 tensors) in float32, then their float64 copies (``.double()``)
BYTES_PER_PARAMETER = 3 * 4 + 3 * 8
_FILE_KEYS = {"format", "n", "spec", "construction", "scales", "extra", "state_dict"}
_BLOCK_KEYS = {"index", "c0", "c1", "kernel", "stride", "padding", "bias"}
_LAYER_KEYS = {"conv": {"type", "block"}, "relu": {"type"}, "maxpool": {"type", "kernel_size", "stride", "padding"}}


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _json(blob: dict, key: str):
    """``blob[key]`` parsed as JSON (the file formats keep structured fields as JSON strings); one
    :class:`ConstructionError` line naming the key otherwise."""
    text = blob.get(key)
    if not isinstance(text, str):
        raise ConstructionError(f"{key}: expected a JSON string, got {type(text).__name__}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConstructionError(f"{key}: not valid JSON ({_first_line(exc)})") from None


def check_state_shapes(sd, shapes: dict[str, tuple], spec: str = "spec") -> None:
    """A file's state_dict against the tensor shapes its ``spec`` implies: a dict of dense tensors by
    name with exactly those names and shapes (checked before any value is read or anything allocated)."""
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise ConstructionError("state_dict: expected a dict of tensors by name")
    for key in sd:
        if key not in shapes:
            raise ConstructionError(f"state_dict[{key!r:.80}]: not a tensor of the network its {spec} describes")
    for key, shape in shapes.items():
        t = sd.get(key)
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            raise ConstructionError(f"state_dict[{key!r}]: missing or not a dense tensor (the {spec} implies {shape})")
        if tuple(t.shape) != shape:
            raise ConstructionError(f"state_dict[{key!r}]: shape {tuple(t.shape)}, but the {spec} implies {shape}")


def check_state_values(sd, keys) -> None:
    """Masks exactly 0/1, every other tensor finite floats (after :func:`check_state_shapes`)."""
    for key in keys:
        t, where = sd[key], f"state_dict[{key!r}]"
        if key.endswith("_mask"):
            try:
                check_mask(t, t, where)
            except MaskError as exc:
                raise ConstructionError(_first_line(exc)) from None
        elif not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise ConstructionError(f"{where}: expected finite floats")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(v, field: str, lo: int, hi: int) -> int:
    if not _is_int(v) or not lo <= v <= hi:
        raise ConstructionError(f"{field}: expected an integer in [{lo}, {hi}], got {v!r:.80}")
    return v


def _check_pair(v, field: str, lo: int, hi: int, allow_int: bool = False) -> tuple[int, int]:
    """Two integers in [lo, hi] (a JSON list; a single integer too where PyTorch takes one)."""
    if allow_int and _is_int(v):
        v = [v, v]
    if not isinstance(v, list) or len(v) != 2:
        raise ConstructionError(f"{field}: expected a list of two integers in [{lo}, {hi}], got {v!r:.80}")
    return _check_int(v[0], f"{field}[0]", lo, hi), _check_int(v[1], f"{field}[1]", lo, hi)


def check_layers_spec(spec) -> list[int]:
    """Validate a ``layers_spec`` (structure, keys, types, bounds, channels chaining from conv to conv);
    returns the positions of its convolutions. Raises a one-line :class:`ConstructionError` naming the field."""
    if not isinstance(spec, list) or not spec:
        raise ConstructionError(f"spec: expected a non-empty list of layers, got {type(spec).__name__}")
    if len(spec) > MAX_LAYERS:
        raise ConstructionError(f"spec: {len(spec)} layers, more than {MAX_LAYERS}")
    convs, c_prev = [], None
    for i, layer in enumerate(spec):
        where = f"spec[{i}]"
        if not isinstance(layer, dict):
            raise ConstructionError(f"{where}: expected a JSON object, got {type(layer).__name__}")
        kind = layer.get("type")
        if kind not in _LAYER_KEYS:
            raise ConstructionError(f"{where}.type: expected one of {', '.join(_LAYER_KEYS)}, got {kind!r:.80}")
        if set(layer) != _LAYER_KEYS[kind]:
            raise ConstructionError(f"{where}: a {kind} layer has the keys {sorted(_LAYER_KEYS[kind])}, got "
                                    f"{sorted(map(str, layer))}")
        if kind == "conv":
            b = layer["block"]
            if not isinstance(b, dict) or set(b) != _BLOCK_KEYS:
                got = sorted(map(str, b)) if isinstance(b, dict) else type(b).__name__
                raise ConstructionError(f"{where}.block: expected the keys {sorted(_BLOCK_KEYS)}, got {got}")
            if _check_int(b["index"], f"{where}.block.index", 0, MAX_LAYERS) != i:
                raise ConstructionError(f"{where}.block.index: {b['index']} is not the layer's position {i}")
            c0 = _check_int(b["c0"], f"{where}.block.c0", 1, MAX_CHANNELS)
            _check_int(b["c1"], f"{where}.block.c1", 1, MAX_CHANNELS)
            _check_pair(b["kernel"], f"{where}.block.kernel", 1, MAX_KERNEL)
            _check_pair(b["stride"], f"{where}.block.stride", 1, MAX_KERNEL)
            _check_pair(b["padding"], f"{where}.block.padding", 0, MAX_KERNEL)
            if not isinstance(b["bias"], bool):
                raise ConstructionError(f"{where}.block.bias: expected true or false, got {b['bias']!r:.80}")
            if c_prev is not None and c0 != c_prev:
                raise ConstructionError(f"{where}.block.c0: {c0} input channels after a convolution with {c_prev} "
                                        f"output channels")
            c_prev = b["c1"]
            convs.append(i)
        elif kind == "maxpool":
            k = _check_pair(layer["kernel_size"], f"{where}.kernel_size", 1, MAX_KERNEL, allow_int=True)
            _check_pair(layer["stride"], f"{where}.stride", 1, MAX_KERNEL, allow_int=True)
            p = _check_pair(layer["padding"], f"{where}.padding", 0, MAX_KERNEL, allow_int=True)
            if p[0] > k[0] // 2 or p[1] > k[1] // 2:
                raise ConstructionError(f"{where}.padding: {list(p)} is more than half the kernel size {list(k)}")
    if not convs:
        raise ConstructionError("spec: no convolution (a pruned network has at least one random block)")
    return convs


def expected_state_shapes(spec: list[dict], n: int) -> dict[str, tuple]:
    """The state_dict of ``PrunedRandomCNN(spec, n)``: tensor name -> shape, computed without building it."""
    shapes: dict[str, tuple] = {}
    for i, layer in enumerate(spec):
        if layer["type"] != "conv":
            continue
        b = layer["block"]
        hidden = b["c1"] * n
        U = (hidden, b["c0"], *b["kernel"])
        shapes[f"net.{i}.U.weight_orig"] = shapes[f"net.{i}.U.weight_mask"] = U
        if b["bias"]:
            shapes[f"net.{i}.U.bias_orig"] = shapes[f"net.{i}.U.bias_mask"] = (hidden,)
        shapes[f"net.{i}.V.weight_orig"] = shapes[f"net.{i}.V.weight_mask"] = (b["c1"], hidden, 1, 1)
    shapes["output_scale.value"] = ()
    return shapes


def parameter_count(spec: list[dict], n: int) -> int:
    """Random-network parameters (all of U, b_U, V) that ``PrunedRandomCNN(spec, n)`` allocates."""
    return sum(math.prod(s) for k, s in expected_state_shapes(spec, n).items() if k.endswith("_orig"))


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(parameters: int, field: str = "n") -> None:
    """Refuse (before allocating) a random network whose build needs more memory than is available."""
    need = parameters * BYTES_PER_PARAMETER
    free = available_memory()
    if free is not None and need > free:
        raise ConstructionError(f"{field}: the random network has {parameters:,} parameters and needs about "
                                f"{need / 2 ** 30:.1f} GiB to build, more than the {free / 2 ** 30:.1f} GiB available; "
                                f"use a smaller n")


def _json_field(blob: dict, key: str, default: str, path) -> object:
    """:func:`_json` of ``blob[key]`` (``default`` when absent), its error prefixed with ``path``."""
    try:
        return _json({key: blob.get(key, default)}, key)
    except ConstructionError as exc:
        raise ConstructionError(f"{path}: {exc}") from None


def check_pruned_blob(blob: dict, path) -> tuple:
    """Validate the dict read from a pruned-network file before anything is allocated from it.

    Returns ``(spec, n, scales, construction, extra, state_dict)``; every failure is a one-line
    :class:`ConstructionError` ``<path>: <field>: ...``. Format 1 files (no ``scales``, ``construction``,
    ``output_scale.value``) are accepted with the defaults (no scaling, ``iclr``)."""
    fmt1 = blob.get("format") == READABLE_FORMATS[0]
    unknown = sorted(map(str, set(blob) - _FILE_KEYS))
    if unknown:
        raise ConstructionError(f"{path}: {unknown[0]}: unknown key in a pruned-network file")
    required = ("n", "spec", "state_dict") if fmt1 else ("n", "spec", "construction", "scales", "state_dict")
    for key in required:
        if key not in blob:
            raise ConstructionError(f"{path}: {key}: missing")
    try:
        n = _check_int(blob["n"], "n", 1, MAX_N)
        spec = _json_field(blob, "spec", "null", path)
        convs = check_layers_spec(spec)
        scales = _json_field(blob, "scales", "null", path)
        if scales is not None:
            if not isinstance(scales, list) or len(scales) != len(convs):
                raise ConstructionError(f"scales: expected null or a list of {len(convs)} numbers (one per "
                                        f"convolution), got {str(scales)[:80]}")
            for j, s in enumerate(scales):
                if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
                    raise ConstructionError(f"scales[{j}]: expected a finite positive number, got {s!r:.80}")
            prod = math.prod(float(s) for s in scales)
            if not (math.isfinite(prod) and prod > 0):
                raise ConstructionError(f"scales: their product {prod!r} is not a finite positive number")
        construction = blob.get("construction", "iclr")
        if not isinstance(construction, str) or not construction or len(construction) > 100:
            raise ConstructionError(f"construction: expected a construction name, got {construction!r:.80}")
    except ConstructionError as exc:
        if str(exc).startswith(f"{path}: "):
            raise
        raise ConstructionError(f"{path}: {exc}") from None
    extra = _json_field(blob, "extra", "{}", path)
    if not isinstance(extra, dict):
        raise ConstructionError(f"{path}: extra: expected a JSON object, got {type(extra).__name__}")
    sd = blob["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise ConstructionError(f"{path}: state_dict: expected a dict of tensors by name")
    sd = dict(sd)
    # what the architecture implies, against what the file holds: names and shapes, nothing allocated yet
    shapes = expected_state_shapes(spec, n)
    if fmt1:
        shapes.pop("output_scale.value")
    for key in sd:
        if key not in shapes:
            raise ConstructionError(f"{path}: state_dict[{key!r:.80}]: not a tensor of the network its spec "
                                    f"describes")
    for key, shape in shapes.items():
        t = sd.get(key)
        if t is None and key == "output_scale.value":
            continue  # written since format 2; filled in from the scales
        if t is None:
            raise ConstructionError(f"{path}: state_dict[{key!r}]: missing (the spec implies it)")
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            raise ConstructionError(f"{path}: state_dict[{key!r}]: expected a dense tensor, got {type(t).__name__}")
        if tuple(t.shape) != shape:
            i = int(key.split(".")[1]) if key.startswith("net.") else None
            claim = (f" (spec[{i}]: c0={spec[i]['block']['c0']}, c1={spec[i]['block']['c1']}, n={n})"
                     if i is not None else "")
            raise ConstructionError(f"{path}: state_dict[{key!r}]: shape {tuple(t.shape)}, but the spec implies "
                                    f"{shape}{claim}")
    check_memory(parameter_count(spec, n), "spec")
    dtype = sd[next(k for k in shapes if k.endswith("_orig"))].dtype
    for key, shape in shapes.items():
        t = sd.get(key)
        if t is None:
            continue
        where = f"{path}: state_dict[{key!r}]"
        if key.endswith("_orig"):
            if t.dtype not in (torch.float32, torch.float64) or t.dtype != dtype:
                raise ConstructionError(f"{where}: dtype {t.dtype}, expected the file's float dtype {dtype} "
                                        f"(float32 or float64)")
            if not bool(torch.isfinite(t).all()):
                raise ConstructionError(f"{where}: contains NaN or inf")
        elif key.endswith("_mask"):
            if t.dtype not in (torch.float32, torch.float64, torch.bool):
                raise ConstructionError(f"{where}: dtype {t.dtype}, expected a float or bool 0/1 mask")
            try:
                check_mask(t, t, where)
            except MaskError as exc:
                raise ConstructionError(_first_line(exc)) from None
        else:  # output_scale.value: the product of the scales
            if not t.is_floating_point() or not bool(torch.isfinite(t)) or float(t) <= 0:
                raise ConstructionError(f"{where}: expected a finite positive scale, got {t.item()!r}")
            prod = math.prod(float(s) for s in scales) if scales is not None else 1.0
            if not math.isclose(float(t), prod, rel_tol=1e-6):
                raise ConstructionError(f"{where}: {float(t)!r} is not the product of the scales ({prod!r})")
    return spec, n, scales, construction, extra, sd
