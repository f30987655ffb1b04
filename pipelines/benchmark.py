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

Metrics, per instance and solver: the true residual (recomputed from the 0/1 mask), its ratio to
the reference (the exact optimum where ``exact`` proved it, else the best residual any solver
found), status, seconds, time to first / best incumbent where the solver reports them, and a flag
when a solver claimed optimality but another solver's mask is strictly better.
"""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUITES = ("rss", "rfss", "mrss", "lenet5")
DEFAULT_SOLVERS = ("exact", "heuristic", "cbc", "cpsat", "scip", "highs", "gurobi", "auto")
MILP_BACKENDS = ("cbc", "cpsat", "scip", "highs", "gurobi")
RSS_NS = (10, 15, 20, 25, 30, 35, 40)
RFSS_NS = (10, 20, 30, 40)
MRSS_DS = (4, 25, 150, 400)
MRSS_NS = (32, 128, 512)
#: residuals closer than this (relative, with an absolute floor) count as equal
REL_TOL = 1e-9
ABS_TOL = 1e-15
#: ratio denominator floor: an optimum of 0 is only matched by a residual <= ABS_TOL
RATIO_FLOOR = 1e-15


class BenchError(ValueError):
    """Bad benchmark arguments; the message names the field."""


@dataclass
class BenchInstance:
    id: str
    suite: str
    instance: object  # milp.Instance
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- instance suites
def nsn(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """n NSN vectors of dimension d (Definition 4): X_ij = Z_i * Z_ij, Z standard normal."""
    return rng.standard_normal((n, 1)) * rng.standard_normal((n, d))


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


def suite_lenet5(repeats: int, seed: int = 0, progress: bool = False) -> list[BenchInstance]:
    """ICLR RSS instances and NeurIPS-style structured MRSS instances from the trained MNIST LeNet5."""
    import milp

    from .iclr_lenet5 import build_instances, conv_parameters
    from .targets import ensure_trained_lenet5, get_trained_lenet5

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


def build_suite(name: str, repeats: int, seed: int = 0, progress: bool = False) -> list[BenchInstance]:
    if name == "rss":
        return suite_rss(repeats, seed)
    if name == "rfss":
        return suite_rfss(repeats, seed)
    if name == "mrss":
        return suite_mrss(repeats, seed)
    if name == "lenet5":
        return suite_lenet5(repeats, seed, progress)
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
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(rows, indent=1))
    return manifest


# ----------------------------------------------------------------------------- metrics
def reference_residuals(results: list[dict]) -> dict[str, tuple[float, str]]:
    """Per instance: (reference residual, kind). kind = ``exact`` when the exact solver proved the
    optimum, else ``best_found`` (the best residual of any solver); inf when nobody found a mask."""
    ref: dict[str, tuple[float, str]] = {}
    for r in results:
        if r["solver"] == "exact" and r["status"] == "optimal":
            ref[r["id"]] = (r["residual"], "exact")
    for r in results:
        if r["id"] in ref and ref[r["id"]][1] == "exact":
            continue
        best = ref.get(r["id"], (math.inf, "best_found"))[0]
        ref[r["id"]] = (min(best, r["residual"]), "best_found")
    return ref


def residual_ratio(residual: float, reference: float) -> float:
    """residual / reference with the conventions: equal (within REL_TOL/ABS_TOL) -> 1.0; no
    solution -> inf; the reference is floored at RATIO_FLOOR so an optimum of 0 gives a finite,
    huge ratio for any residual above ABS_TOL."""
    if not math.isfinite(residual):
        return math.inf
    if residual <= reference + max(ABS_TOL, REL_TOL * reference):
        return 1.0
    return residual / max(reference, RATIO_FLOOR)


def strictly_better(a: float, b: float) -> bool:
    """a is better than b by more than the equality tolerance."""
    return a < b - max(ABS_TOL, REL_TOL * b)


def annotate(results: list[dict]) -> list[dict]:
    """Adds ``reference``, ``reference_kind``, ``ratio`` and ``claimed_optimal_beaten`` to every row.

    ``claimed_optimal_beaten``: the solver claimed optimality (status ``optimal`` or the raw claim
    ``claimed_optimal``) and some other solver's mask on the same instance is strictly better."""
    ref = reference_residuals(results)
    best_other: dict[tuple[str, str], float] = {}
    by_id: dict[str, list[dict]] = {}
    for r in results:
        by_id.setdefault(r["id"], []).append(r)
    for iid, rows in by_id.items():
        for r in rows:
            others = [q["residual"] for q in rows if q is not r and q["solver"] != r["solver"]]
            best_other[(iid, r["solver"])] = min(others) if others else math.inf
    out = []
    for r in results:
        value, kind = ref[r["id"]]
        claimed = r["status"] == "optimal" or bool(r.get("claimed_optimal"))
        out.append({**r, "reference": value, "reference_kind": kind, "ratio": residual_ratio(r["residual"], value),
                    "claimed_optimal_beaten": bool(claimed and strictly_better(best_other[(r["id"], r["solver"])],
                                                                                r["residual"]))})
    return out


