"""The construction interface, typed subproblems and target scaling by positive homogeneity.

A *construction* turns a target network f into a random over-parameterised network whose pruning is
decided by subset-sum problems (one :class:`Subproblem` each), and knows how to put the solved masks
back (:meth:`Construction.apply`), what the pruned network computes in the target's own shape
(:meth:`Construction.effective`) and how far it can be from f (:meth:`Construction.certify`).

Target scaling (every construction). ReLU and max-pooling are positively homogeneous
(relu(a x) = a relu(x), maxpool(a x) = a maxpool(x) for a > 0). Replacing the i-th conv (K_i, b_i)
of f by (K_i / lambda_i, b_i / Lambda_i), Lambda_i = lambda_1 ... lambda_i, gives a network f_s with
f = Lambda_l f_s. The construction approximates f_s (whose entries are small enough for the subset
sums to reach) and the pruned network multiplies its output by Lambda_l (:class:`OutputScale`). The
effective weights in the target's own units are then (lambda_i L_i, Lambda_i c_i), so every error
(per entry, per output, certified) is measured against f itself and is Lambda-times the error
against f_s: scaling trades reachability for amplification.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from models.random_cnn import ConstructionError


@dataclass(frozen=True)
class Subproblem:
    """One subset-sum problem of a construction.

    Attributes:
        instance: the :class:`milp.Instance` (None when no candidate exists: the target value is then
            approximated by 0, residual = |target|).
        layer: index of the random block (0-based, in conv order) whose mask this decides.
        kind: what is approximated: ``"weight"`` or ``"bias"`` (ICLR), ``"filter"`` (structured), ...
        entry: index of the approximated entry in the target tensor (after scaling).
        units: for each candidate variable, the random unit it keeps (e.g. hidden channel t of U).
        target: the (scaled) value or vector the candidates must sum to.
    """

    instance: Any
    layer: int
    kind: str
    entry: tuple
    units: np.ndarray
    target: Any

    @property
    def residual_if_empty(self) -> float:
        return float(np.max(np.abs(np.asarray(self.target, dtype=np.float64))))


@dataclass
class LayerOptions:
    """What a construction reproduces exactly, declared per layer type: option name -> allowed values
    (a tuple of values) or None for "any value, carried into the random network"."""

    allowed: dict[type, dict[str, Any]] = field(default_factory=dict)

    def check(self, i: int, m: nn.Module, construction: str) -> None:
        kind = type(m)
        if kind not in self.allowed:
            raise ConstructionError(f"target[{i}]: {kind.__name__} is not supported by the {construction} construction; "
                                    f"allowed layers: {', '.join(k.__name__ for k in self.allowed)}")
        for opt, values in self.allowed[kind].items():
            if values is None:
                continue
            v = getattr(m, opt)
            v = tuple(v) if isinstance(v, (list, tuple)) else v
            if v not in values:
                raise ConstructionError(f"target[{i}]: {kind.__name__}({opt}={v!r}) is not reproduced by the {construction} "
                                        f"construction (it carries only {opt} in {list(values)}); change the layer or "
                                        f"choose another construction")


# ----------------------------------------------------------------------------- scaling
def sequential_layers(target, expected: str, hint: str = " (pass e.g. model.features)") -> list[nn.Module]:
    """The layers of a target that must be a non-empty ``nn.Sequential`` (of ``expected`` layers)."""
    if not isinstance(target, nn.Sequential):
        raise ConstructionError(f"target: expected an nn.Sequential of {expected}, got {type(target).__name__}{hint}")
    layers = list(target)
    if not layers:
        raise ConstructionError("target: the nn.Sequential is empty")
    return layers


def check_finite_weights(i: int, m: nn.Module) -> None:
    """Refuses target layer ``i`` when its weight or bias holds NaN or inf."""
    for name in ("weight", "bias"):
        p = getattr(m, name, None)
        if p is not None and not torch.isfinite(p).all():
            raise ConstructionError(f"target[{i}].{name}: contains NaN or inf; fix the model's weights")


def fixed_lambdas(scale, count: int):
    """(lambdas, info) for the scales that need no look at the instances: ``"none"`` (all 1) and a fixed
    float (the same lambda for all ``count`` layers); None for ``"auto"``, which each construction
    chooses from its own candidates."""
    if scale == "none":
        return [1.0] * count, {"mode": "none"}
    if isinstance(scale, float):
        return [scale] * count, {"mode": "fixed", "value": scale}
    return None


def parse_scale(scale) -> str | float:
    """``"none"``, ``"auto"`` or a finite positive float (the same lambda for every conv)."""
    if isinstance(scale, str):
        s = scale.strip().lower()
        if s in ("none", "auto"):
            return s
        try:
            scale = float(s)
        except ValueError:
            raise ConstructionError(f"--scale: expected none, auto or a positive number, got {scale!r}") from None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ConstructionError(f"--scale: expected none, auto or a positive number, got {scale!r}")
    return float(scale)


def cumulative(lambdas) -> list[float]:
    """Lambda_i = lambda_1 ... lambda_i."""
    out, acc = [], 1.0
    for lam in lambdas:
        acc *= float(lam)
        out.append(acc)
    return out


def scaled_target(target: nn.Sequential, lambdas) -> nn.Sequential:
    """f_s: a float64 copy of ``target`` whose i-th conv is (K_i / lambda_i, b_i / Lambda_i), so that
    target(x) = Lambda_l * f_s(x) for every x (positive homogeneity of ReLU and max-pooling)."""
    net = copy.deepcopy(target).double()
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    if len(convs) != len(lambdas):
        raise ConstructionError(f"scales: {len(lambdas)} factors for {len(convs)} convolutions")
    with torch.no_grad():
        for m, lam, cum in zip(convs, lambdas, cumulative(lambdas)):
            m.weight.div_(lam)
            if m.bias is not None:
                m.bias.div_(cum)
    return net.eval()


# ----------------------------------------------------------------------------- interface
class Construction:
    """Base class. A subclass sets ``name``, ``description``, ``LAYERS`` and implements the methods.

    Life cycle: ``c = Cls(target, n, seed=..., dist=..., scale=...)`` builds the random network
    (``c.network``, masks at their a-priori values); ``c.subproblems()`` lists the subset-sum problems;
    ``c.apply(solutions)`` (one :class:`milp.Solution` or None per subproblem) sets the masks;
    ``c.effective()`` is a target-shaped network computing what the pruned network computes;
    ``c.certify()`` bounds sup |f - g| over the input domain. ``Cls.attach(target, network)`` rebuilds
    the object around a pruned network read from a file (for verification)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    LAYERS: ClassVar[LayerOptions] = LayerOptions()
    #: True: the construction prunes a whole LeNet5 (conv part and dense head), False: its conv part only
    WHOLE_NETWORK: ClassVar[bool] = False

    target: nn.Sequential
    network: nn.Module
    lambdas: list[float]

    def _set_output_scale(self) -> None:
        """Records the scaling factors lambda_i in the network and sets its output scale Lambda_l = prod lambda_i."""
        self.network.scales = list(self.lambdas)
        with torch.no_grad():
            self.network.output_scale.value.fill_(float(np.prod(self.lambdas)))

    @classmethod
    def check_target(cls, target: nn.Module) -> list[nn.Module]:  # pragma: no cover - interface
        raise NotImplementedError

    def subproblems(self) -> list[Subproblem]:  # pragma: no cover - interface
        raise NotImplementedError

    def apply(self, solutions) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def effective(self) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError

    def certify(self, input_bound: float = 1.0) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def attach(cls, target: nn.Sequential, network: nn.Module) -> "Construction":  # pragma: no cover
        raise NotImplementedError


