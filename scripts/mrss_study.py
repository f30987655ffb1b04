"""Issue 13's study: where does each MRSS method stop improving, against the time budget and against n?

Free MRSS as the issue states it (NSN candidates, NeurIPS 2023 Definition 4; kernel-like targets with entries
~ N(0, 0.1^2); no cardinality), dims 25 and 150, ``--instances`` instances per point (seeds fixed):

- budget sweep: n = 1024, time limits ``--budgets`` (default 0.1 .. 60 s);
- n sweep: time limit 10 s, n in ``--ns`` (default 64 .. 4096).

Methods (``--methods``): ``heuristic`` (iterated flip/swap descent), ``tabu`` (issue 13's weighted
least-squares tabu search; ``auto`` runs it for free MRSS with n > 2d), ``highs+warm`` (HiGHS warm-started
from the heuristic = ``auto`` before issue 13), any other backend or ``<milp>+warm``. Every solve goes
through ``milp.solve_many`` (one thread per solve, ``--n-jobs`` workers, its SQLite store: a rerun skips
what is solved); residuals are recomputed from the 0/1 masks. Beside each residual: the counting estimate
(``milp.bounds.counting_floor``, an estimate, not a bound) and the LP-duality lower bound
(``milp.bounds.lp_lower_bound``, proven; 0 once n exceeds ~2.5 d).

Writes ``results.csv``, ``report.md``, ``residual_vs_budget.png`` and ``residual_vs_n.png`` into ``--out``
(default ``slth-runs/mrss-study``; ``--out results/mrss-study`` replaces the committed study).

    python scripts/mrss_study.py [--out DIR] [--n-jobs 2] [--instances 2] [--budgets 0.1,1,10,60] [--ns 64,1024]
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import milp  # noqa: E402
from milp.bounds import counting_floor, lp_lower_bound  # noqa: E402
from models.random_tensors import nsn  # noqa: E402
from pipelines.experiments.bench import solver_spec  # noqa: E402
from pipelines.reporting import atomic_write_text, command_line, machine_line  # noqa: E402

DIMS = (25, 150)


def instance(d: int, n: int, r: int) -> milp.Instance:
    rng = np.random.default_rng([2026, 13, d, n, r])
    X = nsn(rng, n, d)
    return milp.Instance(X, rng.normal(0.0, 0.1, d))


def stage(i: int, total: int, text: str, t0: float, done: float, work: float, log) -> None:
    el = time.perf_counter() - t0
    eta = (el / done * (work - done)) if done > 0 else float("nan")
    line = f"[{i}/{total}] {text} (elapsed {el:.0f} s, ETA {eta:.0f} s)"
    print(line, flush=True)
    if log is not None:
        log.write(line + "\n")
        log.flush()


def _list(kind, positive=True):
    """argparse type: a comma-separated list of ``kind`` values (> 0), one-line error otherwise."""
    def parse(text: str):
        try:
            vals = [kind(v) for v in text.split(",") if v]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}")
        if not vals or (positive and min(vals) <= 0):
            raise argparse.ArgumentTypeError(f"expected positive values, got {text!r}")
        return vals
    return parse


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="slth-runs/mrss-study", help="output folder")
    p.add_argument("--methods", default="heuristic,tabu,highs+warm", help="comma-separated solvers")
    p.add_argument("--budgets", type=_list(float), default="0.1,1,10,60", help="time limits (s) of the budget sweep")
    p.add_argument("--ns", type=_list(int), default="64,256,1024,4096", help="n of the n sweep (10 s each)")
    p.add_argument("--instances", type=_list(int), default="2", help="instances per (dim, n)")
    p.add_argument("--n-jobs", type=_list(int), default="2", help="worker processes")
    p.add_argument("--store", default="slth-runs/mrss-study.sqlite", help="SQLite store (reruns skip solved work)")
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    budgets, ns = args.budgets, args.ns
    args.instances, args.n_jobs = args.instances[0], args.n_jobs[0]
    for m in methods:
        base, _ = solver_spec(m)
        if base not in milp.available_solvers():
            print(f"mrss_study: --methods: {m!r} is not an installed solver; choose from "
                  f"{', '.join(milp.available_solvers())} or <milp>+warm", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    points = [(d, 1024, b) for d in DIMS for b in budgets] + [(d, n, 10.0) for d in DIMS for n in ns
                                                              if not (n == 1024 and 10.0 in budgets)]
    work = sum(b * len(methods) * args.instances for _, _, b in points)
    total = len(points) * len(methods)
    t0, done, step = time.perf_counter(), 0.0, 0
    rows, bounds = [], {}
    with open(out / "run.log", "w") as log:
        log.write(f"command: {command_line(prog='python scripts/mrss_study.py')}\nmachine: {machine_line('load at start')}\n")
        for d, n, budget in points:
            insts = [instance(d, n, r) for r in range(args.instances)]
            for r, inst in enumerate(insts):
                if (d, n, r) not in bounds:
                    bounds[(d, n, r)] = (counting_floor(inst), lp_lower_bound(inst, time_limit=30.0))
            for m in methods:
                step += 1
                stage(step, total, f"dim {d}, n {n}, {budget:g} s: {m}", t0, done, work, log)
                base, warm = solver_spec(m)
                sols = milp.solve_many(insts, solver="auto" if warm else base, n_jobs=args.n_jobs,
                                       store=args.store, time_limit=budget, seed=0, threads=1, progress=False,
                                       params={"milp": base} if warm else None)
                done += budget * len(insts)
                for r, (inst, s) in enumerate(zip(insts, sols)):
                    floor, lb = bounds[(d, n, r)]
                    assert s.error == inst.residual(s.mask) or not s.found
                    rows.append({"dim": d, "n": n, "instance": r, "method": m, "solver_detail": s.solver,
                                 "budget": budget, "residual": s.error, "seconds": round(s.seconds, 3),
                                 "empty_mask": float(np.abs(inst.target).max()), "floor_estimate": floor,
                                 "lower_bound": lb})
        log.write(f"done in {time.perf_counter() - t0:.0f} s; machine: {machine_line()}\n")
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    report(rows, methods, budgets, ns, out, time.perf_counter() - t0, args)
    print(f"results in {out}: results.csv, report.md, residual_vs_budget.png, residual_vs_n.png, run.log")
    return 0


def _median(rows, **sel) -> float:
    vals = [r["residual"] for r in rows if all(r[k] == v for k, v in sel.items())]
    return statistics.median(vals) if vals else float("nan")


def report(rows, methods, budgets, ns, out: Path, wall: float, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["# MRSS: residual against time budget and against n (issue 13)", "",
             f"Command: `{command_line(prog='python scripts/mrss_study.py')}`", "",
             f"Machine: {machine_line()}. Wall time {wall:.0f} s. One thread per solve, {args.n_jobs} solves at a "
             f"time. Median residual over {args.instances} instances per point (NSN candidates, kernel-like targets "
             "N(0, 0.1^2), free subsets), recomputed from the 0/1 masks. `floor` = the counting estimate "
             "(`milp.bounds.counting_floor`: an estimate of the optimum for random candidates, NOT a bound); "
             "`LP bound` = the proven LP-duality lower bound.", ""]
    fig, axes = plt.subplots(1, len(DIMS), figsize=(11, 4))
    for ax, d in zip(axes, DIMS):
        lines += [f"## dim {d}, n = 1024: residual against the time limit", "",
                  "| method | " + " | ".join(f"{b:g} s" for b in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
        for m in methods:
            meds = [_median(rows, dim=d, n=1024, budget=b, method=m) for b in budgets]
            lines.append(f"| {m} | " + " | ".join(f"{v:.4g}" for v in meds) + " |")
            ax.plot(budgets, meds, marker="o", label=m)
        fl = statistics.median(r["floor_estimate"] for r in rows if r["dim"] == d and r["n"] == 1024)
        lb = statistics.median(r["lower_bound"] for r in rows if r["dim"] == d and r["n"] == 1024)
        em = statistics.median(r["empty_mask"] for r in rows if r["dim"] == d and r["n"] == 1024)
        lines += ["", f"Empty mask {em:.4g}; counting estimate {fl:.3g}; LP lower bound {lb:.3g}.", ""]
        ax.axhline(em, color="grey", ls=":", label="empty mask")
        if fl > 0:
            ax.axhline(fl, color="black", ls="--", label="counting estimate")
        ax.set(xscale="log", yscale="log", xlabel="time limit (s)", ylabel="median residual",
               title=f"dim {d}, n = 1024")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "residual_vs_budget.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(DIMS), figsize=(11, 4))
    for ax, d in zip(axes, DIMS):
        lines += [f"## dim {d}, 10 s: residual against n", "",
                  "| method | " + " | ".join(f"n = {n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
        for m in methods:
            meds = [_median(rows, dim=d, n=n, budget=10.0, method=m) for n in ns]
            lines.append(f"| {m} | " + " | ".join(f"{v:.4g}" for v in meds) + " |")
            ax.plot(ns, meds, marker="o", label=m)
        fls = [statistics.median(r["floor_estimate"] for r in rows if r["dim"] == d and r["n"] == n) for n in ns]
        lbs = [statistics.median(r["lower_bound"] for r in rows if r["dim"] == d and r["n"] == n) for n in ns]
        lines += [f"| counting estimate | " + " | ".join(f"{v:.3g}" for v in fls) + " |",
                  f"| LP lower bound | " + " | ".join(f"{v:.3g}" for v in lbs) + " |", ""]
        ax.plot(ns, fls, color="black", ls="--", label="counting estimate")
        ax.set(xscale="log", yscale="log", xlabel="n", ylabel="median residual", title=f"dim {d}, 10 s")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "residual_vs_n.png", dpi=120)
    plt.close(fig)
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