def performance_profile(values: dict[str, dict[str, float]], taus) -> dict[str, list[float]]:
    """Dolan-More profile. ``values[solver][instance]`` = cost (time or residual ratio; inf =
    failure). For each instance the ratio r = cost / min over solvers; rho_s(tau) = share of
    instances with r <= tau. Instances where every solver failed count as failures for all."""
    solvers = list(values)
    ids = sorted({i for v in values.values() for i in v})
    best = {i: min(values[s].get(i, math.inf) for s in solvers) for i in ids}
    prof = {}
    for s in solvers:
        ratios = []
        for i in ids:
            c, b = values[s].get(i, math.inf), best[i]
            if not math.isfinite(c) or not math.isfinite(b):
                ratios.append(math.inf)
            elif b <= 0:
                ratios.append(1.0 if c <= 0 else math.inf)
            else:
                ratios.append(c / b)
        prof[s] = [sum(r <= t for r in ratios) / len(ids) if ids else 0.0 for t in taus]
    return prof


def solved_time(r: dict, tol_ratio: float = 1.0) -> float:
    """Cost for the time profile: time to best if the solver reached the reference residual
    (ratio <= tol_ratio), else inf. Falls back to total seconds when no incumbent times exist."""
    if r["ratio"] > tol_ratio:
        return math.inf
    t = r.get("time_to_best")
    return float(t) if t is not None and math.isfinite(t) else float(r["seconds"])


def target_check(rows: list[dict], max_n: int = 25, factor: float = 2.0, limit: float = 1.0) -> dict:
    """Issue 6's target: per MILP backend, the share of RSS instances with n <= max_n whose
    residual is within ``factor`` x the exact optimum and took <= ``limit`` seconds."""
    out = {}
    for s in sorted({r["solver"] for r in rows if r["solver"] in MILP_BACKENDS}):
        sel = [r for r in rows if r["suite"] == "rss" and r["solver"] == s and r["n"] <= max_n
               and r["reference_kind"] == "exact"]
        if not sel:
            continue
        ok = [r for r in sel if r["ratio"] <= factor and r["seconds"] <= limit * 1.05]
        med = float(np.median([r["ratio"] for r in sel]))
        out[s] = {"instances": len(sel), "within": len(ok), "share": len(ok) / len(sel), "median_ratio": med,
                  "worst_ratio": float(max(r["ratio"] for r in sel))}
    return out


def headline(rows: list[dict]) -> list[dict]:
    """Per suite and solver: instances, solved, share within 2x of the reference, median ratio,
    proven optimal, median seconds, claimed-optimal-but-beaten count."""
    table = []
    for suite in [s for s in SUITES if any(r["suite"] == s for r in rows)]:
        for solver in [s for s in DEFAULT_SOLVERS if any(r["solver"] == s and r["suite"] == suite for r in rows)]:
            sel = [r for r in rows if r["suite"] == suite and r["solver"] == solver]
            ratios = [r["ratio"] for r in sel]
            table.append({"suite": suite, "solver": solver, "instances": len(sel),
                          "found": sum(math.isfinite(r["residual"]) for r in sel),
                          "within_2x": sum(x <= 2 for x in ratios) / len(sel),
                          "median_ratio": float(np.median(ratios)),
                          "proven_optimal": sum(r["status"] == "optimal" for r in sel),
                          "median_seconds": float(np.median([r["seconds"] for r in sel])),
                          "claimed_optimal_beaten": sum(r["claimed_optimal_beaten"] for r in sel)})
    return table


