"""``slth bench``: solver benchmarks on subset-sum instances, with honest tables and profiles.

Suites (fixed seeds; every instance is written to ``<out>/instances/`` so it can be re-solved):

- ``rss``: x_i ~ U[-1, 1], z ~ U[-1, 1], n in {10, 15, 20, 25, 30, 35, 40}.
- ``rfss``: the same with a fixed subset size k = n/4 and k = n/2 (sparsity paper, RFSS),
  n in {10, 20, 30, 40}.
- ``mrss``: d in {4, 25, 150, 400} x n in {32, 128, 512}; candidates are NSN vectors
  (NeurIPS 2023, Definition 4: X_ij = Z_i * Z_ij, all standard normal); Theorem 5's regime:
  fixed subset size k = floor(sqrt(n)) (n >= k^2) and a target with ||z||_1 = sqrt(k) / 2
  (the theorem asks ||z||_1 <= sqrt(k)).
- ``lenet5``: from the trained MNIST LeNet5 of ``slth reproduce iclr-lenet5``: ICLR 2022 RSS
  instances (random conv parameters, n = 20 and 30, the sweep's own candidates) and structured
  MRSS instances in the form of NeurIPS 2023 Section 4 (Lemma 11/12): one target per input channel
  t0 of a conv layer, the slice K[:, t0] flattened (d = 5*5*6 = 150 for conv1, 5*5*16 = 400 for
  conv2), scaled to ||z||_1 = 1 (the theorem's hypothesis ||K||_1 <= 1; the network is
  positively homogeneous, so the scale can be carried to the output), n = 128 NSN candidates, k = 11.
- ``structured``: the MRSS instances the structured construction solves on that LeNet5 (dims 150, 400, 25).
- ``vector``: free MRSS as issue 13 states it: NSN candidates, d in {25, 150} x n in {256, 1024, 4096},
  targets kernel-like (entries ~ N(0, 0.1^2)) and uniform (U[-0.5, 0.5]), no cardinality.

Solvers: any registered backend, and ``<milp>+warm`` (e.g. ``highs+warm``): that MILP backend
warm-started from the heuristic (``auto``'s heuristic + MILP path forced onto it; ``highs+warm`` is
``auto`` as it was before issue 13). Where the MILP backend refuses the model (``MAX_CELLS``), the
heuristic runs alone (solver ``auto:heuristic`` in results.csv's ``solver_detail``).

Metrics (computed in :mod:`pipelines.experiments.bench_report`), per instance and solver: the
true residual (recomputed from the 0/1 mask), its ratio to the reference (the exact optimum where
``exact`` proved it, else the best residual any solver found), status, seconds, time to first /
best incumbent where the solver reports them, and a flag when a solver claimed optimality but
another solver's mask is strictly better. Per instance (issue 13): the best valid lower bound known
(:mod:`milp.bounds`: exact enumeration, CP-SAT's integer bound, LP duality; never a MILP's own dual
bound) and the counting floor (an estimate), and per size every method's distance to both.

What is cached (reruns skip finished work): every solve, in the SQLite store (default
``<cache>/stores/bench.sqlite``, keyed by instance + solver options). :class:`Config` holds what
determines the results; its ``key()`` is recorded in ``config.json`` and ``summary.json``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.random_tensors import nsn

from ..reporting import atomic_write_json, machine_line
from . import bench_report
from .base import ExperimentConfig, config_record, finished_run, prepare_out, record_run
from .bench_report import (ABS_TOL, DEFAULT_SOLVERS, MILP_BACKENDS, RATIO_FLOOR, REL_TOL, SUITES,  # noqa: F401
                           annotate, headline, performance_profile, reference_residuals, residual_ratio, solved_time,
                           strictly_better, target_check)

NAME = "bench"
DESCRIPTION = "solver benchmark on RSS / RFSS / MRSS / LeNet5 subset-sum suites: residual ratios, times, profiles"

RSS_NS = (10, 15, 20, 25, 30, 35, 40)
RFSS_NS = (10, 20, 30, 40)
MRSS_DS = (4, 25, 150, 400)
MRSS_NS = (32, 128, 512)
VECTOR_DS = (25, 150)
VECTOR_NS = (256, 1024, 4096)
#: ``<milp>+warm`` in ``--solvers``: that MILP backend warm-started from the heuristic (``auto`` forced onto
#: its heuristic + MILP path with params {"milp": <milp>}; ``highs+warm`` is ``auto`` before issue 13)
WARM_SUFFIX = "+warm"


class BenchError(ValueError):
    """Bad benchmark arguments; the message names the field."""


@dataclass
class BenchInstance:
    id: str
    suite: str
    instance: object  # milp.Instance
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- instance suites
def suite_rss(repeats: int, seed: int = 0) -> list[BenchInstance]:
    import milp

    out = []
    for n in RSS_NS:
        for r in range(repeats):
            rng = np.random.default_rng([seed, 1, n, r])
            out.append(BenchInstance(f"rss-n{n}-r{r}", "rss", milp.Instance(rng.uniform(-1, 1, n), rng.uniform(-1, 1)),
                                     {"n": n, "d": 1, "k": None}))
    return out


def suite_rfss(repeats: int, seed: int = 0) -> list[BenchInstance]:
    import milp

    out = []
    for n in RFSS_NS:
        for frac, tag in ((4, "n/4"), (2, "n/2")):
            k = n // frac
            for r in range(repeats):
                rng = np.random.default_rng([seed, 2, n, frac, r])
                out.append(BenchInstance(f"rfss-n{n}-k{k}-r{r}", "rfss",
                                         milp.Instance(rng.uniform(-1, 1, n), rng.uniform(-1, 1), cardinality=k),
                                         {"n": n, "d": 1, "k": k, "k_rule": tag}))
    return out


def suite_mrss(repeats: int, seed: int = 0) -> list[BenchInstance]:
    import milp

    out = []
    for d in MRSS_DS:
        for n in MRSS_NS:
            k = math.isqrt(n)
            for r in range(repeats):
                rng = np.random.default_rng([seed, 3, d, n, r])
                X = nsn(rng, n, d)
                u = rng.uniform(-1, 1, d)
                z = u * (math.sqrt(k) / 2) / np.abs(u).sum()
                out.append(BenchInstance(f"mrss-d{d}-n{n}-r{r}", "mrss", milp.Instance(X, z, cardinality=k),
                                         {"n": n, "d": d, "k": k}))
    return out


def suite_vector(repeats: int, seed: int = 0) -> list[BenchInstance]:
    """Issue 13's free MRSS: NSN candidates, kernel-like and uniform targets, no cardinality."""
    import milp

    out = []
    for d in VECTOR_DS:
        for n in VECTOR_NS:
            for target in ("kernel", "uniform"):
                for r in range(repeats):
                    rng = np.random.default_rng([seed, 8, d, n, target == "kernel", r])
                    X = nsn(rng, n, d)
                    z = rng.normal(0.0, 0.1, d) if target == "kernel" else rng.uniform(-0.5, 0.5, d)
                    out.append(BenchInstance(f"vector-d{d}-n{n}-{target}-r{r}", "vector", milp.Instance(X, z),
                                             {"n": n, "d": d, "k": None, "target": target}))
    return out


