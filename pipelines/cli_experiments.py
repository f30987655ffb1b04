"""``slth reproduce ...`` (and later ``slth prune``, ``slth verify``, ``slth bench``): experiment subcommands."""
from __future__ import annotations

import shlex
import sys
import time


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def cmd_reproduce(args) -> int:
    from .cli import CliError
    from .iclr_lenet5 import run_experiment

    if args.experiment not in ("iclr-lenet5", "iclr-construction"):
        raise CliError(f"unknown experiment {args.experiment!r}; available: iclr-lenet5, iclr-construction")
    datasets = ["mnist", "fashion-mnist"] if args.dataset == "both" else [args.dataset]
    if args.experiment == "iclr-construction":  # the pruned random network of Lemma 2 / Theorem 1
        from .construct import run_study

        if "," in args.solver:
            raise CliError("--solver: iclr-construction takes one solver")
        for flag, value, default in (("--epochs", args.epochs, 50), ("--data-dir", args.data_dir, None),
                                     ("--time-limit", args.time_limit, None), ("--store", args.store, None)):
            if value != default:
                raise CliError(f"{flag}: not supported by iclr-construction (it uses the cached 50-epoch LeNet5 "
                               f"of iclr-lenet5 and its own store)")
        t0 = time.perf_counter()
        summary = run_study(datasets, args.ns, solver=args.solver, seed=args.seed, n_jobs=args.n_jobs, out=args.out,
                            progress=not args.quiet, command="slth " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        print(f"wall time {time.perf_counter() - t0:.1f} s; results in {args.out or 'results/iclr-construction'}: "
              f"results.csv, construction_errors/construction_sizes (.png, .pdf), summary.json, report.md")
        return 0
    import milp

    solvers = _csv(args.solver)
    for s in solvers:
        if s not in milp.available_solvers():
            raise CliError(f"--solver: unknown or uninstalled solver {s!r}; choose from {', '.join(milp.available_solvers())}")
    t0 = time.perf_counter()
    summary = run_experiment(datasets=datasets, ns=args.ns, solvers=solvers, epochs=args.epochs, seed=args.seed,
                             out=args.out, time_limit=args.time_limit, n_jobs=args.n_jobs, data_dir=args.data_dir,
                             store=args.store, progress=not args.quiet, recompute_metrics=args.recompute_metrics,
                             command="slth " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    wall = time.perf_counter() - t0
    cached = all(d["model_was_cached"] for d in summary["timing"]["datasets"].values())
    print(f"wall time {wall:.1f} s ({wall / 60:.2f} min) for {', '.join(datasets)}, n = {args.ns}, "
          f"{args.epochs} epochs, solvers {solvers}; trained models {'cached' if cached else 'trained in this run'} "
          f"(model preparation {summary['timing']['training_seconds']:.0f} s)")
    print(f"results in {summary.get('out', args.out or 'results/iclr-lenet5')}: results.csv, figure3/figure4 "
          f"(.png, .pdf), summary.json, report.md")
    return 0


def add_parsers(sub) -> None:
    from .cli import _int_list, _positive_float

    p = sub.add_parser("reproduce", help="reproduce a paper's experiment (iclr-lenet5, iclr-construction)")
    p.add_argument("experiment", help="iclr-lenet5 (Section 3, Figs. 3-4) or iclr-construction (the pruned random "
                                      "network of Lemma 2 / Theorem 1 for the trained LeNet5, verified three ways)")
    p.add_argument("--dataset", default="both", choices=["mnist", "fashion-mnist", "both"])
    p.add_argument("--ns", type=_int_list, default=[5, 10, 15, 20, 25, 30], help="sample sizes, e.g. 5,10,15")
    p.add_argument("--solver", default="auto", help="solver name, or several comma-separated (auto,cpsat)")
    p.add_argument("--time-limit", type=_positive_float, default=None, help="per-instance seconds (MILP backends)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--data-dir", default=None, help="directory of standard IDX files instead of the installed data")
    p.add_argument("--store", default=None, help="SQLite store of solved instances (default: in the cache)")
    p.add_argument("--out", default=None, help="output folder (default results/iclr-lenet5)")
    p.add_argument("--recompute-metrics", action="store_true",
                   help="recompute the float64 output metrics even where a cached entry matches")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_reproduce)
