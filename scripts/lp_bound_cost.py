"""Cost of the LP-duality lower bound (:func:`milp.bounds.lp_lower_bound`) against n and dim (issue 13).

MRSS instances as the structured construction and ``slth bench --suite mrss`` build them: NSN candidates
(NeurIPS 2023, Definition 4), dim in {25, 150, 400} x n in {64, 256, 1024, 4096}, three target kinds:
``kernel`` (z ~ N(0, 0.1^2), free subset size, like the structured construction), ``uniform``
(z ~ U[-0.5, 0.5], free) and ``card`` (the mrss suite: k = floor(sqrt(n)), ||z||_1 = sqrt(k) / 2).
One HiGHS thread; seconds = wall time of the whole call (model building, LP, the float64 recomputation).
The numbers decide :data:`milp.bounds.LP_BOUND_MAX_CELLS`.

Usage: python scripts/lp_bound_cost.py [--dims 25,150,400] [--ns 64,256,1024,4096] [--time-limit 120] [--out FILE]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

import milp
from milp.bounds import lp_lower_bound
from models.random_tensors import nsn
from pipelines.reporting import atomic_write_text, command_line, machine_line


def instance(kind: str, d: int, n: int, seed: int = 0) -> milp.Instance:
    rng = np.random.default_rng([seed, 13, d, n])
    X = nsn(rng, n, d)
    if kind == "kernel":
        return milp.Instance(X, rng.normal(0.0, 0.1, d))
    if kind == "uniform":
        return milp.Instance(X, rng.uniform(-0.5, 0.5, d))
    k = math.isqrt(n)
    u = rng.uniform(-1, 1, d)
    return milp.Instance(X, u * (math.sqrt(k) / 2) / np.abs(u).sum(), cardinality=k)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", default="25,150,400")
    ap.add_argument("--ns", default="64,256,1024,4096")
    ap.add_argument("--kinds", default="kernel,uniform,card")
    ap.add_argument("--time-limit", type=float, default=120.0, help="HiGHS time limit per LP")
    ap.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    args = ap.parse_args(argv)
    lines = [f"Command: `{command_line(prog='python scripts/lp_bound_cost.py')}`", "",
             f"Machine: {machine_line(load_label='load')}", "",
             "| dim | n | n*dim | target | seconds | lower bound | ||z||_inf |", "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for d in [int(x) for x in args.dims.split(",")]:
        for n in [int(x) for x in args.ns.split(",")]:
            for kind in args.kinds.split(","):
                inst = instance(kind, d, n)
                t0 = time.perf_counter()
                lb = lp_lower_bound(inst, time_limit=args.time_limit)
                sec = time.perf_counter() - t0
                note = " (time limit)" if sec >= args.time_limit else ""
                line = (f"| {d} | {n} | {n * d} | {kind} | {sec:.3f}{note} | {lb:.3g} | "
                        f"{float(np.abs(inst.target).max()):.3g} |")
                lines.append(line)
                print(line, flush=True)
    lines += ["", f"Machine after: {machine_line(load_label='load')}"]
    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