def suite_lenet5(repeats: int, seed: int = 0, progress: bool = False) -> list[BenchInstance]:
    """ICLR RSS instances and NeurIPS-style structured MRSS instances from the trained MNIST LeNet5."""
    import milp

    from ..targets import ensure_trained_lenet5, get_trained_lenet5
    from .iclr_lenet5 import build_instances, conv_parameters

    ensure_trained_lenet5(["mnist"], progress=progress)
    model, _ = get_trained_lenet5("mnist", progress=progress)
    params = conv_parameters(model.features)
    out = []
    pick = np.random.default_rng([seed, 4]).choice(2572, size=2 * repeats, replace=False)
    for n in (20, 30):
        insts, _, flat = build_instances(params, n, 0)  # the sweep's own instances (seed 0)
        for j in pick:
            out.append(BenchInstance(f"lenet5-rss-n{n}-p{j}", "lenet5", insts[j],
                                     {"n": n, "d": 1, "k": None, "kind": "iclr-rss", "param": int(j)}))
    n, k = 128, math.isqrt(128)
    weights = [(name, p) for name, p in params if name.endswith("weight")]
    targets = []
    for name, w in weights:  # w: (c1, c0, 5, 5); target per input channel t0: K[:, t0] flattened
        for t0 in range(w.shape[1]):
            targets.append((name, t0, w[:, t0].reshape(-1)))
    rng = np.random.default_rng([seed, 5])
    chosen = [targets[0]] + [targets[i] for i in rng.choice(np.arange(1, len(targets)), size=min(repeats, len(targets) - 1),
                                                            replace=False)]
    for name, t0, z in chosen:
        scale = 1.0 / np.abs(z).sum()
        X = nsn(np.random.default_rng([seed, 6, z.size, t0]), n, z.size)
        out.append(BenchInstance(f"lenet5-mrss-{name.split('.')[0]}-in{t0}-d{z.size}", "lenet5",
                                 milp.Instance(X, z * scale, cardinality=k),
                                 {"n": n, "d": int(z.size), "k": k, "kind": "structured-mrss", "layer": name,
                                  "input_channel": t0, "target_scale": float(scale)}))
    return out


