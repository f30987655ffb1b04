"""Experiment (a) of issue 12: the first empirical curve of NeurIPS 2023 Theorem 3 on random targets.

The subproblem of one filter in the proof of Lemma 12: for an input channel t0 of a target kernel K
(c1 x c0 x d x d, ``||K[:, t0]||_1 <= 1``), the candidates are U[:, k, :, :] * V[t0, k] for the k of
t0's positive half-block with V[t0, k] > 0 -- NSN vectors (Definition 4, Lemma 18) of dimension
``dim = c1 * d * d`` -- and the target is K[:, t0] flattened. The network of Theorem 3 has 2n channels
per input channel; about n/2 of each half-block have V > 0. Here ``n`` is simply the number of
candidates of one MRSS instance (m = n): a network would need roughly 2n channels of its half-block
per input channel to offer n such candidates.

Per (dim, n, repeat), with ``rng = np.random.default_rng([seed, dim, n, repeat])`` (draw order fixed):
candidates ``nsn(rng, n, dim)``; then a target with a uniformly random direction and l1 norm r,
``z = u / ||u||_1 * r`` with ``u ~ N(0, I_dim)`` and (``radius``) ``r = 1`` (default: the boundary of
Theorem 3's hypothesis ``||K[:, t0]||_1 <= 1``, the largest targets it covers) or ``r ~ U[0, 1]``
(``radius="uniform"``; r is drawn in both cases, so the streams agree). No cardinality constraint
(Lemma 12 keeps any subset of the block).

Dimensions: the distinct ``c1 * d^2`` for d in {1, 3}, c1 in {1, 2, 4}: 1, 2, 4, 9, 18, 36 (c0 only
multiplies the number of independent instances, not their dimension). n = 4, 8, ..., 1024; a
dimension's sweep stops after the first n at which every solver's median error is <= ``stop_error``
(one decade below the smallest eps of the fit: the error no longer matters there).

Solvers at a fixed budget per instance (``time_limit``, one thread, two worker processes through
:func:`milp.solve_many` and its resumable store): ``exact`` (full enumeration, proven optimum) where
n <= ``exact_max_n``, and ``heuristic``, ``auto``, ``highs``, ``cpsat`` at every n. Every error is
``||z - sum_i mask_i X_i||_inf`` recomputed in float64 from the 0/1 mask (``Solution.error``).

Beside each instance: the counting estimate ``floor = R * 2^(-n/dim) / 2`` with R the largest range of
subset sums over the coordinates (sum of positive parts minus sum of negative parts): 2^n subset sums
spread evenly over a box of side R leave cells of side R * 2^(-n/dim). It is an estimate of what n
candidates could reach, NOT a lower bound (sums concentrate; the target sits near the origin, not
in a random cell), and the empty mask's error ``||z||_inf`` is recorded too.

The analysis (medians, n needed for eps against dim, log-log fits, comparison with Theorem 3's
``n >= C d^12 c^6 log^3(...)`` = ``C dim^6 log^3(...)``) lives in
:mod:`pipelines.experiments.structured_random_report`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.random_tensors import nsn

from ..reporting import machine_line
from .base import ExperimentConfig, config_record, record_run, start_run
from .structured_random_report import COLUMNS, median_errors, write_all

NAME = "structured-random"
DESCRIPTION = ("NeurIPS 2023 Theorem 3 on random targets: MRSS error against n per solver for NSN candidates "
               "of dimension c1*d^2, the counting floor, and the n needed for eps against dimension")

#: the distinct c1 * d^2 for d in {1, 3}, c1 in {1, 2, 4}
DIMS = tuple(sorted({c1 * d * d for d in (1, 3) for c1 in (1, 2, 4)}))
NS = tuple(2 ** k for k in range(2, 11))  # 4 .. 1024
SOLVERS = ("exact", "heuristic", "auto", "highs", "cpsat")
#: target l1 norm: exactly 1, or r ~ U[0, 1]
RADII = ("one", "uniform")


#: the tickets of the verification section: name -> (layers, input shape (c0, D, D)); weights: PyTorch's default
#: init under torch.manual_seed(seed), every conv's weight then scaled to max_t0 ||K[:, t0]||_1 = 1 (Theorem 3's
#: hypothesis, at its boundary like the MRSS targets above) and its bias by 1/4 (with the bias scaled like the weight,
#: a first layer of 1 x 1 convs had pre-activations below 0 on the whole box: a dead layer, f constant)
VERIFY_TARGETS = {
    "conv1x1": (lambda nn: [nn.Conv2d(1, 2, 1)], (1, 3, 3)),  # dim 2
    "conv3x3": (lambda nn: [nn.Conv2d(1, 1, 3)], (1, 4, 4)),  # dim 9
    "conv1x1-relu-conv1x1": (lambda nn: [nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 1)], (1, 3, 3)),  # dims 2, 2
}


class StructuredRandomError(ValueError):
    """A bad config field; the message names it."""


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Everything that determines the study's numbers; its hash names the run."""

    NAME = NAME
    dims: tuple = DIMS
    ns: tuple = NS
    repeats: int = 5
    solvers: tuple = SOLVERS
    time_limit: float = 1.0
    exact_max_n: int = 20
    stop_error: float = 1e-3
    eps: tuple = (1e-1, 1e-2)
    rel_eps: tuple = (0.1,)
    radius: str = "one"
    seed: int = 0
    verify_targets: tuple = tuple(VERIFY_TARGETS)
    verify_ns: tuple = (8, 32)
    verify_solve_time: float = 5.0
    verify_points: int = 2000
    verify_attack_time: float = 20.0
    verify_attack_rounds: int = 10
    verify_time_limit: float = 30.0
    verify_milp_total: float = 60.0

    def __post_init__(self) -> None:
        super().__post_init__()
        from milp.backends import REGISTRY

        for name in ("dims", "ns", "solvers", "eps", "rel_eps"):
            value = getattr(self, name)
            if isinstance(value, (str, int, float)):
                self._set(name, (value,))
        try:
            dims = tuple(sorted({int(d) for d in self.dims}))
            ns = tuple(sorted({int(n) for n in self.ns}))
        except (TypeError, ValueError):
            raise StructuredRandomError(f"dims / ns: must be positive integers, got {self.dims!r} / {self.ns!r}") from None
        if not dims or dims[0] < 1:
            raise StructuredRandomError(f"dims: must be positive integers, got {self.dims!r}")
        if not ns or ns[0] < 1:
            raise StructuredRandomError(f"ns: must be positive integers, got {self.ns!r}")
        self._set("dims", dims)
        self._set("ns", ns)
        solvers = tuple(dict.fromkeys(str(s) for s in self.solvers))
        for s in solvers:
            if s not in REGISTRY:
                raise StructuredRandomError(f"solvers: unknown solver {s!r}; choose from {', '.join(REGISTRY)}")
        if not solvers:
            raise StructuredRandomError("solvers: give at least one solver")
        self._set("solvers", solvers)
        if int(self.repeats) < 1:
            raise StructuredRandomError(f"repeats: must be >= 1, got {self.repeats!r}")
        self._set("repeats", int(self.repeats))
        tl = float(self.time_limit) if self.time_limit is not None else float("nan")
        if not (tl > 0) or not math.isfinite(tl):
            raise StructuredRandomError(f"time_limit: must be a positive number of seconds, got {self.time_limit!r}")
        self._set("time_limit", tl)
        self._set("exact_max_n", int(self.exact_max_n))
        if not (float(self.stop_error) >= 0):
            raise StructuredRandomError(f"stop_error: must be >= 0, got {self.stop_error!r}")
        self._set("stop_error", float(self.stop_error))
        for name in ("eps", "rel_eps"):
            values = tuple(sorted({float(e) for e in getattr(self, name)}, reverse=True))
            if any(not (0 < e < math.inf) for e in values):
                raise StructuredRandomError(f"{name}: every level must be a positive number, got {getattr(self, name)!r}")
            self._set(name, values)
        if self.radius not in RADII:
            raise StructuredRandomError(f"radius: choose one of {', '.join(RADII)}, got {self.radius!r}")
        self._set("seed", int(self.seed))
        unknown = [t for t in self.verify_targets if t not in VERIFY_TARGETS]
        if unknown:
            raise StructuredRandomError(f"verify_targets: unknown {', '.join(map(str, unknown))}; choose from "
                                        f"{', '.join(VERIFY_TARGETS)}")


