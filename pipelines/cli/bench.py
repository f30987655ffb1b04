"""``slth bench``: solver benchmarks on the RSS / RFSS / MRSS / LeNet5 / structured suites."""
from __future__ import annotations

from .args import (bounded_int, check_output_file, check_output_folder, command_line, n_jobs, positive_float, seed,
                   stage_log, str_list)

HELP = ("benchmark the solvers on RSS / RFSS / MRSS / LeNet5 / structured (MRSS of the structured construction) / "
        "vector (free MRSS, dims 25 and 150) suites")
EXAMPLE = "slth bench --suite rss --solvers exact,cpsat,highs --time-limit 1 --out /tmp/bench"


def add_arguments(p) -> None:
    from pipelines.experiments.bench import DEFAULT_SOLVERS, SUITES

    p.add_argument("--suite", default="all", choices=[*SUITES, "all"], help="instance suite")
    p.add_argument("--solvers", default=",".join(DEFAULT_SOLVERS),
                   help="comma-separated solver names, or <milp>+warm (e.g. highs+warm: that MILP backend warm-started "
                        "from the heuristic); uninstalled ones (gurobi here) are skipped")
    p.add_argument("--time-limit", type=positive_float, default=1.0, metavar="SECONDS",
                   help="seconds per instance and solver")
    p.add_argument("--repeats", type=bounded_int(1, 1000), default=5,
                   help="random instances per size (lenet5: 2R parameters per n and R+1 filters)")
    p.add_argument("--n-jobs", type=n_jobs, default=2, help="worker processes")
    p.add_argument("--seed", type=seed, default=0, help="seed of the instance suites and solvers")
    p.add_argument("--store", default=None, help="SQLite store (default: in the cache); reruns skip solved work")
    p.add_argument("--out", default=None, help="output folder (default: results/bench under the current directory)")
    p.add_argument("--log", default=None, metavar="FILE",
                   help="also write the run's stage lines (plain text, one per line) to FILE")
    p.add_argument("--quiet", action="store_true",
                   help="no progress output on the terminal (stage lines still go to --log if given)")


def run(args) -> int:
    from pipelines.experiments.bench import run_bench
    from pathlib import Path

    from pipelines.experiments.bench_report import distance_markdown, headline_markdown, read_csv

    check_output_folder(args.out if args.out is not None else ".", "--out")  # every path before any work
    if args.log is not None:
        check_output_file(args.log, "--log")
    if args.store is not None:
        check_output_file(args.store, "--store", create_parents=True)
    with stage_log(args.log, args.quiet) as progress:
        summary = run_bench(suites=[args.suite], solvers=str_list(args.solvers), time_limit=args.time_limit,
                            repeats=args.repeats, out=args.out, n_jobs=args.n_jobs, seed=args.seed, store=args.store,
                            progress=progress, command=command_line())
    print("\n".join(headline_markdown(summary["headline"])))
    out = Path(summary.get("out", args.out or "."))
    if (out / "results.csv").exists():  # per size: every method against the lower bound and the floor
        rows = read_csv(out / "results.csv")
        for suite in dict.fromkeys(r["suite"] for r in rows):
            print("\n" + "\n".join(distance_markdown([r for r in rows if r["suite"] == suite])).rstrip())
    for s, c in summary["target_check"].items():
        print(f"target check (RSS n <= 25, within 2x of exact, <= 1 s): {s}: {c['within']}/{c['instances']} "
              f"({100 * c['share']:.0f}%)")
    print(f"wall time {summary['wall_seconds']:.0f} s; results in {summary.get('out', args.out)}: results.csv, "
          "headline.csv, summary.md (per size: lower bound, floor, time to target), summary.json, "
          "profile_time/profile_residual/residual_vs_time/bounds_<suite> (.png, .pdf), "
          "instances/")
    return 0