#: structured suite: (blocks, n) of the structured construction on the trained MNIST LeNet5
STRUCTURED_POINTS = (("channel", 256), ("channel", 1024), ("pair", 256), ("pair", 1024))


def suite_structured(repeats: int, seed: int = 0, progress: bool = False, features=None) -> list[BenchInstance]:
    """The MRSS instances the structured construction (NeurIPS 2023 Theorem 3 / Lemma 12; issue 12) really
    solves on the trained MNIST LeNet5 (domain auto: positive half-blocks; normal weights; seed 0, the
    construction's own draw): per (blocks, n) of ``STRUCTURED_POINTS``, ``channel`` blocks give conv1's
    instance (dim 150) and ``repeats`` of conv2's six (dim 400), ``pair`` blocks ``repeats`` instances of
    each conv (dim 25), drawn with ``seed``. No cardinality: exactly what ``slth prune --construction
    structured`` and ``slth reproduce structured-lenet5`` solve (the same instances, so the same store
    keys). ``features``: another conv part to draw the instances from (tests)."""
    from ..constructions.structured import StructuredConstruction

    if features is None:
        from ..targets import load_target

        _, features = load_target("lenet5-mnist", progress=progress)
    target = features.double()
    rng = np.random.default_rng([seed, 7])
    out = []
    for blocks, n in STRUCTURED_POINTS:
        c = StructuredConstruction(target, n, seed=0, dist="normal", scale="none", domain="auto", blocks=blocks)
        subs = [sp for sp in c.subproblems() if sp.instance is not None]
        for layer in sorted({sp.layer for sp in subs}):
            pool = [sp for sp in subs if sp.layer == layer]
            take = pool if len(pool) <= repeats else [pool[i] for i in sorted(rng.choice(len(pool), repeats,
                                                                                          replace=False))]
            for sp in take:
                entry = "-".join(map(str, sp.entry))
                out.append(BenchInstance(f"structured-{blocks}-n{n}-conv{layer + 1}-{entry}", "structured",
                                         sp.instance, {"n": sp.instance.n, "d": sp.instance.d, "k": None,
                                                       "kind": f"structured-{blocks}", "channels_per_half": n,
                                                       "layer": layer + 1, "entry": list(map(int, sp.entry))}))
        del c
    return out


def build_suite(name: str, repeats: int, seed: int = 0, progress: bool = False) -> list[BenchInstance]:
    if name == "rss":
        return suite_rss(repeats, seed)
    if name == "rfss":
        return suite_rfss(repeats, seed)
    if name == "mrss":
        return suite_mrss(repeats, seed)
    if name == "lenet5":
        return suite_lenet5(repeats, seed, progress)
    if name == "structured":
        return suite_structured(repeats, seed, progress)
    if name == "vector":
        return suite_vector(repeats, seed)
    raise BenchError(f"--suite: unknown suite {name!r}; choose from {', '.join(SUITES)} or all")


