"""The LeNet5 construction study (ICLR 2022, Lemma 2 / Theorem 1): the actual pruned random network.

For each data set, target scaling mode and n: build the random 2l-layer CNN for the trained LeNet5's
conv part (:class:`pipelines.constructions.iclr.IclrConstruction`), solve one RSS per target entry
through the batch engine, verify the pruned network three ways (empirical / adversarial / certified,
:mod:`pipelines.verify`) and measure the accuracy of LeNet5 with the pruned random conv part.
The report is :mod:`pipelines.experiments.iclr_construction_report`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch

from ..constructions import construct
from ..metrics import accuracy_with_features
from ..reporting import machine_line
from .base import ExperimentConfig, config_record, prepare_out, record_run
from .iclr_construction_report import write_all

NAME = "iclr-construction"
DESCRIPTION = ("the pruned random network of ICLR 2022 Lemma 2 / Theorem 1 for the trained LeNet5's conv part, "
               "verified three ways, with and without target scaling")


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Everything that determines the study's numbers; its hash names the run."""

    NAME = NAME
    datasets: tuple = ("mnist", "fashion-mnist")
    ns: tuple = (5, 10, 15, 20, 25, 30)
    scales: tuple = ("none",)
    solver: str = "auto"
    time_limit: float | None = None
    seed: int = 0
    epochs: int = 50
    empirical_images: int = 2000
    restarts: int = 8
    steps: int = 60
    verify_ns: tuple = (5,)
    verify_attack_time: float = 20.0
    verify_attack_rounds: int = 10
    verify_time_limit: float = 30.0
    verify_milp_total: float = 60.0


def verification(config: Config, store, n_jobs: int = 1, data_dir=None, progress: bool = True) -> list[dict]:
    """The four numbers (:mod:`pipelines.experiments.four_numbers`) of the tickets of every data set at the
    first scaling mode and every n of ``verify_ns`` (the smallest n by default: the cheapest ticket, and the
    exact MILPs of a 784-input network stay a bracket): empirical over the first ``empirical_images`` test
    images, which are also the attack's starts."""
    from ..data import load_dataset
    from ..targets import load_target
    from .four_numbers import progress_line, ticket_row

    rows, scale = [], config.scales[0]
    for ds in config.datasets:
        _, features = load_target(f"lenet5-{ds}", epochs=config.epochs, seed=config.seed, progress=progress)
        target = features.double().eval()
        X_test, _ = load_dataset(ds, "test", root=data_dir)
        for n in config.verify_ns:
            t0 = time.perf_counter()
            c, _ = construct(target, n, "iclr", solver=config.solver, seed=config.seed, scale=scale, n_jobs=n_jobs,
                             time_limit=config.time_limit, store=store, progress=False)
            row = {"dataset": ds, "scale": str(scale), "n": n,
                   **ticket_row(target, c, (1, 28, 28), X_test[:config.empirical_images].double(), seed=config.seed,
                                restarts=config.restarts, steps=config.steps, attack_time=config.verify_attack_time,
                                attack_rounds=config.verify_attack_rounds, time_limit=config.verify_time_limit,
                                milp_total=config.verify_milp_total)}
            rows.append(row)
            if progress:
                print(progress_line("verification", f"{ds} scale={scale} n={n}", row, t0), flush=True)
    return rows


