"""Typed results: the shared status vocabulary and the :class:`Solution` every backend returns."""
from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field

import numpy as np


class Status(str, enum.Enum):
    """Honest status vocabulary shared by all backends (cf. cvxpy's settings, but an Enum).

    ``OPTIMAL`` means optimality was *proven* for the returned 0/1 mask's true residual (see
    :func:`milp.backends.base.honest_status`); a solver's own "optimal" that its tolerances do not
    cover becomes ``FEASIBLE``.
    """

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    TIME_LIMIT = "time_limit"
    INFEASIBLE = "infeasible"
    FAILED = "failed"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


@dataclass
class Solution:
    """The result of one solve.

    Attributes:
        mask: exact 0/1 vector (``uint8``) of length n; all zeros when no solution was found.
        error: the true residual ``||z - sum_i mask_i X_i||_inf`` recomputed in float64 from ``mask``
            (``inf`` when no mask was found). Never the solver's claimed objective.
        solver_objective: what the solver claimed (in the instance's units), or ``None``.
        status: :class:`Status`.
        seconds: wall time of the solve (model building included).
        solver, solver_version: which backend and library version produced it.
        message: reason for failure or the note explaining a downgraded status.
        claimed_optimal: the solver itself declared optimality (even if not trusted).
        bound: the solver's own dual bound on the objective when it reports one, in the solver's
            tolerances: a claim, not a proof (see ``lower_bound``).
        time_to_first, time_to_best: seconds to first / best incumbent where the backend can tell.
        extra: backend details (e.g. CP-SAT's ``scale``); ``lower_bound_source`` says where
            ``lower_bound`` comes from.
        lower_bound: the best *valid* lower bound on the instance's optimum known when the solution was
            made (:func:`milp.bounds.apply_bounds`: the exact optimum when ``exact`` proved it, CP-SAT's
            integer bound less its rounding, the LP-duality bound recomputed in float64), or None when
            none was computed (e.g. solutions stored before these fields existed). ``error - lower_bound``
            bounds how far ``error`` can be from the optimum.
        floor: the first-moment counting estimate of the optimum (:func:`milp.bounds.counting_floor`): an
            estimate, not a bound; None when not computed.
    """

    mask: np.ndarray
    error: float
    status: Status
    solver: str
    seconds: float = 0.0
    solver_objective: float | None = None
    solver_version: str = ""
    message: str = ""
    claimed_optimal: bool = False
    bound: float | None = None
    time_to_first: float | None = None
    time_to_best: float | None = None
    extra: dict = field(default_factory=dict)
    lower_bound: float | None = None
    floor: float | None = None

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 1:
            raise ValueError(f"Solution.mask must be 1-D, got shape {mask.shape}")
        if mask.size and not np.isin(mask, (0, 1)).all():
            raise ValueError("Solution.mask must contain only exact 0/1 values (round before building it)")
        self.mask = mask.astype(np.uint8)
        self.status = Status(self.status)
        self.error = float(self.error)

    @property
    def found(self) -> bool:
        """Whether a mask was produced (any status but failed/infeasible with an infinite error)."""
        return np.isfinite(self.error)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mask"] = self.mask.tolist()
        d["status"] = self.status.value
        return d

    def to_json(self) -> str:
        d = self.to_dict()
        for name in ("error", "lower_bound", "floor"):
            if d[name] is not None and not np.isfinite(d[name]):
                d[name] = None
        return json.dumps(d)

    @classmethod
    def from_dict(cls, d: dict) -> "Solution":
        d = dict(d)
        d["mask"] = np.asarray(d["mask"], dtype=np.uint8)
        if d.get("error") is None:
            d["error"] = float("inf")
        return cls(**d)  # dicts written before lower_bound / floor existed load with None
