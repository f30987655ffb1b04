"""``slth solve``: one instance file, one solver."""
from __future__ import annotations

from .args import MAX_THREADS, positive_float, seed, threads

HELP = "solve one instance file (.npz or .json)"
EXAMPLE = "slth solve inst.npz --solver cpsat --time-limit 10"


def add_arguments(p) -> None:
    import milp

    p.add_argument("instance", help="instance file written by milp.Instance.save (.npz or .json)")
    p.add_argument("--solver", default="auto",
                   help=f"solver backend, one of: {', '.join(milp.available_solvers())}")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS",
                   help="wall-clock limit in seconds; default none (auto then gives MILP backends 10 s)")
    p.add_argument("--seed", type=seed, default=0, help="solver random seed")
    p.add_argument("--threads", type=threads, default=1, help=f"solver threads (1 to {MAX_THREADS})")
    p.add_argument("--json", action="store_true", help="print the Solution as JSON")
    p.add_argument("--no-bounds", action="store_true",
                   help="skip the instance's own lower bound (exact enumeration where it takes about a second, "
                        "else the LP-duality bound up to milp.bounds.LP_BOUND_MAX_CELLS = n*d; up to ~2 s here, "
                        "computed after the solve, outside --time-limit)")


def run(args) -> int:
    import milp

    inst = milp.Instance.load(args.instance)
    sol = milp.solve(inst, solver=args.solver, time_limit=args.time_limit, seed=args.seed, threads=args.threads,
                     bounds=not args.no_bounds)
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
        for line in bound_lines(inst, sol):
            print(line)
        print(f"mask       {''.join(map(str, sol.mask.tolist()))}  ({int(sol.mask.sum())} of {inst.n} kept)")
        if sol.message:
            print(f"note       {sol.message.splitlines()[0]}")
    return 0 if sol.found else 1


def bound_lines(inst, sol) -> list[str]:
    """The lower bound (valid, with its source) and the counting floor (an estimate), labelled."""
    from milp.bounds import LP_BOUND_MAX_CELLS

    sources = {"exact": "exact optimum by enumeration, less float64 rounding",
               "cpsat": "CP-SAT's integer bound less its rounding",
               "lp": "LP duality, recomputed in float64"}
    lb = sol.lower_bound
    if lb is None:
        why = (f"n*d = {inst.n * inst.d:,} > {LP_BOUND_MAX_CELLS:,}" if inst.n * inst.d > LP_BOUND_MAX_CELLS
               else "not computed (--no-bounds)")
        lines = [f"lower bd   none       ({why})"]
    else:
        src = sol.extra.get("lower_bound_source", "")
        gap = sol.error - lb if sol.found else float("inf")
        lines = [f"lower bd   {lb:.6e}   (proven: {sources.get(src, src)}; error - lower bound = {gap:.3e})"]
    fl = sol.floor
    lines.append(f"floor      {'n/a' if fl is None else f'{fl:.6e}'}   (counting estimate, NOT a bound"
                 + ("" if fl is None or not sol.found or fl <= 0 else f"; error / estimate = {sol.error / fl:.3g}")
                 + ")")
    return lines