def run(config: Config, *, out=None, progress: bool = True, command: str = "", n_jobs: int = 2,
        store=None, data_dir=None, verification_only: bool = False) -> dict:
    """Run the study (resumable: solved instances come from the store) and write its report into ``out``.
    ``verification_only``: only the verification section, on the tickets of the run already in ``out`` (same
    config up to the ``verify_*`` fields; its other numbers are kept)."""
    from ..data import load_dataset
    from ..paths import store_dir
    from ..targets import load_target
    from ..verify import verify
    from .four_numbers import previous_summary, rerun_verification, run_record

    started = time.time()
    previous = previous_summary(out, config) if verification_only else None
    out = prepare_out(config, out, progress)
    store = store if store is not None else store_dir() / "construction.sqlite"
    if previous is not None:
        summary = rerun_verification(out, config, command, started, previous,
                                    lambda: verification(config, store, n_jobs, data_dir, progress))
        write_all(summary["results"], summary, out)
        return {**summary, "out": str(out)}
    rows = []
    t_all = time.perf_counter()
    total = len(config.datasets) * len(config.scales) * len(config.ns)
    done = 0
    for ds in config.datasets:
        model, features = load_target(f"lenet5-{ds}", epochs=config.epochs, seed=config.seed, progress=progress)
        target = features.double().eval()
        X_test, y_test = load_dataset(ds, "test", root=data_dir)
        sub = X_test[:config.empirical_images].double()
        n_target = sum(p.numel() for p in features.parameters())
        target_acc = accuracy_with_features(model, features, X_test, y_test)
        for scale in config.scales:
            for n in config.ns:
                t0 = time.perf_counter()
                c, info = construct(target, n, "iclr", solver=config.solver, seed=config.seed, scale=scale,
                                    n_jobs=n_jobs, time_limit=config.time_limit, store=store, progress=progress)
                t_solve = time.perf_counter() - t0
                g = c.network
                compact = g.compact()
                with torch.no_grad():
                    stitch = float((compact(sub[:200]) - c.effective()(sub[:200])).abs().max())
                cert = c.certify()
                res = verify(target, g, sub, restarts=config.restarts, steps=config.steps, seed=config.seed,
                             evaluate_with=compact, certificate=cert)
                s = res["summary"]
                counts = g.parameter_counts()
                acc = accuracy_with_features(model, compact, X_test, y_test)
                row = {"dataset": ds, "scale": str(scale), "n": n, "solver": config.solver,
                       "lambdas": json.dumps([round(x, 6) for x in c.lambdas]),
                       "output_scale": float(torch.tensor(c.lambdas, dtype=torch.float64).prod()),
                       "target_parameters": n_target, "random_parameters": counts["random"],
                       "kept_parameters": counts["kept"], "overparam_factor": counts["random"] / n_target,
                       "empirical_abs": s["empirical_abs"], "empirical_rel": s["empirical_rel"],
                       "adversarial_abs": s["adversarial_abs"], "adversarial_rel": s["adversarial_rel"],
                       "certified_abs": s["certified_abs"], "certified_rel": s["certified_rel"],
                       "test_accuracy": acc, "target_test_accuracy": target_acc,
                       "max_entry_error": max(layer["max_entry_error"] for layer in cert["layers"]),
                       "max_bias_error": max(layer["max_bias_error"] for layer in cert["layers"]),
                       "max_scaled_residual": float(info["residuals"].max()),
                       "unreachable_entries": sum(info["scaling"].get("unreachable_entries", []) or [0]),
                       "stitch_vs_effective": stitch, "ordered": s["ordered"],
                       "statuses": json.dumps(info["statuses"], sort_keys=True),
                       "solve_seconds": round(t_solve, 2), "verify_seconds": round(time.perf_counter() - t0 - t_solve, 2)}
                rows.append(row)
                done += 1
                if progress:
                    el = time.perf_counter() - t_all
                    print(f"[{done}/{total}] {ds} scale={scale} n={n}: {row['overparam_factor']:.1f}x, lambdas "
                          f"{row['lambdas']}; relative error empirical {s['empirical_rel']:.1e} / adversarial "
                          f"{s['adversarial_rel']:.1e} / certified {s['certified_rel']:.1e}; accuracy {acc:.2f}% "
                          f"(elapsed {el:.0f} s, ETA {el / done * (total - done):.0f} s)", flush=True)
    t0 = time.perf_counter()
    ver = verification(config, store, n_jobs, data_dir, progress)
    summary = {"command": command, "machine": machine_line(), **config_record(config),
               "wall_seconds": round(time.perf_counter() - t_all, 1), "results": rows, "verification": ver,
               "verification_run": run_record(command, time.perf_counter() - t0)}
    stages = {f"{r['dataset']}:{r['scale']}:n={r['n']}": r["solve_seconds"] + r["verify_seconds"] for r in rows}
    record_run(out, config, command, started, stages={**stages, "verification": round(time.perf_counter() - t0, 1)})
    write_all(rows, summary, out)
    return {**summary, "out": str(out)}


def rewrite_report(out) -> None:
    """Rewrites results.csv, the figures and report.md from a study's summary.json (no recomputation)."""
    from pathlib import Path

    out = Path(out)
    summary = json.loads((out / "summary.json").read_text())
    write_all(summary["results"], summary, out)