# ----------------------------------------------------------------------------- instances
def sample(seed: int, dim: int, n: int, repeat: int, radius: str = "one") -> tuple[np.ndarray, np.ndarray]:
    """(candidates n x dim, target dim): NSN candidates, then ``z = u / ||u||_1 * r``, u ~ N(0, I),
    r = 1 (``radius="one"``) or r ~ U[0, 1] (``"uniform"``; drawn in both cases)."""
    if radius not in RADII:
        raise StructuredRandomError(f"radius: choose one of {', '.join(RADII)}, got {radius!r}")
    rng = np.random.default_rng([seed, dim, n, repeat])
    X = nsn(rng, n, dim)
    u = rng.standard_normal(dim)
    r = rng.uniform(0.0, 1.0)
    return X, u / np.abs(u).sum() * (1.0 if radius == "one" else r)


def subset_sum_range(X: np.ndarray) -> float:
    """R: the largest range of subset sums over the coordinates, max_j (sum_i X_ij^+ - sum_i X_ij^-)
    = max_j sum_i |X_ij| (every subset sum of coordinate j lies in [sum of negatives, sum of positives])."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    return float((np.clip(X, 0, None).sum(axis=0) - np.clip(X, None, 0).sum(axis=0)).max())


def counting_floor(X: np.ndarray) -> float:
    """The counting estimate R * 2^(-m/dim) / 2 for m candidates of dimension dim (X: m x dim): 2^m
    subset sums spread evenly over the box of side R leave cells of side R * 2^(-m/dim), whose points
    are at most half a side away in max norm. An estimate, not a bound."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    m, dim = X.shape
    return float(subset_sum_range(X) * np.exp2(-m / dim) / 2.0)


