"""The ``slth`` command line. Thin: every subcommand parses arguments and calls the library.

Subcommands import their modules lazily so ``slth solve`` does not pay for torch.
"""
from __future__ import annotations

import argparse
import json
import sys


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 5,10,15, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


# --------------------------------------------------------------------------- solve
def cmd_solve(args) -> int:
    import milp

    inst = milp.Instance.load(args.instance)
    sol = milp.solve(inst, solver=args.solver, time_limit=args.time_limit, seed=args.seed, threads=args.threads)
    if args.json:
        print(sol.to_json())
    else:
        print(f"instance   {args.instance}: {inst!r}")
        print(f"solver     {sol.solver} ({sol.solver_version})")
        print(f"status     {sol.status.value}")
        print(f"error      {sol.error:.6e}   (true residual of the 0/1 mask, float64)")
        claimed = "n/a" if sol.solver_objective is None else f"{sol.solver_objective:.6e}"
        print(f"claimed    {claimed}   (solver's own objective)")
        print(f"seconds    {sol.seconds:.4f}")
        print(f"mask       {''.join(map(str, sol.mask.tolist()))}  ({int(sol.mask.sum())} of {inst.n} kept)")
        if sol.message:
            print(f"note       {sol.message.splitlines()[0]}")
    return 0 if sol.found else 1


def cmd_export(args) -> int:
    import milp

    inst = milp.Instance.load(args.instance)
    milp.Encoding(inst).write(args.out)
    print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- batch
def cmd_batch(args) -> int:
    import milp
    from milp.batch import load_instances, solve_many

    names, instances = load_instances(args.path)
    sols = solve_many(instances, solver=args.solver, n_jobs=args.n_jobs, store=args.store,
                      time_limit=args.time_limit, seed=args.seed, chunk_size=args.chunk_size,
                      backend=args.backend, scheduler=args.scheduler, progress=not args.quiet)
    rows = [{"name": name, **{k: v for k, v in s.to_dict().items() if k not in ("extra",)}}
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slth", description="Strong lottery tickets by subset-sum MILPs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("solve", help="solve one instance file (.npz or .json)")
    p.add_argument("instance")
    p.add_argument("--solver", default="auto")
    p.add_argument("--time-limit", type=_positive_float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the Solution as JSON")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("export", help="write an instance's MILP as an MPS or LP file")
    p.add_argument("instance")
    p.add_argument("--out", required=True, help="FILE.mps or FILE.lp")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("batch", help="solve a file or folder of instances in parallel, with a resumable store")
    p.add_argument("path")
    p.add_argument("--solver", default="auto")
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--store", default=None, help="SQLite store file (resumable); default none")
    p.add_argument("--time-limit", type=_positive_float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--backend", default="loky", choices=["loky", "dask"])
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--out", default=None, help="write results as JSON here instead of stdout")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_batch)

    try:
        from . import cli_experiments
    except ImportError:  # pragma: no cover - during partial installs
        cli_experiments = None
    if cli_experiments is not None:
        cli_experiments.add_parsers(sub)
        from . import cli_bench

        cli_bench.add_bench_parser(sub)
        from . import construct

        construct.add_prune_verify_parsers(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "seed", 0) is not None and getattr(args, "seed", 0) < 0:
        parser.error("--seed must be a non-negative integer")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, TypeError, CliError) as exc:
        print(f"slth {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
