"""``slth batch``: a file or folder of instances, solved in parallel with a resumable store."""
from __future__ import annotations

import json
import sys

from .args import check_output_file, n_jobs, positive_float, positive_int, seed

HELP = "solve a file or folder of instances in parallel, with a resumable store"
EXAMPLE = "slth batch instances/ --solver exact --n-jobs 2 --store results.sqlite"


def add_arguments(p) -> None:
    import milp

    p.add_argument("path", help="an instance file or a folder of .npz/.json instance files")
    p.add_argument("--solver", default="auto",
                   help=f"solver backend, one of: {', '.join(milp.available_solvers())}")
    p.add_argument("--n-jobs", type=n_jobs, default=1, help="worker processes (-1: all cores; 1: in this process)")
    p.add_argument("--store", default=None, help="SQLite store file: solved instances are kept and skipped on rerun; default none")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS",
                   help="per-instance wall-clock limit in seconds; default none")
    p.add_argument("--seed", type=seed, default=0, help="base seed; each instance gets one derived from it")
    p.add_argument("--chunk-size", type=positive_int, default=None, help="instances per task (default: automatic)")
    p.add_argument("--backend", default="loky", choices=["loky", "dask"], help="joblib backend")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--out", default=None, help="write results as JSON here instead of stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--bounds", action="store_true",
                   help="also each instance's own proven lower bound (exact enumeration where tiny, else LP duality "
                        "up to n*d = 600,000), computed once per instance outside the time limits; every result has "
                        "floor (counting estimate, not a bound) and lower_bound (proven, or null) anyway")


def run(args) -> int:
    from milp.batch import load_instances, solve_many

    if args.out:  # output paths first: a bad one must not cost a whole batch of solves
        check_output_file(args.out, "--out")
    if args.store:
        check_output_file(args.store, "--store", create_parents=True)
    names, instances = load_instances(args.path)
    sols = solve_many(instances, solver=args.solver, n_jobs=args.n_jobs, store=args.store,
                      time_limit=args.time_limit, seed=args.seed, chunk_size=args.chunk_size,
                      backend=args.backend, scheduler=args.scheduler, progress=not args.quiet, bounds=args.bounds)
    rows = [{"name": name, **{k: v for k, v in s.to_dict().items() if k not in ("extra",)},
             "lower_bound_source": s.extra.get("lower_bound_source", "") if s.lower_bound is not None else ""}
            for name, s in zip(names, sols)]
    for r in rows:
        r["mask"] = "".join(map(str, r["mask"]))
        if r["error"] == float("inf"):
            r["error"] = None
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)
        print(f"wrote {len(rows)} results to {args.out}")
    else:
        for r in rows:
            print(json.dumps(r))
    counts: dict[str, int] = {}
    for s in sols:
        counts[s.status.value] = counts.get(s.status.value, 0) + 1
    print("status counts: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())), file=sys.stderr)
    return 0
