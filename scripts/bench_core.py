"""Benchmark of the MILP core (issue 2): median seconds and median true residual per backend.

RSS: x_i ~ U[-1,1], z ~ U[-1,1], n in {10, 20, 30}. MRSS: X ~ U[-1,1]^(n x d), z ~ U[-0.5,0.5]^d.
Every residual is recomputed from the returned 0/1 mask; "opt" counts instances whose status is
proven optimal. All solvers run on the same first ``--instances`` instances of each size; a last
``exact`` row per size times the exact solver over ``--exact-instances`` instances. Usage: python scripts/bench_core.py [--time-limit 10] [--instances 5] [--out DIR]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import milp
from milp.backends import REGISTRY
from pipelines.reporting import atomic_write_csv, atomic_write_text, command_line, machine_line


def machine() -> str:
    return machine_line(load_label="load")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--instances", type=int, default=5, help="instances per size for MILP backends")
    ap.add_argument("--exact-instances", type=int, default=200)
    ap.add_argument("--out", default="results/bench_core")
    ap.add_argument("--solvers", default="exact,heuristic,cbc,cpsat,scip,highs,gurobi",
                    help="comma-separated; uninstalled ones are skipped")
    args = ap.parse_args(argv)
    wanted = [s.strip() for s in args.solvers.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in REGISTRY]
    if unknown:
        ap.error(f"--solvers: unknown solver(s) {unknown}; choose from {sorted(REGISTRY)}")
    solvers = [s for s in wanted if REGISTRY[s].available()]
    started = machine()
    sizes = [("rss", 10, 1), ("rss", 20, 1), ("rss", 30, 1), ("mrss", 16, 4), ("mrss", 32, 4), ("mrss", 32, 25)]
    rows = []
    print(f"machine: {machine()}; time limit {args.time_limit:g} s per MILP solve, one thread")
    print(f"{'family':6} {'n':>4} {'d':>4} {'solver':10} {'count':>5} {'median s':>10} {'median residual':>16} {'opt':>4}")
    for family, n, d in sizes:
        rng = np.random.default_rng(1000 * n + d)
        count = max(args.instances, args.exact_instances)
        if d == 1:
            insts = [milp.Instance(rng.uniform(-1, 1, n), rng.uniform(-1, 1)) for _ in range(count)]
        else:
            insts = [milp.Instance(rng.uniform(-1, 1, (n, d)), rng.uniform(-0.5, 0.5, d)) for _ in range(count)]
        runs = [(s, insts[:args.instances]) for s in solvers] + [("exact", insts)]
        for solver, use in runs:
            if solver == "exact" and not REGISTRY["exact"]().accepts(insts[0])[0]:
                continue
            if solver == "exact":
                milp.solve(use[0], "exact")  # warm numpy up once
            secs, errs, opt = [], [], 0
            for i, inst in enumerate(use):
                t0 = time.perf_counter()
                sol = milp.solve(inst, solver, time_limit=None if solver == "exact" else args.time_limit, seed=i)
                secs.append(time.perf_counter() - t0)
                errs.append(sol.error)
                opt += sol.status == milp.Status.OPTIMAL
            row = dict(family=family, n=n, d=d, solver=solver, count=len(use), median_seconds=statistics.median(secs),
                       median_residual=statistics.median(errs), proven_optimal=opt)
            rows.append(row)
            print(f"{family:6} {n:>4} {d:>4} {solver:10} {len(use):>5} {row['median_seconds']:>10.4f} "
                  f"{row['median_residual']:>16.3e} {opt:>4}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out / "bench_core.csv", rows, list(rows[0]))
    cmd = command_line(argv, prog="python scripts/bench_core.py")
    md = [f"Command: `{cmd}`", "", f"Machine at start: {started}; at end: {machine()}.",
          f"MILP backends: one thread, time limit {args.time_limit:g} s, the first {args.instances} instances "
          f"of each size; the last `exact` row of each size times {args.exact_instances} instances.", "",
          "| family | n | d | solver | instances | median s | median true residual | proven optimal |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['family']} | {r['n']} | {r['d']} | {r['solver']} | {r['count']} | {r['median_seconds']:.4f} | "
           f"{r['median_residual']:.3e} | {r['proven_optimal']} |" for r in rows]
    atomic_write_text(out / "bench_core.md", "\n".join(md) + "\n")
    print(f"wrote {out / 'bench_core.csv'} and bench_core.md; machine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
