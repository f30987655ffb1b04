"""The backend contract (after cvxpy's ``Solver``): build the native model, solve it, map it back.

Every backend is one file with a :class:`Backend` subclass declaring its capabilities as class
attributes. :meth:`Backend.solve` wraps the backend's ``_solve`` so that a crash becomes a
``failed`` :class:`~milp.Solution` carrying the reason, never a silently wrong mask, and
:meth:`Backend.finish` is the single place where solver output becomes a Solution: binaries are
rounded to exact 0/1, the residual is recomputed in float64 and the status is made honest.
"""
from __future__ import annotations

import importlib.util
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

from ..instance import Instance
from ..solution import Solution, Status

#: A solver's "optimal" is trusted only if the true residual of the rounded mask is within this
#: relative / absolute slack of the objective it claimed (LP-based solvers print ~8-9 digits).
TRUST_REL = 1e-6
TRUST_ABS = 1e-12
#: Values further than this from 0/1 are reported in ``Solution.message`` as non-integral.
INTEGRALITY_WARN = 1e-3

# ------------------------------------------------------------------------------ time limits
# ``options.time_limit`` is a wall-clock budget for the whole of ``Backend.solve`` (model building,
# the solver, reading values back, ``finish``). Every backend stops within ``time_limit`` plus a
# small overhead documented in its module docstring (measured on the project's 2-core machine under
# full load from another job). Work whose size comes from the input (model building, recomputing the
# residual) is estimated from n*d with the measured per-cell costs below and either reserved out of
# the budget or refused up front.

#: seconds per cell (n*d) that :meth:`Backend.finish` needs to round the values and recompute the
#: residual with ``math.fsum`` (measured 0.04-0.06 us per cell here at n*d = 10^6..10^7; 2x margin).
#: Reserved out of every time limit, so that the answer is ready by the deadline.
FINISH_SECONDS_PER_CELL = 1e-7
#: a MILP solver is not started with less than this many seconds left (it would only return
#: "time limit, no solution" after paying its start-up cost)
MIN_SOLVER_SECONDS = 0.01


class UnsupportedInstance(ValueError):
    """The backend cannot take this instance (e.g. exact beyond its n); the message says why."""


class SolverNotAvailable(ValueError):
    """Unknown solver name, or its Python module is not installed."""


def cells(instance: Instance) -> int:
    """n*d: the size of the input every backend touches at least once (the MILP has 2d rows of n)."""
    return instance.n * instance.d


def deadline(options: "SolveOptions", t0: float, instance: Instance | None = None) -> float:
    """``time.perf_counter()`` value by which a backend started at ``t0`` must stop searching: the
    time limit minus the reserve :meth:`Backend.finish` needs for ``instance`` (``inf`` without a
    limit)."""
    if options.time_limit is None:
        return float("inf")
    reserve = 0.0 if instance is None else FINISH_SECONDS_PER_CELL * cells(instance)
    return t0 + float(options.time_limit) - reserve


def time_left(until: float) -> float:
    """Seconds until the ``deadline`` ``until`` (negative when past; ``inf`` without a limit)."""
    return until - time.perf_counter()


@dataclass(frozen=True)
class SolveOptions:
    """Options every backend takes. ``time_limit`` in seconds (None = none), ``threads`` workers,
    ``warm_start`` a 0/1 mask to hint (ignored by backends without warm-start support)."""

    time_limit: float | None = None
    seed: int = 0
    threads: int = 1
    warm_start: np.ndarray | None = None
    params: dict = field(default_factory=dict)

    def key(self) -> dict:
        """The options that affect the result, for cache keys."""
        ws = None if self.warm_start is None else np.asarray(self.warm_start, dtype=np.uint8).tolist()
        return {"time_limit": self.time_limit, "seed": self.seed, "threads": self.threads,
                "warm_start": ws, "params": dict(sorted(self.params.items()))}


