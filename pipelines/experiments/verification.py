"""Verification that cannot lie (issue 15): the four sup-norm numbers of pruned networks,
empirical <= adversarial <= exact <= certified, on small targets and on the LeNet5 ICLR tickets.

For every small target (1-3 convs, pooling, strides, 1-2 input channels, fixed small input size) and n:
build the ICLR construction (exact subset-sum solver), then

- empirical: max error over ``empirical_points`` uniform random inputs of the box [0, 1]^shape;
- adversarial: :func:`pipelines.verify.adversarial` (``attack_rounds`` rounds, ``attack_time`` s at most);
- exact: :func:`pipelines.exact_sup.exact_sup` (one MILP per output channel, border class and sign, skipping
  those whose interval bound is below the attack's value; ``time_limit`` s per MILP, ``milp_total`` s in all):
  a bound pair, equal where the MILPs closed;
- certified: the interval certificate (:func:`pipelines.verify.certified_intervals`) and the Appendix B
  one (``Construction.certify``).

For the LeNet5 tickets (``lenet5_ns``; trained target of :mod:`pipelines.targets`, ``solver="auto"`` as
``slth prune``): the same with 2000 MNIST test images as the empirical set (and attack starts), 784
inputs, and ``lenet5_milp_total`` s of MILPs. Rows are cached as JSON in ``<out>/rows/`` (a rerun skips
finished rows of the same config); the report is :mod:`pipelines.experiments.verification_report`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch
from torch import nn

from ..reporting import atomic_write_json, machine_line
from .base import ExperimentConfig, config_record, prepare_out, record_run
from .four_numbers import ticket_row
from .verification_report import write_all

NAME = "verification"
DESCRIPTION = ("the four sup-norm numbers (empirical <= adversarial <= exact MILP <= certified) on small targets "
               "and the LeNet5 ICLR tickets")

#: name -> (layers, input shape (c0, D, D)); weights: PyTorch's default init under torch.manual_seed(seed)
TARGETS = {
    "conv": (lambda: [nn.Conv2d(1, 2, 3)], (1, 5, 5)),
    "conv-relu-pool": (lambda: [nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2)], (1, 6, 6)),
    "strided-conv-relu-conv": (lambda: [nn.Conv2d(2, 3, 3, stride=2), nn.ReLU(), nn.Conv2d(3, 2, 2)], (2, 5, 5)),
    "strided-pool-conv": (lambda: [nn.Conv2d(2, 4, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2, stride=1),
                                   nn.Conv2d(4, 2, 1)], (2, 7, 7)),
    "three-convs": (lambda: [nn.Conv2d(1, 3, 2, stride=2), nn.ReLU(), nn.Conv2d(3, 3, 2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(3, 2, 1)], (1, 6, 6)),
    "padded-two-pools": (lambda: [nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)], (1, 4, 4)),
    "two-channel-padded": (lambda: [nn.Conv2d(2, 2, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(2, 2, 2),
                                    nn.ReLU(), nn.MaxPool2d(2, stride=1)], (2, 6, 6)),
}


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Everything that determines the numbers; its hash names the run."""

    NAME = NAME
    targets: tuple = tuple(TARGETS)
    ns: tuple = (4, 7, 10)
    seed: int = 0
    solver: str = "exact"
    milp_solver: str = "highs"
    milp_confirm: str = "scip"
    time_limit: float = 30.0
    milp_total: float = 60.0
    attack_time: float = 30.0
    attack_rounds: int = 10
    empirical_points: int = 2000
    lenet5_ns: tuple = (10, 20)
    lenet5_milp_total: float = 180.0
    lenet5_attack_time: float = 60.0

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown:
            raise ValueError(f"targets: unknown {', '.join(unknown)}; choose from {', '.join(TARGETS)}")


