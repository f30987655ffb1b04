"""Benchmark the float64 metric pass: ``pipelines.metrics.conv_outputs`` (fast) against
``conv_outputs_reference`` (the module's own forward, the implementation before) on the work of one
LeNet5 sweep point: the conv part over the 60k MNIST training and 10k test images.

Prints both times (median of ``--repeats``, the two alternating), the speed-up, the max relative
difference (max |fast - ref| / max |ref| over train and test), both paths with one torch thread (to
separate the threading from the arithmetic), the ``output_errors`` reductions of the same pass
(whole-array formula before, row chunks now; bit for bit equal), the machine and the command, and
writes the same text to ``<out>/bench_metrics.txt``. Target (issue): >= 5x, difference <= 1e-12.

    python scripts/bench_metrics.py [--repeats 3] [--threads 2] [--sweep] [--limit N] [--out results/bench_metrics]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.lenet5 import LeNet5  # noqa: E402
from pipelines.data import load_dataset  # noqa: E402
from pipelines.metrics import (FAST_CHUNK, conv_outputs, conv_outputs_reference, output_errors,  # noqa: E402
                               relative_errors)
from pipelines.reporting import atomic_write_text, command_line, load_average, machine_line  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def rel_diff(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


def output_errors_before(f_out, g_out) -> dict:
    """``output_errors`` as it was: whole-array temporaries."""
    err = (f_out - g_out).abs().amax(dim=1)
    top = f_out.abs().amax(dim=1)
    ratio = relative_errors(err, top)
    max_abs, max_f = float(err.max()), float(top.max())
    return {"per_image": float(ratio.max()), "global": max_abs / max_f if max_f > 0 else float("inf"),
            "max_abs": max_abs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, 2 here)")
    p.add_argument("--sweep", action="store_true",
                   help="also time chunk sizes of both paths on the 10k test images")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each split (smoke test)")
    p.add_argument("--out", default="results/bench_metrics", help="folder for bench_metrics.txt")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lines: list[str] = []

    def say(text: str) -> None:  # echo, and keep the line for the report file
        print(text, flush=True)
        lines.append(text)

    cmd = command_line(argv, prog="python scripts/bench_metrics.py")
    train, _ = load_dataset("mnist", "train")
    test, _ = load_dataset("mnist", "test")
    if args.limit:
        train, test = train[:args.limit], test[:args.limit]
    features = LeNet5(seed=0).features.double()
    threads = torch.get_num_threads()
    say(f"$ {cmd}")
    say(f"{machine_line('load at start')}, torch {torch.__version__}, {threads} torch threads")
    say(f"data: MNIST train {tuple(train.shape)} + test {tuple(test.shape)} (one sweep point's output "
        f"metrics); model: LeNet5(seed=0).features.double(); fast chunk {FAST_CHUNK} images")

    def pass_(fn):
        return fn(features, train), fn(features, test)

    ref_times, fast_times, diffs = [], [], []
    ref_out = None
    for r in range(args.repeats):
        order = [("ref", conv_outputs_reference), ("fast", conv_outputs)]
        for kind, fn in (order if r % 2 == 0 else order[::-1]):
            t, out = timed(lambda: pass_(fn))
            (ref_times if kind == "ref" else fast_times).append(t)
            if kind == "ref":
                ref_out = out
            else:
                fast_out = out
        diffs.append(max(rel_diff(fast_out[0], ref_out[0]), rel_diff(fast_out[1], ref_out[1])))
        assert fast_out[0].shape == ref_out[0].shape and fast_out[0].dtype == torch.float64
    ref_t, fast_t = statistics.median(ref_times), statistics.median(fast_times)
    speedup = ref_t / fast_t
    diff = max(diffs)
    n = len(train) + len(test)
    say(f"reference (module forward, batches of 100, {threads} threads): {ref_t:7.2f} s "
        f"({ref_t / n * 1e6:5.1f} us/image)   runs: " + ", ".join(f"{x:.2f}" for x in ref_times))
    say(f"fast      (im2col + dgemm, {threads} worker threads)          : {fast_t:7.2f} s "
        f"({fast_t / n * 1e6:5.1f} us/image)   runs: " + ", ".join(f"{x:.2f}" for x in fast_times))
    say(f"speed-up: {speedup:.1f}x   max relative difference (max-norm): {diff:.2e}")

    torch.set_num_threads(1)
    try:
        t1, _ = timed(lambda: pass_(conv_outputs_reference))
        f1, _ = timed(lambda: pass_(conv_outputs))
    finally:
        torch.set_num_threads(threads)
    say(f"with 1 torch thread (one run each): reference {t1:.2f} s, fast {f1:.2f} s ({t1 / f1:.1f}x)")

    # output_errors on the same outputs against a slightly perturbed copy of the model (an "approximation")
    approx = LeNet5(seed=0).features.double()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for q in approx.parameters():
            q.add_(1e-6 * torch.randn(q.shape, generator=g, dtype=q.dtype))
    g_out = conv_outputs(approx, train), conv_outputs(approx, test)
    te_before, before = timed(lambda: [output_errors_before(f, a) for f, a in zip(fast_out, g_out)])
    te_now, now = timed(lambda: [output_errors(f, a) for f, a in zip(fast_out, g_out)])
    assert before == now, (before, now)
    say(f"output_errors (train + test): before {te_before:.2f} s, now {te_now:.2f} s, equal results; "
        f"whole metric pass (conv outputs + errors): before {ref_t + te_before:.2f} s, now "
        f"{fast_t + te_now:.2f} s ({(ref_t + te_before) / (fast_t + te_now):.1f}x)")

    if args.sweep:
        for bs in (100, 500, 2000):
            t, _ = timed(lambda: conv_outputs_reference(features, test, bs))
            say(f"sweep, {len(test)} test images: reference batch {bs:5d}: {t:6.2f} s")
        for bs in (8, 16, 32, 64, 128, 256, 1000, 2000):
            t, _ = timed(lambda: conv_outputs(features, test, bs))
            say(f"sweep, {len(test)} test images: fast chunk      {bs:5d}: {t:6.2f} s")

    say(f"targets: speed-up >= 5x: {'PASS' if speedup >= 5 else 'FAIL'}; "
        f"difference <= 1e-12: {'PASS' if diff <= 1e-12 else 'FAIL'}")
    say(f"load average {load_average():.2f} (1 min) at end")
    atomic_write_text(Path(args.out) / "bench_metrics.txt", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
