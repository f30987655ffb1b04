"""``slth reproduce``: run a registered experiment with its paper's settings."""
from __future__ import annotations

import time

from .args import (MAX_N, CliError, bounded_int, check_input_folder, check_output_file, check_output_folder,
                   command_line, int_list, n_jobs, positive_float, seed, stage_log, str_list)

HELP = "reproduce a paper's experiment (iclr-lenet5, iclr-construction)"
EXAMPLE = "slth reproduce iclr-construction --ns 10,20,30 --scale none,auto --out results/iclr-construction"
EXPERIMENTS = ("iclr-lenet5", "iclr-construction")  # `bench` has its own command


def add_arguments(p) -> None:
    from pipelines.experiments import get_experiment

    desc = "; ".join(f"{name}: {get_experiment(name).DESCRIPTION}" for name in EXPERIMENTS)
    p.add_argument("experiment", choices=EXPERIMENTS, help=desc)
    p.add_argument("--dataset", default="both", choices=["mnist", "fashion-mnist", "both"], help="data set(s)")
    p.add_argument("--ns", type=int_list, default="5,10,15,20,25,30",
                   help=f"sample sizes n, comma-separated, each 1 to {MAX_N}")
    p.add_argument("--solver", default="auto",
                   help="solver name; iclr-lenet5 takes several comma-separated (e.g. auto,cpsat)")
    p.add_argument("--scale", type=str_list, default="none",
                   help="iclr-construction only: target scaling modes, comma-separated (none, auto, or a number)")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS",
                   help="per-instance wall-clock limit in seconds for the solvers; default none")
    p.add_argument("--epochs", type=bounded_int(1, 10_000), default=50,
                   help="training epochs of the target LeNet5 (paper: 50)")
    p.add_argument("--seed", type=seed, default=0, help="seed of training, random samples and solvers")
    p.add_argument("--n-jobs", type=n_jobs, default=2, help="worker processes for the batch engine")
    p.add_argument("--data-dir", default=None, help="directory of standard IDX files instead of the installed data")
    p.add_argument("--store", default=None, help="SQLite store of solved instances (default: in the cache)")
    p.add_argument("--out", default=None, help="output folder (default: results/<experiment> under the current "
                                               "directory; its report files are replaced)")
    p.add_argument("--recompute-metrics", action="store_true",
                   help="iclr-lenet5 only: recompute the float64 output metrics even where a cached entry matches")
    p.add_argument("--log", default=None, metavar="FILE",
                   help="also write the run's stage lines (plain text, one per line) to FILE")
    p.add_argument("--quiet", action="store_true",
                   help="no progress output on the terminal (stage lines still go to --log if given)")


def _solvers(text: str) -> list[str]:
    import milp

    solvers = str_list(text)
    for s in solvers:
        if s not in milp.available_solvers():
            raise CliError(f"--solver: unknown or uninstalled solver {s!r}; choose from {', '.join(milp.available_solvers())}")
    return solvers


def check_paths(args) -> None:
    """Every path, before any work: the run folder (created if missing), the log, the store, the data."""
    check_output_folder(args.out if args.out is not None else ".", "--out")
    if args.log is not None:
        check_output_file(args.log, "--log")
    if args.store is not None:
        check_output_file(args.store, "--store", create_parents=True)
    if args.data_dir is not None:
        check_input_folder(args.data_dir, "--data-dir")


def run(args) -> int:
    from pipelines.experiments import get_experiment

    exp = get_experiment(args.experiment)
    datasets = ("mnist", "fashion-mnist") if args.dataset == "both" else (args.dataset,)
    solvers = _solvers(args.solver)
    check_paths(args)
    runtime = {"n_jobs": args.n_jobs, "data_dir": args.data_dir, "store": args.store}
    if args.experiment == "iclr-construction":
        if len(solvers) != 1:
            raise CliError("--solver: iclr-construction takes one solver")
        if args.recompute_metrics:
            raise CliError("--recompute-metrics: only for iclr-lenet5 (iclr-construction caches no metrics)")
        from pipelines.constructions import parse_scale

        scales = tuple(str(parse_scale(s)) for s in args.scale)
        config = exp.Config(datasets=datasets, ns=tuple(args.ns), scales=scales, solver=solvers[0],
                            time_limit=args.time_limit, seed=args.seed, epochs=args.epochs)
    else:
        if args.scale != ["none"]:
            raise CliError("--scale: only for iclr-construction (iclr-lenet5 substitutes weights, it builds no network)")
        config = exp.Config(datasets=datasets, ns=tuple(args.ns), solvers=tuple(solvers), time_limit=args.time_limit,
                            epochs=args.epochs, seed=args.seed)
        runtime["recompute_metrics"] = args.recompute_metrics
    t0 = time.perf_counter()
    with stage_log(args.log, args.quiet) as progress:
        summary = exp.run(config, out=args.out, progress=progress, command=command_line(), **runtime)
    wall = time.perf_counter() - t0
    out = summary.get("out") or args.out or f"results/{args.experiment}"
    print(f"wall time {wall:.1f} s ({wall / 60:.2f} min); {config.describe()}")
    print(f"results in {out}: results.csv, figures (.png, .pdf), summary.json, config.json, report.md")
    return 0
