"""What a useful certified logit error of a whole pruned random LeNet5 would take (issue 14).

The certified bound of :func:`pipelines.verify.certified` (ICLR 2022 Appendix B, conv and dense layers) is, to
first order, linear in the entry errors: with every weight and bias of the trained LeNet5 off by delta, it is
S * delta. This script measures S on the cached trained LeNet5s (delta = 1e-9, so the bound's curvature is
negligible), the delta that a certificate of 1 and of 0.1 logits needs, and the n at density k/n = 1/2 whose
counting estimate puts the *largest* of the 107,786 entry errors there: median m(n) = ln 2 / (2 C(n, n/2)
f_{n/2}(0)) (the estimate that matches the measured RFSS medians within 0.86-1.25x in results/rfss-density),
and, errors being roughly exponential around it, the max over N entries ~ m(n) ln(N) / ln 2. It ignores the
entries out of any k-subset's reach (they need scaling first) and the ICLR conv part's candidates (about n/2
of them per entry): an optimistic estimate.

    python scripts/rfss_certificate_budget.py [--out results/rfss-density/certificate_budget.txt]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import time  # noqa: E402

import numpy as np  # noqa: E402
from torch import nn  # noqa: E402

import milp  # noqa: E402

from pipelines.experiments.rfss_density import density_at, sum_densities  # noqa: E402
from pipelines.reporting import atomic_write_text, command_line, machine_line  # noqa: E402
from pipelines.targets import get_trained_lenet5  # noqa: E402
from pipelines.verify import certified  # noqa: E402

MAX_N = 44  # exact meet in the middle with the cardinality row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    lines = []

    def say(text):
        print(text, flush=True)
        lines.append(text)

    dens = sum_densities(MAX_N // 2)
    median = {n: math.log(2) / (2 * math.comb(n, n // 2) * float(density_at(dens[n // 2 - 1], 0.0)))
              for n in range(2, MAX_N + 1, 2)}
    timed: dict[int, int] = {}
    for dataset in ("mnist", "fashion-mnist"):
        model, _ = get_trained_lenet5(dataset, progress=False)
        net = nn.Sequential(*model.features, *model.classifier).double()
        layers = [m for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
        entries = sum(p.numel() for p in net.parameters())
        delta = 1e-9
        eff = [(m.weight.detach() + delta, m.bias.detach() + delta) for m in layers]
        S = certified(list(net), eff)["abs"] / delta
        say(f"{dataset}: certified bound ~ S * delta with S = {S:.3e} ({entries} entries, every one off by delta)")
        for cert in (1.0, 0.1):
            need = cert / S
            n_ok = next((n for n, m in median.items() if m * math.log(entries) / math.log(2) <= need), None)
            if n_ok:
                timed[n_ok] = entries
            where = (f"n = {n_ok} (k = {n_ok // 2}; median entry error {median[n_ok]:.1e}), about "
                     f"{n_ok / 24:.1f}x the random network of n = 24" if n_ok else f"n > {MAX_N}, beyond exact solving")
            say(f"  certificate <= {cert:g} logit needs every entry error <= {need:.1e}: at density 1/2, {where}")
    for n in sorted(timed):
        rng = np.random.default_rng(n)
        insts = [milp.Instance(rng.uniform(-1, 1, n) * rng.uniform(0, 1, n), rng.uniform(-0.1, 0.1), cardinality=n // 2)
                 for _ in range(5)]
        t0 = time.perf_counter()
        for inst in insts:
            milp.solve(inst, solver="exact")
        per = (time.perf_counter() - t0) / len(insts)
        say(f"exact RFSS at n = {n}, k = {n // 2}: {per:.2f} s per instance (mean of 5 random instances), so "
            f"{per * timed[n] / 3600:.1f} CPU-hours for the {timed[n]} entries of the whole LeNet5")
    say(f"{machine_line()}")
    say(f"command: {command_line(prog='python scripts/rfss_certificate_budget.py')}")
    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