def solve_subproblems(c: "Construction", solver: str = "auto", n_jobs: int = 1, store=None, time_limit=None,
                      seed: int = 0, progress: bool = False) -> dict:
    """Solve every subproblem of a built construction ``c`` through the batch engine (``milp.solve_many``:
    parallel, resumable from ``store``) and apply the masks.

    Returns info: per-subproblem ``residuals`` (in the scaled units the solver saw; the empty subset's
    max |target| where no candidate exists or nothing was found), ``statuses`` (counts, with
    ``no_candidate``), ``instances``, ``seconds`` (summed solver time), ``lambdas`` and ``scaling``."""
    import milp

    subs = c.subproblems()
    todo = [i for i, sp in enumerate(subs) if sp.instance is not None]
    sols = milp.solve_many([subs[i].instance for i in todo], solver=solver, n_jobs=n_jobs, store=store,
                           time_limit=time_limit, seed=seed, progress=progress) if todo else []
    solutions: list = [None] * len(subs)
    residuals = np.array([sp.residual_if_empty for sp in subs])
    statuses: dict[str, int] = {}
    for i, s in zip(todo, sols):
        statuses[s.status.value] = statuses.get(s.status.value, 0) + 1
        if s.found:
            solutions[i] = s
            residuals[i] = s.error
    statuses["no_candidate"] = len(subs) - len(todo)
    c.apply(solutions, subs)
    return {"residuals": residuals, "statuses": statuses, "instances": len(subs),
            "seconds": float(sum(s.seconds for s in sols)), "lambdas": list(c.lambdas),
            "scaling": dict(c.scaling_info)}
