"""``slth reproduce``: run a registered experiment with its paper's settings."""
from __future__ import annotations

import time

from .args import (MAX_N, CliError, bounded_int, check_input_folder, check_output_file, check_output_folder,
                   command_line, int_list, n_jobs, positive_float, seed, stage_log, str_list)

HELP = "reproduce an experiment (iclr-lenet5, iclr-construction, structured-random, structured-lenet5, rfss-density, verification)"
EXAMPLE = "slth reproduce iclr-construction --ns 10,20,30 --scale none,auto --out results/iclr-construction"


def reproducible() -> list[str]:
    """Every registered experiment but ``bench`` (which has its own command)."""
    from pipelines.experiments import experiment_names

    return [name for name in experiment_names() if name != "bench"]


def add_arguments(p) -> None:
    from pipelines.experiments import get_experiment

    names = reproducible()
    desc = "; ".join(f"{name}: {get_experiment(name).DESCRIPTION}" for name in names)
    p.add_argument("experiment", choices=names, help=desc)
    p.add_argument("--dataset", default=None, choices=["mnist", "fashion-mnist", "both"],
                   help="data set(s); default: the experiment's own (both for the LeNet5 experiments)")
    p.add_argument("--ns", type=int_list, default=None,
                   help=f"sample sizes n, comma-separated, each 1 to {MAX_N}; default: the experiment's own "
                        "(iclr-lenet5: 5,10,15,20,25,30)")
    p.add_argument("--ks", type=int_list, default=None,
                   help="subset sizes k, comma-separated, for experiments with fixed-size subsets (rfss-density: "
                        "1,3,6,12)")
    p.add_argument("--solver", default=None,
                   help="solver name(s); experiments with a `solvers` field take several comma-separated "
                        "(e.g. auto,cpsat); default: the experiment's own (auto for the ICLR ones)")
    p.add_argument("--scale", type=str_list, default=None,
                   help="target scaling modes, comma-separated (none, auto, or a number), for experiments that "
                        "build networks; default none")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS",
                   help="per-instance wall-clock limit in seconds for the solvers; default: the experiment's own "
                        "(none for the ICLR ones)")
    p.add_argument("--epochs", type=bounded_int(1, 10_000), default=None,
                   help="training epochs of the target LeNet5; default: the experiment's own (the paper's 50)")
    p.add_argument("--seed", type=seed, default=0, help="seed of training, random samples and solvers")
    p.add_argument("--n-jobs", type=n_jobs, default=2, help="worker processes for the batch engine")
    p.add_argument("--data-dir", default=None, help="directory of standard IDX files instead of the installed data")
    p.add_argument("--store", default=None, help="SQLite store of solved instances (default: in the cache; verification: of its "
                                                 "exact MILPs' solver results, default none)")
    p.add_argument("--out", default=None, help="output folder (default: results/<experiment> under the current "
                                               "directory; its report files are replaced)")
    p.add_argument("--recompute-metrics", action="store_true",
                   help="iclr-lenet5 only: recompute the float64 output metrics even where a cached entry matches")
    p.add_argument("--verification-only", action="store_true",
                   help="iclr-construction, structured-random, rfss-density: only recompute the verification section "
                        "(the four numbers of a few tickets) of the run already in --out, keeping its other results")
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


def config_from_args(exp, args):
    """The experiment's Config from the flags given; a flag the experiment has no field for is refused,
    a flag not given keeps the experiment's own default."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(exp.Config)}
    values = {}

    def put(flag, value, *names):
        if value is None:
            return
        for name in names:
            if name in fields:
                values[name] = value
                return
        raise CliError(f"{flag}: experiment {exp.NAME} does not take it")

    if args.dataset is not None:
        put("--dataset", ("mnist", "fashion-mnist") if args.dataset == "both" else (args.dataset,), "datasets")
    if args.ns is not None and "ns" not in fields and "n" in fields:  # experiments with one n
        if len(args.ns) != 1:
            raise CliError(f"--ns: experiment {exp.NAME} takes one n")
        values["n"] = args.ns[0]
    else:
        put("--ns", tuple(args.ns) if args.ns is not None else None, "ns")
    put("--ks", tuple(args.ks) if args.ks is not None else None, "ks")
    if args.solver is not None:
        solvers = _solvers(args.solver)
        if "solvers" in fields:
            values["solvers"] = tuple(solvers)
        elif "solver" in fields:
            if len(solvers) != 1:
                raise CliError(f"--solver: {exp.NAME} takes one solver")
            values["solver"] = solvers[0]
        else:
            raise CliError(f"--solver: experiment {exp.NAME} does not take it")
    if args.scale is not None:
        from pipelines.constructions import parse_scale

        put("--scale", tuple(str(parse_scale(x)) for x in args.scale), "scales")
    put("--time-limit", args.time_limit, "time_limit")
    put("--epochs", args.epochs, "epochs")
    if "seed" in fields:
        values["seed"] = args.seed
    elif args.seed != 0:
        raise CliError(f"--seed: experiment {exp.NAME} does not take it")
    return exp.Config(**values)


def runtime_from_args(exp, args) -> dict:
    """Runtime options (they do not change the numbers) the experiment's run() accepts; a non-default
    value of one it does not accept is refused."""
    import inspect

    accepted = inspect.signature(exp.run).parameters
    runtime = {}
    for flag, name, value, default in (("--n-jobs", "n_jobs", args.n_jobs, 2), ("--data-dir", "data_dir", args.data_dir, None),
                                       ("--store", "store", args.store, None),
                                       ("--recompute-metrics", "recompute_metrics", args.recompute_metrics, False),
                                       ("--verification-only", "verification_only", args.verification_only, False)):
        if name in accepted:
            runtime[name] = value
        elif value != default:
            raise CliError(f"{flag}: experiment {exp.NAME} does not take it")
    return runtime


def run(args) -> int:
    from pipelines.experiments import get_experiment

    exp = get_experiment(args.experiment)
    check_paths(args)
    config = config_from_args(exp, args)
    runtime = runtime_from_args(exp, args)
    t0 = time.perf_counter()
    with stage_log(args.log, args.quiet) as progress:
        summary = exp.run(config, out=args.out, progress=progress, command=command_line(), **runtime)
    wall = time.perf_counter() - t0
    out = summary.get("out") or args.out
    print(f"wall time {wall:.1f} s ({wall / 60:.2f} min); {config.describe()}")
    print(f"results in {out}: results.csv, figures (.png, .pdf), summary.json, config.json, report.md")
    return 0