def small_target(name: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(*TARGETS[name][0]()).double().eval()


def _row(config, kind, name, n, target, c, shape, data, attack_time, milp_total, solve_s, n_jobs=1, store=None) -> dict:
    row = ticket_row(target, c, shape, data, seed=config.seed, restarts=8, steps=60, attack_time=attack_time,
                     attack_rounds=config.attack_rounds, milp_solver=config.milp_solver,
                     milp_confirm=config.milp_confirm, time_limit=config.time_limit, milp_total=milp_total,
                     n_jobs=n_jobs, store=store)
    return {"kind": kind, "target": name, "n": n, **row, "solve_seconds": round(solve_s, 2)}


def run(config: Config, *, out=None, progress: bool = True, command: str = "", n_jobs: int = 1, store=None) -> dict:
    """Run the table (rows cached in ``<out>/rows``) and write results.csv, summary.json and report.md.
    ``n_jobs``: worker processes of the subset-sum solves and of the exact MILPs; ``store``: None or the
    SQLite file (:class:`milp.store.ResultStore`) keeping the MILP solver results, so a rerun solves only
    what it lacks."""
    from ..constructions import construct

    started = time.time()
    out = prepare_out(config, out, progress)
    rows_dir = out / "rows"
    rows_dir.mkdir(exist_ok=True)
    jobs = [("small", t, n) for t in config.targets for n in config.ns] + [("lenet5", "lenet5-mnist", n)
                                                                            for n in config.lenet5_ns]
    rows, t_all, stages = [], time.perf_counter(), {}
    for k, (kind, name, n) in enumerate(jobs):
        path = rows_dir / f"{name}_n{n}_{config.key()}.json"
        if path.exists():
            rows.append(json.loads(path.read_text()))
            continue
        t0 = time.perf_counter()
        if kind == "small":
            target = small_target(name, config.seed)
            shape = TARGETS[name][1]
            c, _ = construct(target, n, "iclr", solver=config.solver, seed=config.seed, n_jobs=n_jobs)
            data = torch.rand((config.empirical_points, *shape), dtype=torch.float64,
                              generator=torch.Generator().manual_seed(config.seed))
            solve_s = time.perf_counter() - t0
            row = _row(config, kind, name, n, target, c, shape, data, config.attack_time, config.milp_total, solve_s,
                       n_jobs, store)
        else:
            from ..data import load_dataset
            from ..targets import load_target

            _, features = load_target(name, progress=progress)
            target = features.double().eval()
            c, _ = construct(target, n, "iclr", solver="auto", seed=config.seed, n_jobs=n_jobs)
            X, _ = load_dataset("mnist", "test")
            solve_s = time.perf_counter() - t0
            row = _row(config, kind, name, n, target, c, (1, 28, 28), X[:2000].double(), config.lenet5_attack_time,
                       config.lenet5_milp_total, solve_s, n_jobs, store)
        atomic_write_json(path, row)
        rows.append(row)
        stages[f"{name}:n={n}"] = round(time.perf_counter() - t0, 1)
        if progress:
            el = time.perf_counter() - t_all
            left = len(jobs) - k - 1
            print(f"[{k + 1}/{len(jobs)}] {name} n={n}: empirical {row['empirical_abs']:.4g} <= adversarial "
                  f"{row['adversarial_abs']:.4g} <= exact [{row['exact_lower']:.4g}, {row['exact_upper']:.4g}]"
                  f"{'' if row['exact_closed'] else ' (open)'} <= certified {row['certified_abs']:.4g} (Appendix B "
                  f"{row['certified_appendix_b']:.4g}) in {stages[f'{name}:n={n}']:.0f} s (elapsed {el:.0f} s, "
                  f"at most ~{left * (config.attack_time + config.milp_total):.0f} s left)", flush=True)
    summary = {"command": command, "machine": machine_line(), **config_record(config),
               "wall_seconds": round(time.perf_counter() - t_all, 1), "results": rows}
    record_run(out, config, command, started, stages=stages)
    write_all(rows, summary, out)
    return {**summary, "out": str(out)}


def rewrite_report(out) -> None:
    """Rewrites results.csv and report.md from summary.json (no recomputation)."""
    from pathlib import Path

    out = Path(out)
    summary = json.loads((out / "summary.json").read_text())
    write_all(summary["results"], summary, out)