def save_instances(items: list[BenchInstance], folder: Path) -> Path:
    """Writes every instance as ``<folder>/<suite>/<id>.npz`` and a manifest (id, sizes, hash)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for b in items:
        path = folder / b.suite / f"{b.id}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            b.instance.save(path)
        rows.append({"id": b.id, "suite": b.suite, "file": str(path.relative_to(folder)),
                     "content_hash": b.instance.content_hash(), **{k: v for k, v in b.meta.items()}})
    return atomic_write_json(folder / "manifest.json", rows, indent=1)


# ----------------------------------------------------------------------------- the config
def _check_fields(suites, solvers, time_limit, repeats) -> list[str]:
    """The suites (``all`` expanded); BenchError naming the command-line flag of a bad value."""
    from milp.backends import REGISTRY

    suites = list(SUITES) if suites in ("all", ["all"], ("all",)) else list(suites)
    for s in suites:
        if s not in SUITES:
            raise BenchError(f"--suite: unknown suite {s!r}; choose from {', '.join(SUITES)} or all")
    for s in solvers:
        base, warm = solver_spec(s)
        if base not in REGISTRY or (warm and base not in MILP_BACKENDS):
            raise BenchError(f"--solvers: unknown solver {s!r}; choose from {', '.join(sorted(REGISTRY))}, or "
                             f"<milp>{WARM_SUFFIX} for a MILP backend warm-started from the heuristic "
                             f"({', '.join(MILP_BACKENDS)})")
    if time_limit is None or not (time_limit > 0) or not math.isfinite(time_limit):
        raise BenchError(f"--time-limit: must be a positive number of seconds, got {time_limit!r}")
    if int(repeats) < 1:
        raise BenchError(f"--repeats: must be >= 1, got {repeats!r}")
    return suites


def solver_spec(name: str) -> tuple[str, bool]:
    """(backend name, warm-started from the heuristic?) of a ``--solvers`` entry."""
    if name.endswith(WARM_SUFFIX):
        return name[:-len(WARM_SUFFIX)], True
    return name, False


def check_args(suites, solvers, time_limit, repeats, n_jobs) -> tuple[list[str], list[str]]:
    """(suites with ``all`` expanded, the requested solvers that are installed); BenchError naming
    the flag of a bad value."""
    import milp

    suites = _check_fields(suites, solvers, time_limit, repeats)
    if int(n_jobs) == 0 or int(n_jobs) < -1:
        raise BenchError(f"--n-jobs: must be >= 1 or -1, got {n_jobs!r}")
    installed = [s for s in solvers if solver_spec(s)[0] in milp.available_solvers()]
    return suites, installed


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """What determines the benchmark's results (not: worker count, store). ``suites=("all",)`` is
    the same config as every suite listed; solvers that are not installed are skipped at run time."""

    NAME = NAME

    suites: tuple[str, ...] = SUITES
    solvers: tuple[str, ...] = DEFAULT_SOLVERS
    time_limit: float = 1.0
    repeats: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("suites", "solvers"):
            if isinstance(getattr(self, name), str):
                self._set(name, (getattr(self, name),))
        self._set("solvers", tuple(str(s) for s in self.solvers))
        self._set("suites", tuple(_check_fields(self.suites, self.solvers, self.time_limit, self.repeats)))
        self._set("time_limit", float(self.time_limit))
        self._set("repeats", int(self.repeats))
        self._set("seed", int(self.seed))


# ----------------------------------------------------------------------------- running
def best_lower_bounds(rows: list[dict], bounds: dict) -> None:
    """Sets every row's ``lower_bound`` to the best valid bound known for its instance (in place): the
    instance's own (``bounds[id]``, :func:`milp.bounds.instance_bounds`) or what any solver's solve proved
    (``solution_lower_bound``: ``exact`` optimal, CP-SAT's integer bound), whichever is larger, with
    ``lower_bound_source``."""
    best = {i: (b.get("lower_bound"), b.get("lower_bound_source") or "") for i, b in bounds.items()}
    for r in rows:
        own, cur = r.get("solution_lower_bound"), best.get(r["id"], (None, ""))
        if own is not None and (cur[0] is None or own > cur[0]):
            best[r["id"]] = (own, r.get("solution_lower_bound_source") or r["solver"])
    for r in rows:
        r["lower_bound"], r["lower_bound_source"] = best.get(r["id"], (None, ""))


def _row(b: BenchInstance, solver: str, sol, bounds: dict | None = None) -> dict:
    from milp.bounds import apply_bounds

    apply_bounds(b.instance, sol)  # also on stored solutions from before lower_bound existed
    return {"id": b.id, "suite": b.suite, "n": b.meta["n"], "n_group": b.meta.get("channels_per_half"),
            "d": b.meta["d"], "k": b.meta.get("k"),
            **(bounds or {}),
            "solution_lower_bound": sol.lower_bound,
            "solution_lower_bound_source": (sol.extra.get("lower_bound_source", "") if sol.lower_bound is not None
                                            else ""),
            "solver": solver, "solver_detail": sol.solver, "residual": float(sol.error), "status": sol.status.value,
            "claimed_optimal": bool(sol.claimed_optimal), "seconds": float(sol.seconds),
            "time_to_first": sol.time_to_first, "time_to_best": sol.time_to_best,
            "solver_objective": sol.solver_objective, "solver_version": sol.solver_version,
            "message": (sol.message or "").splitlines()[0][:200] if sol.message else ""}


def default_store() -> Path:
    """``<cache>/stores/bench.sqlite``: every benchmark solve."""
    from ..paths import store_dir

    return store_dir() / "bench.sqlite"


def run(config: Config, *, out=None, progress: bool = True, command: str = "", n_jobs: int = 1, store=None,
        skip_finished: bool = False) -> dict:
    """Build the suites, solve every instance with every installed solver (one thread each, the
    same time limit, through :func:`milp.solve_many` and its resumable store), annotate, and write
    ``results.csv``, ``headline.csv``, ``summary.md``, ``summary.json``, ``config.json``, the plots and
    ``instances/`` into ``out`` (default ``results/bench``).

    Runtime arguments (they do not change the results): ``n_jobs`` workers; ``store`` the SQLite
    store (default :func:`default_store`); ``skip_finished`` returns the summary already in ``out``
    when it records a finished run of this config (same key) instead of running again."""
    import milp
    from milp.bounds import instance_bounds

    if not isinstance(config, Config):
        raise TypeError(f"config: expected {__name__}.Config, got {type(config).__name__}")
    time_limit, repeats, seed = config.time_limit, config.repeats, config.seed
    suites, installed = check_args(config.suites, list(config.solvers), time_limit, repeats, n_jobs)
    started = time.time()
    out = prepare_out(config, out, progress)
    if skip_finished and (done := finished_run(out, config, progress)) is not None:
        return done
    store = store if store is not None else default_store()
    t0 = time.perf_counter()
    items: list[BenchInstance] = []
    for s in suites:
        items += build_suite(s, repeats, seed, progress)
    save_instances(items, out / "instances")
    if progress:
        print(f"[bench] lower bounds (exact enumeration where tiny, else LP duality) and counting estimates of "
              f"{len(items)} instances", flush=True)
    # once per instance, outside every time limit; enumeration only when the exact solver is not run anyway
    bounds = {b.id: instance_bounds(b.instance, exact="exact" not in installed) for b in items}
    exact_ok = milp.backends.get_backend("exact")
    rows, refused = [], []
    for solver in installed:
        todo = items
        if solver == "exact":
            todo = [b for b in items if exact_ok.accepts(b.instance)[0]]
            refused += [b.id for b in items if not exact_ok.accepts(b.instance)[0]]
        if not todo:
            continue
        if progress:
            print(f"[bench] {solver}: {len(todo)} instances, time limit {time_limit:g} s", flush=True)
        base, warm = solver_spec(solver)
        sols = milp.solve_many([b.instance for b in todo], solver="auto" if warm else base, n_jobs=n_jobs,
                               store=store, time_limit=time_limit, seed=seed, threads=1, progress=progress,
                               params={"milp": base} if warm else None)
        rows += [_row(b, solver, s, bounds[b.id]) for b, s in zip(todo, sols)]
    best_lower_bounds(rows, bounds)
    rows = annotate(rows)
    summary = {"command": command, "machine": machine_line(),
               "settings": {"suites": suites, "solvers": installed, "time_limit": time_limit, "repeats": repeats,
                            "n_jobs": n_jobs, "seed": seed, "threads_per_solve": 1},
               "solver_versions": {r["solver"]: r["solver_version"] for r in rows},
               "exact_refused": len(refused), "instances": len(items), "solves": len(rows),
               "wall_seconds": round(time.perf_counter() - t0, 1),
               "headline": headline(rows), "target_check": target_check(rows), **config_record(config)}
    bench_report.write_all(rows, summary, out)
    record_run(out, config, command, started, stages={"solve_seconds": summary["wall_seconds"]})
    return {**summary, "out": str(out)}  # where it went (not in summary.json)


def rewrite_report(out) -> None:
    """Redraws the figures and summary.md of a finished run from its results.csv and summary.json."""
    bench_report.rewrite(out)


def run_bench(suites=("all",), solvers=DEFAULT_SOLVERS, time_limit: float = 1.0, repeats: int = 5, out=None,
              n_jobs: int = 1, seed: int = 0, store=None, progress: bool = True, command: str = "") -> dict:
    """The earlier keyword interface: checks the arguments, builds the :class:`Config`, calls :func:`run`."""
    check_args(suites, list(solvers), time_limit, repeats, n_jobs)
    config = Config(suites=tuple([suites] if isinstance(suites, str) else suites), solvers=tuple(solvers),
                    time_limit=time_limit, repeats=repeats, seed=seed)
    return run(config, out=out, progress=progress, command=command, n_jobs=n_jobs, store=store)
