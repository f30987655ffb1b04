"""Benchmark ``milp.solve_many``: 2572 RSS instances (one LeNet5 sweep point) at n = 30, exact solver.

Prints wall time and instances/second on ``--n-jobs`` workers without a store, with a fresh SQLite
store, the store's overhead, and the rerun time with a warm store (everything skipped).
Targets (issue 3): <= 30 s wall, store overhead <= 10%.

    python scripts/bench_batch.py [--count 2572] [--n 30] [--n-jobs 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import milp  # noqa: E402
from milp.batch import auto_chunk_size, solve_many  # noqa: E402
from milp.store import SolutionStore  # noqa: E402
from pipelines.reporting import atomic_write_text, command_line, load_average  # noqa: E402


def make_instances(count: int, n: int, seed: int) -> list[milp.Instance]:
    """RSS instances: x ~ U[-1, 1]^n, z ~ U[-1, 1]."""
    rng = np.random.default_rng(seed)
    return [milp.Instance(rng.uniform(-1, 1, n), rng.uniform(-1, 1)) for _ in range(count)]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=2572)
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--solver", default="exact")
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/bench_batch", help="folder for bench_batch.txt (the printed report)")
    args = p.parse_args(argv)
    lines: list[str] = []

    def say(text: str) -> None:  # echo, and keep the line for the report file
        print(text, flush=True)
        lines.append(text)

    instances = make_instances(args.count, args.n, args.seed)
    run = dict(solver=args.solver, n_jobs=args.n_jobs, chunk_size=args.chunk_size, progress=False)
    chunk = args.chunk_size or auto_chunk_size(args.count, args.n_jobs, args.solver, instances)
    say(f"{args.count} RSS instances, n = {args.n}, solver = {args.solver}, n_jobs = {args.n_jobs}, "
          f"chunk size = {chunk}, {os.cpu_count()} cores, load average {load_average():.2f} "
          f"(1 min) at start")

    t, _ = timed(lambda: solve_many(instances[:4], **run))
    say(f"worker start-up (first 4-instance batch): {t:.2f} s")

    no_store, with_store = [], []
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            path = Path(tmp) / f"store{r}.db"
            order = [("none", None), ("store", path)] if r % 2 == 0 else [("store", path), ("none", None)]
            for kind, store in order:
                t, sols = timed(lambda: solve_many(instances, store=store, **run))
                (no_store if kind == "none" else with_store).append(t)
                sig = [(s.mask.tobytes(), s.error, s.status.value) for s in sols]
                assert reference is None or sig == reference, "results differ between runs"
                reference = sig
        with SolutionStore(path) as db:
            assert len(db) == args.count, len(db)
        warm, _ = timed(lambda: solve_many(instances, store=path, **run))
        size_kb = path.stat().st_size / 1024

    statuses = {s for _, _, s in reference}
    a, b = statistics.median(no_store), statistics.median(with_store)
    overhead = 100 * (b - a) / a
    say(f"statuses: {sorted(statuses)}; runs per setting: {args.repeats} (median reported)")
    say(f"no store      : {a:7.2f} s wall  {args.count / a:8.1f} inst/s   runs: "
          + ", ".join(f"{x:.2f}" for x in no_store))
    say(f"fresh store   : {b:7.2f} s wall  {args.count / b:8.1f} inst/s   runs: "
          + ", ".join(f"{x:.2f}" for x in with_store))
    say(f"store overhead: {overhead:+.1f} %  (store file {size_kb:.0f} KiB)")
    say(f"warm store    : {warm:7.2f} s wall  {args.count / warm:8.1f} inst/s   (all {args.count} skipped)")
    say(f"targets: wall <= 30 s: {'PASS' if max(a, b) <= 30 else 'FAIL'}; "
          f"store overhead <= 10 %: {'PASS' if overhead <= 10 else 'FAIL'}")
    say(f"load average {load_average():.2f} (1 min) at end")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = command_line(argv, prog="python scripts/bench_batch.py")
    atomic_write_text(out / "bench_batch.txt", f"$ {cmd}\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