def default_store() -> Path:
    """``<cache>/stores/structured-random.sqlite``: every solve of this study."""
    from ..paths import store_dir

    return store_dir() / "structured-random.sqlite"


# ----------------------------------------------------------------------------- running
def _row(meta: dict, solver: str, sol) -> dict:
    msg = (sol.message or "").splitlines()[0][:200] if sol.message else ""
    return {**meta, "solver": solver, "error": float(sol.error), "status": sol.status.value,
            "seconds": round(float(sol.seconds), 4), "solved_by": sol.solver,
            "watchdog": bool(sol.extra.get("watchdog", False)) if isinstance(sol.extra, dict) else False,
            "message": msg}


def _stops(rows: list[dict], dim: int, n: int, stop_error: float) -> bool:
    """Every solver run at (dim, n) has median error <= stop_error."""
    med = median_errors([r for r in rows if int(r["dim"]) == dim and int(r["n"]) == n])
    return bool(med) and all(v <= stop_error for v in med.values())


def verify_target(name: str, seed: int):
    """The small target ``name`` of :data:`VERIFY_TARGETS` (float64): every conv's weight scaled to
    max_t0 ||K[:, t0]||_1 = 1, its bias by 1/4."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    t = nn.Sequential(*VERIFY_TARGETS[name][0](nn)).double().eval()
    with torch.no_grad():
        for m in t:
            if isinstance(m, nn.Conv2d):
                m.weight.div_(m.weight.abs().sum(dim=(0, 2, 3)).max())
                m.bias.mul_(0.25)
    return t


def verification(config: Config, progress: bool = True) -> list[dict]:
    """The four numbers (:mod:`pipelines.experiments.four_numbers`) of the structured construction (Theorem 3,
    ``domain="signed"``: inputs in [-1, 1], both half-blocks, the setting of the MRSS instances above) of every
    target of ``verify_targets`` at every n of ``verify_ns`` (solver ``auto``: exact where it fits, else
    ``verify_solve_time`` s per instance); empirical
    over ``verify_points`` uniform points of the box."""
    import torch

    from ..constructions import construct
    from .four_numbers import progress_line, ticket_row

    rows = []
    for name in config.verify_targets:
        target, shape = verify_target(name, config.seed), VERIFY_TARGETS[name][1]
        for n in config.verify_ns:
            t0 = time.perf_counter()
            c, _ = construct(target, n, "structured", solver="auto", seed=config.seed, domain="signed", n_jobs=1,
                             time_limit=config.verify_solve_time)
            lo, hi = c.input_domain()
            data = lo + (hi - lo) * torch.rand((config.verify_points, *shape), dtype=torch.float64,
                                               generator=torch.Generator().manual_seed(config.seed))
            row = {"target": name, "n": n, **ticket_row(
                target, c, shape, data, seed=config.seed, attack_time=config.verify_attack_time,
                attack_rounds=config.verify_attack_rounds, time_limit=config.verify_time_limit,
                milp_total=config.verify_milp_total, domain=(lo, hi))}
            rows.append(row)
            if progress:
                print(progress_line(NAME, f"verification {name} n={n}", row, t0), flush=True)
    return rows


def run(config: Config, *, out=None, progress: bool = True, command: str = "", n_jobs: int = 2, store=None,
        skip_finished: bool = False, verification_only: bool = False) -> dict:
    """Run the sweep (resumable: solved instances come from the store) and write the report into ``out``.

    Runtime arguments (they do not change what is measured): ``n_jobs`` worker processes; ``store`` the
    SQLite store (default :func:`default_store`); ``skip_finished`` returns the summary already in
    ``out`` when it records a finished run of this config; ``verification_only`` recomputes only the
    verification section of the run already in ``out`` (same config up to the ``verify_*`` fields)."""
    import milp

    from .four_numbers import previous_summary, rerun_verification, run_record
    from .structured_random_report import read_rows

    previous = previous_summary(out, config) if verification_only else None
    started, out, done = start_run(config, Config, out, progress, skip_finished)
    if done is not None:
        return done
    if previous is not None:
        previous.pop("analysis", None)
        summary = rerun_verification(out, config, command, started, previous, lambda: verification(config, progress))
        summary = write_all(read_rows(Path(out) / "results.csv"), summary, out)
        return {**summary, "out": str(out)}
    store = store if store is not None else default_store()
    available = set(milp.available_solvers())
    solvers = [s for s in config.solvers if s in available]
    missing = [s for s in config.solvers if s not in available]
    if progress and missing:
        print(f"[{NAME}] not installed, skipped: {', '.join(missing)}", flush=True)
    t_all = time.perf_counter()
    rows: list[dict] = []
    active = list(config.dims)
    last_n: dict[int, int] = {}
    stopped_at: dict[int, int | None] = {d: None for d in config.dims}
    stages: dict[str, float] = {}
    for n in config.ns:
        if not active:
            break
        t0 = time.perf_counter()
        metas, instances = [], []
        for dim in active:
            for rep in range(config.repeats):
                X, z = sample(config.seed, dim, n, rep, config.radius)
                metas.append({"dim": dim, "n": n, "repeat": rep, "floor": counting_floor(X),
                              "range": subset_sum_range(X), "empty_error": float(np.abs(z).max()),
                              "target_l1": float(np.abs(z).sum())})
                instances.append(milp.Instance(X, z))
        for solver in solvers:
            if solver == "exact" and n > config.exact_max_n:
                continue
            sols = milp.solve_many(instances, solver=solver, n_jobs=n_jobs, store=store,
                                   time_limit=config.time_limit, seed=config.seed, threads=1, progress=False)
            rows += [_row(m, solver, s) for m, s in zip(metas, sols)]
        for dim in active:
            last_n[dim] = n
        for dim in list(active):
            if _stops(rows, dim, n, config.stop_error):
                active.remove(dim)
                stopped_at[dim] = n
        stages[f"n={n}"] = round(time.perf_counter() - t0, 2)
        if progress:
            here = [r for r in rows if int(r["n"]) == n]
            meds = []
            for dim in sorted({int(r["dim"]) for r in here}):
                med = median_errors([r for r in here if int(r["dim"]) == dim])
                best = min(med.values()) if med else float("nan")
                meds.append(f"dim {dim}: {best:.1e}")
            el = time.perf_counter() - t_all
            print(f"[{NAME}] n = {n}: {len(instances)} instances x {len(solvers)} solvers in {stages[f'n={n}']:.1f} s; "
                  f"best median error {'; '.join(meds)}; still sweeping dims {active} (elapsed {el:.0f} s)", flush=True)
    t0 = time.perf_counter()
    ver = verification(config, progress)
    stages["verification"] = round(time.perf_counter() - t0, 2)
    summary = {"command": command, "machine": machine_line(), **config_record(config),
               "verification": ver, "verification_run": run_record(command, time.perf_counter() - t0),
               "solvers_run": solvers, "solvers_missing": missing, "n_jobs": n_jobs,
               "last_n": {str(d): last_n.get(d) for d in config.dims},
               "stopped_at": {str(d): v for d, v in stopped_at.items()},
               "stages": stages,
               "wall_seconds": round(time.perf_counter() - t_all, 1)}
    record_run(out, config, command, started, stages=stages)
    summary = write_all(rows, summary, out)
    return {**summary, "out": str(out)}


def rewrite_report(out) -> None:
    """Rewrites the figures, summary.json and report.md of a finished run from its results.csv and
    summary.json (no recomputation)."""
    from .structured_random_report import rewrite

    rewrite(out)


__all__ = ["NAME", "DESCRIPTION", "Config", "run", "rewrite_report", "sample", "subset_sum_range", "counting_floor",
           "COLUMNS", "DIMS", "NS", "SOLVERS"]