class Backend:
    """Base class. Subclasses set ``name``, ``REQUIRED_MODULES`` and implement ``_solve``."""

    name: str = ""
    REQUIRED_MODULES: tuple[str, ...] = ()
    SUPPORTS_WARM_START: bool = False
    PROVES_OPTIMALITY: bool = False
    #: bump when a change to the backend can change its results: stored solutions of older
    #: revisions are then not reused (the revision is part of every store key)
    REVISION: int = 1
    #: solves take milliseconds on typical instances, so batches use large chunks (see
    #: :meth:`is_fast` and :func:`milp.batch.auto_chunk_size`); MILP backends take >= ~50 ms
    FAST: bool = False
    #: the backend never reads ``options.warm_start``: :func:`milp.solve` then neither checks nor
    #: computes the ``warm_start`` argument and passes None (``auto`` builds its own)
    IGNORES_WARM_START: bool = False
    #: MILP backends, measured here (see :meth:`build_estimate`): seconds per cell (n*d) of Python
    #: model building before the native solver starts ...
    BUILD_SECONDS_PER_CELL: float = 0.0
    #: ... seconds per cell the native solver spends outside its own clock (loading or extracting the
    #: model, writing/reading files) plus reading the values back; reserved out of the solver's limit ...
    UNCOUNTED_SECONDS_PER_CELL: float = 0.0
    #: ... and a fixed start-up cost per solve (solver object, subprocess), also reserved.
    FIXED_SECONDS: float = 0.0
    #: largest n*d whose model the backend builds at all (memory of the native model); None = no cap.
    MAX_CELLS: int | None = None

    # --------------------------------------------------------------- capability
    @classmethod
    def available(cls) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in cls.REQUIRED_MODULES)

    @classmethod
    def store_revision(cls) -> str:
        """What store keys record of this backend's code (see :func:`milp.backends.revision`)."""
        return f"{cls.name}{cls.REVISION}"

    def accepts(self, instance: Instance) -> tuple[bool, str]:
        if self.MAX_CELLS is not None and cells(instance) > self.MAX_CELLS:
            return False, (f"its model of n*d = {cells(instance):,} cells exceeds the {self.name} backend's "
                           f"MAX_CELLS = {self.MAX_CELLS:,} (memory of the native model); use 'heuristic'")
        return True, ""

    # ------------------------------------------------------------- time limits
    def build_estimate(self, instance: Instance) -> float:
        """Seconds this backend needs besides the solver's own search: building the model, the work
        the solver does outside its clock, reading values back and :meth:`finish` (measured constants)."""
        return self.FIXED_SECONDS + cells(instance) * (self.BUILD_SECONDS_PER_CELL + self.UNCOUNTED_SECONDS_PER_CELL
                                                       + FINISH_SECONDS_PER_CELL)

    def fits(self, instance: Instance, seconds: float | None) -> bool:
        """Whether the model of ``instance`` can be built and read back within ``seconds`` (None = no limit)."""
        return seconds is None or self.build_estimate(instance) <= seconds

    def refuse_unless_fits(self, instance: Instance, options: SolveOptions, t0: float) -> Solution | None:
        """The up-front check of MILP backends: a ``time_limit`` failure (no mask) when building the
        model alone would not fit the time limit, else None."""
        if self.fits(instance, options.time_limit):
            return None
        return self.failure(
            instance, f"refused up front: building and reading back the {self.name} model of n*d = "
                      f"{cells(instance):,} cells is estimated at {self.build_estimate(instance):.3g} s here "
                      f"(FIXED_SECONDS + n*d * (BUILD_SECONDS_PER_CELL + UNCOUNTED_SECONDS_PER_CELL + "
                      f"FINISH_SECONDS_PER_CELL)), more than time_limit = {options.time_limit:g} s; raise the "
                      f"limit or use 'heuristic'", seconds=time.perf_counter() - t0, status=Status.TIME_LIMIT)

    def solver_seconds(self, instance: Instance, until: float) -> float:
        """Seconds to give the native solver when the answer is due at ``until`` (a :func:`deadline`):
        what is left minus the work it does outside its own clock (``inf`` without a limit)."""
        return time_left(until) - self.FIXED_SECONDS - self.UNCOUNTED_SECONDS_PER_CELL * cells(instance)

    def out_of_time(self, instance: Instance, t0: float, built: float) -> Solution:
        """The failure when model building left the solver less than ``MIN_SOLVER_SECONDS``."""
        return self.failure(instance, f"time limit reached while building the {self.name} model "
                                      f"({built:.3g} s for n*d = {cells(instance):,} cells); the solver was not started",
                            seconds=time.perf_counter() - t0, status=Status.TIME_LIMIT)

    def is_fast(self, instance: Instance) -> bool:
        """Whether solving ``instance`` takes milliseconds (batch chunking); ``FAST`` unless overridden."""
        return self.FAST

    def version(self) -> str:
        return ""

    def prepare(self) -> None:
        """One-time start-up a process pays before its first solve (e.g. compiling kernels); batch workers
        call it before their first instance's clock starts. Default: nothing."""

    # -------------------------------------------------------------------- solve
    def solve(self, instance: Instance, options: SolveOptions | None = None) -> Solution:
        options = options or SolveOptions()
        ok, why = self.accepts(instance)
        if not ok:
            raise UnsupportedInstance(f"solver '{self.name}' cannot take {instance!r}: {why}")
        t0 = time.perf_counter()
        try:
            sol = self._solve(instance, options)
        except Exception as exc:  # a crashing backend yields 'failed' with the reason
            return self.failure(instance, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}",
                                seconds=time.perf_counter() - t0)
        sol.seconds = time.perf_counter() - t0
        return sol

    def _solve(self, instance: Instance, options: SolveOptions) -> Solution:  # pragma: no cover
        raise NotImplementedError

    # ------------------------------------------------------------------ results
    def failure(self, instance: Instance, reason: str, seconds: float = 0.0,
                status: Status = Status.FAILED) -> Solution:
        """The one factory for every solve that produced no usable mask."""
        return Solution(mask=np.zeros(instance.n, dtype=np.uint8), error=float("inf"), status=status,
                        solver=self.name, seconds=seconds, solver_version=self._safe_version(),
                        message=reason)

    def _safe_version(self) -> str:
        try:
            return self.version()
        except Exception:  # pragma: no cover
            return ""

    def finish(self, instance: Instance, values, *, claimed: Status, objective: float | None,
               seconds: float = 0.0, bound: float | None = None, trust: bool = False,
               trust_slack: float = 0.0, **extra) -> Solution:
        """Turn a backend's raw answer into an honest :class:`Solution`.

        ``values``: the solver's a_i (possibly fractional); rounded to exact 0/1 here.
        ``claimed``: the status the solver reported, mapped to :class:`Status`.
        ``objective``: the solver's objective in the instance's units.
        ``trust``: the backend proves optimality exactly (exact enumeration).
        ``trust_slack``: known absolute error of the solver's arithmetic (CP-SAT quantisation).
        """
        if values is None:
            status = claimed if claimed in (Status.INFEASIBLE, Status.TIME_LIMIT) else Status.FAILED
            return self.failure(instance, extra.pop("message", "solver returned no solution"),
                                seconds=seconds, status=status)
        raw = np.asarray(values, dtype=np.float64).reshape(-1)
        if raw.shape != (instance.n,) or not np.isfinite(raw).all():
            return self.failure(instance, f"solver returned malformed values (shape {raw.shape})", seconds)
        mask = (raw > 0.5).astype(np.uint8)
        notes = []
        off = float(np.max(np.abs(raw - mask))) if raw.size else 0.0
        if off > INTEGRALITY_WARN:
            notes.append(f"solver values were up to {off:.3g} away from 0/1 before rounding")
        if not instance.feasible(mask):
            return self.failure(
                instance, f"rounded mask has {int(mask.sum())} items but cardinality k={instance.cardinality}"
                          f" (solver values up to {off:.3g} from 0/1)", seconds)
        error = instance.residual(mask)
        status = claimed
        claimed_optimal = claimed == Status.OPTIMAL
        if claimed_optimal and not trust:
            slack = TRUST_ABS + trust_slack + (TRUST_REL * abs(objective) if objective is not None else 0.0)
            if objective is None or error > objective + slack:
                status = Status.FEASIBLE
                notes.append(f"solver claimed optimal with objective {objective!r}, but the rounded mask's "
                             f"true residual is {error:.6g}: optimality not proven (solver tolerances)")
        if status in (Status.INFEASIBLE, Status.FAILED):
            status = Status.FEASIBLE  # a mask was found after all
        return Solution(mask=mask, error=error, status=status, solver=self.name, seconds=seconds,
                        solver_objective=None if objective is None else float(objective),
                        solver_version=self._safe_version(), message="; ".join(notes),
                        claimed_optimal=claimed_optimal, bound=bound,
                        time_to_first=extra.pop("time_to_first", None),
                        time_to_best=extra.pop("time_to_best", None), extra=extra)