# ----------------------------------------------------------------------------- running
def check_args(suites, solvers, time_limit, repeats, n_jobs) -> tuple[list[str], list[str]]:
    import milp
    from milp.backends import REGISTRY

    suites = list(SUITES) if suites in ("all", ["all"], ("all",)) else list(suites)
    for s in suites:
        if s not in SUITES:
            raise BenchError(f"--suite: unknown suite {s!r}; choose from {', '.join(SUITES)} or all")
    for s in solvers:
        if s != "auto" and s not in REGISTRY:
            raise BenchError(f"--solvers: unknown solver {s!r}; choose from auto, {', '.join(sorted(REGISTRY))}")
    if time_limit is None or not (time_limit > 0) or not math.isfinite(time_limit):
        raise BenchError(f"--time-limit: must be a positive number of seconds, got {time_limit!r}")
    if int(repeats) < 1:
        raise BenchError(f"--repeats: must be >= 1, got {repeats!r}")
    if int(n_jobs) == 0 or int(n_jobs) < -1:
        raise BenchError(f"--n-jobs: must be >= 1 or -1, got {n_jobs!r}")
    installed = [s for s in solvers if s in milp.available_solvers()]
    return suites, installed


def _row(b: BenchInstance, solver: str, sol) -> dict:
    return {"id": b.id, "suite": b.suite, "n": b.meta["n"], "d": b.meta["d"], "k": b.meta.get("k"),
            "solver": solver, "residual": float(sol.error), "status": sol.status.value,
            "claimed_optimal": bool(sol.claimed_optimal), "seconds": float(sol.seconds),
            "time_to_first": sol.time_to_first, "time_to_best": sol.time_to_best,
            "solver_objective": sol.solver_objective, "solver_version": sol.solver_version,
            "message": (sol.message or "").splitlines()[0][:200] if sol.message else ""}


def run_bench(suites=("all",), solvers=DEFAULT_SOLVERS, time_limit: float = 1.0, repeats: int = 5, out=None,
              n_jobs: int = 1, seed: int = 0, store=None, progress: bool = True, command: str = "") -> dict:
    """Build the suites, solve every instance with every installed solver (one thread each, the
    same time limit, through :func:`milp.solve_many` and its resumable store), annotate, and write
    ``results.csv``, ``headline.csv``, ``summary.md``, ``summary.json`` and the plots into ``out``."""
    import milp

    from . import benchmark_report
    from .paths import results_dir, store_dir

    suites, installed = check_args(suites, list(solvers), time_limit, repeats, n_jobs)
    out = results_dir("bench", out)
    store = store if store is not None else store_dir() / "bench.sqlite"
    t0 = time.perf_counter()
    items: list[BenchInstance] = []
    for s in suites:
        items += build_suite(s, int(repeats), seed, progress)
    save_instances(items, out / "instances")
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
        sols = milp.solve_many([b.instance for b in todo], solver=solver, n_jobs=n_jobs, store=store,
                               time_limit=time_limit, seed=seed, threads=1, progress=progress)
        rows += [_row(b, solver, s) for b, s in zip(todo, sols)]
    rows = annotate(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    summary = {"command": command, "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                                              f"{platform.python_version()}, load at end {load:.2f}",
               "settings": {"suites": suites, "solvers": installed, "time_limit": time_limit, "repeats": repeats,
                            "n_jobs": n_jobs, "seed": seed, "threads_per_solve": 1},
               "solver_versions": {r["solver"]: r["solver_version"] for r in rows},
               "exact_refused": len(refused), "instances": len(items), "solves": len(rows),
               "wall_seconds": round(time.perf_counter() - t0, 1),
               "headline": headline(rows), "target_check": target_check(rows)}
    benchmark_report.write_all(rows, summary, out)
    return summary
