"""``slth bench``: solver benchmarks (see :mod:`pipelines.benchmark`)."""
from __future__ import annotations

import shlex
import sys


def cmd_bench(args) -> int:
    from .benchmark import run_bench

    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    summary = run_bench(suites=[args.suite], solvers=solvers, time_limit=args.time_limit, repeats=args.repeats,
                        out=args.out, n_jobs=args.n_jobs, seed=args.seed, store=args.store, progress=not args.quiet,
                        command="slth " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    from .benchmark_report import headline_markdown

    print("\n".join(headline_markdown(summary["headline"])))
    for s, c in summary["target_check"].items():
        print(f"target check (RSS n <= 25, within 2x of exact, <= 1 s): {s}: {c['within']}/{c['instances']} "
              f"({100 * c['share']:.0f}%)")
    print(f"wall time {summary['wall_seconds']:.0f} s; results in {args.out or 'results/bench'}: results.csv, "
          "headline.csv, summary.md, summary.json, profile_time/profile_residual/residual_vs_time (.png, .pdf), "
          "instances/")
    return 0


def add_bench_parser(sub) -> None:
    from .benchmark import DEFAULT_SOLVERS, SUITES
    from .cli import _positive_float

    p = sub.add_parser("bench", help="benchmark the solvers on RSS / RFSS / MRSS / LeNet5 suites")
    p.add_argument("--suite", default="all", choices=[*SUITES, "all"])
    p.add_argument("--solvers", default=",".join(DEFAULT_SOLVERS),
                   help="comma-separated; uninstalled ones (gurobi here) are skipped")
    p.add_argument("--time-limit", type=_positive_float, default=1.0, help="seconds per instance and solver")
    p.add_argument("--repeats", type=int, default=5,
                   help="random instances per size (lenet5: 2R parameters per n and R+1 filters)")
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", default=None, help="SQLite store (default: in the cache); reruns skip solved work")
    p.add_argument("--out", default=None, help="output folder (default results/bench)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_bench)
