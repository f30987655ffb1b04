"""Experiments (b) and (c) of issue 12: the NeurIPS 2023 structured construction on the trained LeNet5's conv part.

For each data set and n (channels per half-block): build the structured random network of Theorem 3
(:class:`pipelines.constructions.structured.StructuredConstruction`, N(0, 1) weights, ``domain`` auto:
both LeNet5 convs see non-negative inputs, so every block keeps only its positive half-block and the
construction is 7 MRSS instances: conv1 has 1 input channel (dimension 6 x 5 x 5 = 150), conv2 has 6
(dimension 16 x 5 x 5 = 400)). Each instance is solved by every solver of ``solvers`` with the same
per-instance budget ``time_limit`` (through :func:`milp.solve_many` and the construction store) and
the mask with the smaller residual is kept. Experiment (c): the same for every n of ``pair_ns`` with
``blocks="pair"`` (one 2n-block per (input, output) channel pair: 6 + 96 MRSS of dimension 5 x 5 = 25,
``pair_time_limit`` s per instance and solver; rows ``structured-pair``). The pruned network is then measured:

- relative conv-output error: the two Figure 4 normalisations (:func:`pipelines.metrics.output_errors`:
  ``per_image`` = the paper's text, ``global`` = the authors' code) on ``empirical_images`` test images,
  adversarial (a lower bound on the sup) and certified (an upper bound) from :func:`pipelines.verify.verify`;
- the accuracy of LeNet5 with its conv part replaced by the pruned network (trained classifier kept);
- random / kept parameters, multiply-accumulates (MACs) of the compact network
  (``network.compact()``: only the selected channels) and its measured CPU latency (float32, median of
  repeats after warm-up, ``torch.set_num_threads`` in ``latency_threads``, batches ``latency_batches``);
- per MRSS instance: m candidates, dimension, the counting estimates of the floor (``floor_box`` =
  R 2^(-m/dim) / 2 with R the largest coordinate range of subset sums, the estimate of the brief;
  ``floor_density`` = the first-moment estimate, see :func:`density_floor`), the empty subset's
  residual ``||z||_inf`` and every solver's residual. These are estimates, not bounds.

The errors and the accuracy are computed with ``construction.effective()`` (a plain target-shaped
float64 network computing what the pruned network computes on its non-negative domain: the compact
network of a large n or of the ICLR ticket at thousands of samples per entry costs up to 10^4 times
the target's MACs per image); ``stitch`` = max |compact(x) - effective(x)| on ``stitch_images`` test
images checks that they are the same function (float64 rounding level).

Beside it, the unstructured ICLR 2022 ticket (:class:`pipelines.constructions.iclr.IclrConstruction`,
U[-1, 1] weights, no scaling; per RSS ``exact`` enumeration (proven optimum) up to ``iclr_exact_max``
candidates and the ``heuristic`` with ``iclr_time_limit`` s beyond -- ``auto`` with a budget this small
starves its heuristic (a quarter of the budget) and cuts its exact enumeration, which left residuals of
0.2-0.9 on some entries in a first run; ``unreachable`` counts the entries outside [sum of negative,
sum of positive candidates], which no solver can reach, and ``max_residual_reachable`` is the worst
residual on the others): a sweep over
``iclr_ns`` (to find the ticket of similar error) and, for every structured n, the ICLR n with the same
number of random parameters (exact: both counts are linear in n) and the one with (about) the same
number of kept parameters (estimated from the ICLR sweep's kept / n, corrected once after solving).
The target's own conv part is measured the same way (row ``target``).

The report is :mod:`pipelines.experiments.structured_lenet5_report`.
"""
from __future__ import annotations

import copy
import json
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..reporting import load_average, machine_line
from .base import ExperimentConfig, config_record, finished_run, prepare_out, record_run
from .structured_lenet5_report import write_all

NAME = "structured-lenet5"
DESCRIPTION = ("NeurIPS 2023 structured construction (MRSS filter removal) on the trained LeNet5 conv part: error, "
               "accuracy, kept parameters, MACs and latency against n, beside the ICLR ticket and the counting floor")

#: structured ns: channels per half-block (2 c0 n hidden channels per block)
NS = (16, 64, 256, 1024, 4096)
#: experiment (c), blocks per (input, output) channel pair: 2 c0 c1 n hidden channels, c0 c1 MRSS of dim d d
PAIR_NS = (16, 64, 256, 1024)
#: construction label of each blocking in the rows
VARIANT = {"channel": "structured", "pair": "structured-pair"}
#: latency is not measured when the largest activation of one call would need more than this (float32)
MAX_ACTIVATION_BYTES = 2 * 1024 ** 3
MATCHES = ("random", "kept")


class StructuredLenet5Error(ValueError):
    """A bad config field; the message names it."""


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Everything that determines the study's numbers; its hash names the run."""

    NAME = NAME
    datasets: tuple = ("mnist", "fashion-mnist")
    ns: tuple = NS
    dist: str = "normal"
    scale: str = "none"
    domain: str = "auto"
    solvers: tuple = ("auto", "heuristic")
    time_limit: float = 10.0
    pair_ns: tuple = PAIR_NS
    pair_time_limit: float = 1.0
    iclr_ns: tuple = (2, 5, 10, 20, 40)
    iclr_match: tuple = MATCHES
    iclr_exact_max: int = 30
    iclr_time_limit: float = 0.02
    seed: int = 0
    epochs: int = 50
    empirical_images: int = 1000
    restarts: int = 4
    steps: int = 30
    stitch_images: int = 16
    latency_threads: tuple = (1, 2)
    latency_batches: tuple = (1, 256)
    latency_repeats: int = 11
    latency_budget: float = 0.6
    latency_max_call: float = 2.0
    level: float = 1e-2

    def __post_init__(self) -> None:
        super().__post_init__()
        from milp.backends import REGISTRY

        for name in ("datasets", "ns", "pair_ns", "solvers", "iclr_ns", "iclr_match", "latency_threads",
                     "latency_batches"):
            value = getattr(self, name)
            if isinstance(value, (str, int)):
                self._set(name, (value,))
        try:
            for name in ("ns", "pair_ns", "iclr_ns", "latency_threads", "latency_batches"):
                values = tuple(sorted({int(v) for v in getattr(self, name)}))
                if any(v < 1 for v in values):
                    raise ValueError
                self._set(name, values)
        except (TypeError, ValueError):
            raise StructuredLenet5Error(f"{name}: must be positive integers, got {getattr(self, name)!r}") from None
        if not self.ns and not self.pair_ns:
            raise StructuredLenet5Error("ns, pair_ns: give at least one n")
        if not self.datasets:
            raise StructuredLenet5Error("datasets: give at least one data set")
        self._set("datasets", tuple(dict.fromkeys(str(d) for d in self.datasets)))
        solvers = tuple(dict.fromkeys(str(s) for s in self.solvers))
        if not solvers:
            raise StructuredLenet5Error("solvers: give at least one solver")
        for s in solvers:
            if s not in REGISTRY:
                raise StructuredLenet5Error(f"solvers: unknown solver {s!r}; choose from {', '.join(REGISTRY)}")
        self._set("solvers", solvers)
        match = tuple(dict.fromkeys(str(m) for m in self.iclr_match))
        if any(m not in MATCHES for m in match):
            raise StructuredLenet5Error(f"iclr_match: choose from {', '.join(MATCHES)}, got {self.iclr_match!r}")
        if "kept" in match and not self.iclr_ns:
            raise StructuredLenet5Error("iclr_match: 'kept' needs an ICLR sweep (iclr_ns) to estimate kept / n")
        self._set("iclr_match", match)
        for name in ("time_limit", "pair_time_limit", "iclr_time_limit", "latency_budget", "latency_max_call", "level"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < float(v) < math.inf):
                raise StructuredLenet5Error(f"{name}: must be a positive number, got {v!r}")
            self._set(name, float(v))
        for name, low in (("seed", 0), ("epochs", 1), ("empirical_images", 1), ("restarts", 0), ("steps", 0),
                          ("stitch_images", 1), ("latency_repeats", 1), ("iclr_exact_max", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or int(v) < low:
                raise StructuredLenet5Error(f"{name}: must be an integer >= {low}, got {v!r}")
            self._set(name, int(v))
        if self.domain not in ("signed", "nonnegative", "auto"):
            raise StructuredLenet5Error(f"domain: choose signed, nonnegative or auto, got {self.domain!r}")
        self._set("scale", str(self.scale))


# ----------------------------------------------------------------------------- counting estimates
def subset_sum_range(X: np.ndarray) -> float:
    """R = max_j sum_i |X_ij|: the largest range [sum of negatives, sum of positives] of subset sums over
    the coordinates of the candidates X (m x dim)."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    return float(np.abs(X).sum(axis=0).max()) if X.size else 0.0


def box_floor(X: np.ndarray) -> float:
    """Counting estimate R 2^(-m/dim) / 2: 2^m subset sums spread evenly over a box of side R leave cells
    of side R 2^(-m/dim), whose points are half a side from the nearest sum in max norm. An estimate
    (sums concentrate near the mean), not a bound."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    m, dim = X.shape
    return float(subset_sum_range(X) * np.exp2(-m / dim) / 2.0)


def density_floor(X: np.ndarray, z: np.ndarray) -> float:
    """First-moment counting estimate of the best max-norm residual: the eps at which the expected number
    of the 2^m subsets whose sum lies within eps of z is one, with the subset sum of a uniformly random
    subset taken Gaussian and independent across coordinates (mean sum_i X_ij / 2, variance sum_i X_ij^2 / 4):
    2^m prod_j (2 eps phi_j(z_j)) = 1. Sharper than :func:`box_floor` where z sits in the bulk of the
    sums; an estimate, not a bound, and meaningful only where it is far below ||z||_inf."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    m, dim = X.shape
    mu, var = X.sum(axis=0) / 2.0, (X ** 2).sum(axis=0) / 4.0
    if np.any(var <= 0):
        return float("inf")
    log2_phi = -0.5 * np.log2(2 * np.pi * var) - 0.5 * (z - mu) ** 2 / var / np.log(2.0)
    with np.errstate(over="ignore"):
        return float(np.exp2(-(m + log2_phi.sum()) / dim) / 2.0)


# ----------------------------------------------------------------------------- measurements
def conv_macs(module, shape) -> dict:
    """Multiply-accumulates per image of every Conv2d of ``module`` on one (1, *shape) input:
    out_h * out_w * out_c * in_c * k_h * k_w (dense), the same with the weight's non-zeros only
    (``macs_nonzero``: what unstructured sparsity could save), and the largest conv output (elements)."""
    import torch
    from torch import nn

    records = []
    hooks = [m.register_forward_hook(lambda m, i, o: records.append((m, tuple(o.shape))))
             for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        dt = next(module.parameters()).dtype
        with torch.no_grad():
            module(torch.zeros((1, *shape), dtype=dt))
    finally:
        for h in hooks:
            h.remove()
    macs = nonzero = peak = 0
    for m, s in records:
        kh, kw = m.kernel_size
        area = s[-2] * s[-1]
        macs += area * m.out_channels * (m.in_channels // m.groups) * kh * kw
        nonzero += area * int(torch.count_nonzero(m.weight))
        peak = max(peak, math.prod(s[1:]))
    return {"macs": int(macs), "macs_nonzero": int(nonzero), "largest_activation": int(peak)}


def measure_latency(module, shape, threads, batches, repeats: int, budget: float, max_call: float,
                    largest_activation: int, seed: int = 0) -> dict:
    """Median wall milliseconds of one float32 forward of a copy of ``module`` per (batch, threads):
    keys ``latency_b{b}_t{t}_ms``. One untimed warm-up call (also the cost probe) and a second one, then
    at least 3 and at most ``repeats`` timed calls, stopping after ``budget`` seconds. A setting is not
    measured (NaN, said in ``latency_notes``) when its activations would exceed ``MAX_ACTIVATION_BYTES``
    or one call would take longer than ``max_call`` s (estimated from the smaller batch, or the probe)."""
    import torch

    m = copy.deepcopy(module).float().eval()
    for p in m.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    out, notes = {}, []
    before = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(int(t))
            per_image = None
            for b in sorted(batches):
                key = f"latency_b{b}_t{t}_ms"
                out[key] = float("nan")
                if largest_activation * b * 4 > MAX_ACTIVATION_BYTES:
                    notes.append(f"b{b}/t{t}: not run (activations {largest_activation * b * 4 / 2 ** 30:.1f} GiB)")
                    continue
                if per_image is not None and per_image * b > max_call:
                    notes.append(f"b{b}/t{t}: not run (est. {per_image * b:.1f} s per call)")
                    continue
                x = torch.rand((b, *shape), generator=gen)
                with torch.no_grad():
                    t0 = time.perf_counter()
                    m(x)
                    probe = time.perf_counter() - t0
                    if probe > max_call:
                        notes.append(f"b{b}/t{t}: not timed (warm-up call {probe:.1f} s)")
                        per_image = probe / b
                        continue
                    m(x)
                    times, start = [], time.perf_counter()
                    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget):
                        t0 = time.perf_counter()
                        m(x)
                        times.append(time.perf_counter() - t0)
                med = statistics.median(times)
                out[key] = med * 1e3
                per_image = med / b
    finally:
        torch.set_num_threads(before)
    out["latency_notes"] = "; ".join(notes)
    return out


def _stitch(compact, effective, images) -> float:
    """max |compact(x) - effective(x)| in float64, one image at a time (a compact ICLR ticket of
    thousands of samples per entry has ~10^5 channels)."""
    import torch

    worst = 0.0
    with torch.no_grad():
        for x in images:
            x = x[None].double()
            worst = max(worst, float((compact(x) - effective(x)).abs().max()))
    return worst


def _measure(c, ctx: dict, config: Config) -> dict:
    """Errors, accuracy, counts, MACs and latency of a solved construction ``c`` (module docstring)."""
    from ..metrics import accuracy_with_features, conv_outputs, output_errors
    from ..verify import verify

    t0 = time.perf_counter()
    eff = c.effective()
    compact = c.network.compact()
    stitch = _stitch(compact, eff, ctx["sub"][:config.stitch_images])
    cert = c.certify()
    res = verify(ctx["target"], c.network, ctx["sub"], restarts=config.restarts, steps=config.steps,
                 seed=config.seed, evaluate_with=eff, certificate=cert)
    s = res["summary"]
    g_out = conv_outputs(eff, ctx["sub"])
    errs = output_errors(ctx["f_out"], g_out)
    output_ratio = float(g_out.abs().max()) / max(float(ctx["f_out"].abs().max()), 1e-300)
    acc = accuracy_with_features(ctx["model"], copy.deepcopy(eff), ctx["X_test"], ctx["y_test"])
    counts = c.network.parameter_counts()
    cost = conv_macs(compact, ctx["shape"])
    lat = measure_latency(compact, ctx["shape"], config.latency_threads, config.latency_batches,
                          config.latency_repeats, config.latency_budget, config.latency_max_call,
                          cost["largest_activation"], config.seed)
    del compact, eff
    return {"random_parameters": counts["random"], "kept_parameters": counts["kept"],
            "kept_target_bias": counts.get("target_bias", 0),
            "kept_channels": json.dumps(counts.get("kept_channels", [])),
            "macs": cost["macs"], "macs_nonzero": cost["macs_nonzero"],
            "per_image_rel": errs["per_image"], "global_rel": errs["global"], "empirical_abs": errs["max_abs"],
            "adversarial_abs": s["adversarial_abs"], "adversarial_rel": s["adversarial_rel"],
            "certified_abs": s["certified_abs"], "certified_rel": s["certified_rel"], "ordered": s["ordered"],
            "output_ratio": output_ratio,
            "test_accuracy": acc, "target_test_accuracy": ctx["target_acc"], "stitch": stitch,
            "lambdas": json.dumps([round(float(x), 6) for x in c.lambdas]), **lat, "load_average": load_average(),
            "verify_seconds": round(time.perf_counter() - t0, 2)}


# ----------------------------------------------------------------------------- structured
def _solve_structured(c, config: Config, n_jobs: int, store, time_limit: float,
                      progress: bool = False) -> tuple[list[dict], dict]:
    """Solve every MRSS of ``c`` with every solver of the config (``time_limit`` s each), keep the smaller
    residual per instance, apply the masks. Returns per-instance records (target units) and status counts."""
    import milp

    subs = c.subproblems()
    todo = [i for i, sp in enumerate(subs) if sp.instance is not None]
    per_solver = {}
    for solver in config.solvers:
        sols = milp.solve_many([subs[i].instance for i in todo], solver=solver, n_jobs=n_jobs, store=store,
                               time_limit=time_limit, seed=config.seed, threads=1,
                               progress=progress and len(todo) > 8)
        per_solver[solver] = dict(zip(todo, sols))
    best: list = [None] * len(subs)
    records, statuses = [], {}
    for i, sp in enumerate(subs):
        lam = float(c.lambdas[sp.layer])
        z = np.asarray(sp.target, dtype=np.float64)
        rec = {"construction": VARIANT[c.blocks], "layer": sp.layer + 1, "kind": sp.kind, "channel": int(sp.entry[0]),
               "output": int(sp.entry[1]) if len(sp.entry) > 1 else "", "lambda": lam,
               "empty": float(np.abs(z).max()) * lam, "target_l1": float(np.abs(z).sum()) * lam}
        if sp.instance is None:
            rec.update(m=0, dim=int(z.size), range=0.0, floor_box=rec["empty"], floor_density=rec["empty"],
                       residual=rec["empty"], best_solver="", status="no_candidate", selected=0,
                       lower_bound=rec["empty"])
            for s in config.solvers:
                rec.update({f"residual_{s}": float("nan"), f"status_{s}": "no_candidate", f"seconds_{s}": 0.0})
            statuses["no_candidate"] = statuses.get("no_candidate", 0) + 1
            records.append(rec)
            continue
        X = sp.instance.candidates
        rec.update(m=int(X.shape[0]), dim=int(X.shape[1]), range=subset_sum_range(X) * lam,
                   floor_box=box_floor(X) * lam, floor_density=density_floor(X, z) * lam)
        found = {s: per_solver[s][i] for s in config.solvers if per_solver[s][i].found}
        bounds = []
        for s in config.solvers:
            sol = per_solver[s][i]
            rec[f"residual_{s}"] = float(sol.error) * lam if sol.found else float("nan")
            rec[f"status_{s}"] = sol.status.value
            rec[f"seconds_{s}"] = round(float(sol.seconds), 3)
            rec[f"bound_{s}"] = float(sol.bound) * lam if sol.bound is not None else float("nan")
            if sol.bound is not None and np.isfinite(sol.bound):
                bounds.append(max(float(sol.bound), 0.0) * lam)
        # the best proven lower bound on the optimum any solver reported (0 = nothing proven)
        rec["lower_bound"] = max(bounds) if bounds else 0.0
        if found:
            name = min(found, key=lambda s: (found[s].error, config.solvers.index(s)))
            sol = found[name]
            best[i] = sol
            rec.update(residual=float(sol.error) * lam, best_solver=f"{name} ({sol.solver})",
                       status=sol.status.value, selected=int(np.sum(sol.mask)))
        else:
            rec.update(residual=rec["empty"], best_solver="", status="not_found", selected=0)
        statuses[rec["status"]] = statuses.get(rec["status"], 0) + 1
        records.append(rec)
    c.apply(best, subs)
    return records, statuses


def _structured_row(ds: str, n: int, ctx: dict, config: Config, n_jobs: int, store, blocks: str = "channel",
                    progress: bool = False) -> tuple[dict, list[dict]]:
    from ..constructions.structured import StructuredConstruction

    t0 = time.perf_counter()
    c = StructuredConstruction(ctx["target"], n, seed=config.seed, dist=config.dist, scale=config.scale,
                               domain=config.domain, blocks=blocks)
    limit = config.time_limit if blocks == "channel" else config.pair_time_limit
    inst, statuses = _solve_structured(c, config, n_jobs, store, limit, progress)
    t_solve = time.perf_counter() - t0
    row = {"dataset": ds, "construction": VARIANT[blocks], "n": n, "matches": "",
           "solver": "best of " + "+".join(config.solvers), "time_limit": limit,
           "target_parameters": ctx["n_target"], **_measure(c, ctx, config),
           "instances": len(inst), "max_residual": max(r["residual"] for r in inst),
           "max_empty": max(r["empty"] for r in inst), "max_floor_box": max(r["floor_box"] for r in inst),
           "max_floor_density": max(r["floor_density"] for r in inst),
           "statuses": json.dumps(statuses, sort_keys=True), "solve_seconds": round(t_solve, 2)}
    for r in inst:
        r.update(dataset=ds, n=n)
    del c
    return row, inst


# ----------------------------------------------------------------------------- ICLR
def _solve_iclr(c, config: Config, n_jobs: int, store) -> dict:
    """Solve the ICLR RSS of ``c``: ``exact`` (proven optimum, no time limit) for instances of at most
    ``iclr_exact_max`` candidates, ``heuristic`` with ``iclr_time_limit`` s beyond; apply the masks.
    Returns per-subproblem residuals (in the order of ``c.subproblems()``), a reachability flag and status
    counts."""
    import milp

    subs = c.subproblems()
    sols: list = [None] * len(subs)
    small = [i for i, sp in enumerate(subs) if sp.instance is not None and sp.instance.n <= config.iclr_exact_max]
    large = [i for i, sp in enumerate(subs) if sp.instance is not None and sp.instance.n > config.iclr_exact_max]
    for idx, solver, limit in ((small, "exact", None), (large, "heuristic", config.iclr_time_limit)):
        if idx:
            got = milp.solve_many([subs[i].instance for i in idx], solver=solver, n_jobs=n_jobs, store=store,
                                  time_limit=limit, seed=config.seed, threads=1, progress=False)
            for i, sol in zip(idx, got):
                sols[i] = sol
    residuals = np.array([sp.residual_if_empty for sp in subs])
    reachable = np.ones(len(subs), dtype=bool)
    statuses: dict[str, int] = {}
    for i, sp in enumerate(subs):
        z = float(np.asarray(sp.target).reshape(-1)[0])
        if sp.instance is None:
            reachable[i] = z == 0
            statuses["no_candidate"] = statuses.get("no_candidate", 0) + 1
            continue
        C = np.asarray(sp.instance.candidates, dtype=np.float64).reshape(-1)
        reachable[i] = C[C < 0].sum() <= z <= C[C > 0].sum()
        key = f"{sols[i].solver}:{sols[i].status.value}"
        statuses[key] = statuses.get(key, 0) + 1
        if sols[i].found:
            residuals[i] = sols[i].error
        else:
            sols[i] = None
    c.apply(sols, subs)
    return {"residuals": residuals, "reachable": reachable, "statuses": statuses, "instances": len(subs)}


def _iclr_row(ds: str, n: int, ctx: dict, config: Config, n_jobs: int, store) -> dict:
    from ..constructions.iclr import IclrConstruction

    t0 = time.perf_counter()
    c = IclrConstruction(ctx["target"], n, seed=config.seed, dist="uniform", scale="none")
    info = _solve_iclr(c, config, n_jobs, store)
    t_solve = time.perf_counter() - t0
    residuals, reachable = info["residuals"], info["reachable"]
    row = {"dataset": ds, "construction": "iclr", "n": n, "matches": "",
           "solver": f"exact (<= {config.iclr_exact_max} candidates) / heuristic", "time_limit": config.iclr_time_limit,
           "target_parameters": ctx["n_target"], **_measure(c, ctx, config),
           "instances": int(info["instances"]), "max_residual": float(residuals.max()),
           "unreachable": int((~reachable).sum()),
           "max_residual_reachable": float(residuals[reachable].max()) if reachable.any() else float("nan"),
           "statuses": json.dumps(info["statuses"], sort_keys=True), "solve_seconds": round(t_solve, 2)}
    del c
    return row


def _iclr_random_per_n(target) -> int:
    """Random parameters of the ICLR network per n (U, its bias and V are all linear in n)."""
    from ..constructions.iclr import IclrConstruction

    return int(IclrConstruction(target, 1).network.parameter_counts()["random"])


def _target_row(ds: str, ctx: dict, config: Config) -> dict:
    t0 = time.perf_counter()
    cost = conv_macs(ctx["target"], ctx["shape"])
    lat = measure_latency(ctx["target"], ctx["shape"], config.latency_threads, config.latency_batches,
                          config.latency_repeats, config.latency_budget, config.latency_max_call,
                          cost["largest_activation"], config.seed)
    n = ctx["n_target"]
    return {"dataset": ds, "construction": "target", "n": "", "matches": "", "solver": "", "time_limit": "",
            "target_parameters": n, "random_parameters": n, "kept_parameters": n, "kept_target_bias": 0,
            "kept_channels": json.dumps([m.out_channels for m in ctx["target"] if hasattr(m, "out_channels")]),
            "macs": cost["macs"], "macs_nonzero": cost["macs_nonzero"], "per_image_rel": 0.0, "global_rel": 0.0,
            "empirical_abs": 0.0, "adversarial_abs": 0.0, "adversarial_rel": 0.0, "certified_abs": 0.0,
            "certified_rel": 0.0, "ordered": True, "output_ratio": 1.0, "test_accuracy": ctx["target_acc"],
            "target_test_accuracy": ctx["target_acc"], "stitch": 0.0, "lambdas": "", **lat,
            "load_average": load_average(), "statuses": "", "solve_seconds": 0.0,
            "verify_seconds": round(time.perf_counter() - t0, 2)}


# ----------------------------------------------------------------------------- running
def run(config: Config, *, out=None, progress: bool = True, command: str = "", n_jobs: int = 2, store=None,
        data_dir=None, skip_finished: bool = False, targets: dict | None = None, data: dict | None = None) -> dict:
    """Run the study (resumable: solved instances come from the store) and write its report into ``out``.

    Runtime arguments (they do not change what is measured): ``n_jobs`` solver processes; ``store`` the
    SQLite store (default ``<store_dir>/construction.sqlite``, shared with ``slth prune``); ``data_dir`` IDX
    files; ``skip_finished`` returns the summary already in ``out`` when it records a finished run of this
    config; ``targets`` / ``data`` (tests): per data set name, ``(model, features)`` to use instead of the
    cached trained LeNet5 and ``(images, labels)`` instead of the test split."""
    import torch

    from ..metrics import accuracy_with_features, conv_outputs

    if not isinstance(config, Config):
        raise TypeError(f"config: expected {__name__}.Config, got {type(config).__name__}")
    started = time.time()
    out = prepare_out(config, out, progress)
    if skip_finished and (done := finished_run(out, config, progress)) is not None:
        return done
    if store is None:
        from ..paths import store_dir

        store = store_dir() / "construction.sqlite"
    rows, instances, stages = [], [], {}
    t_all = time.perf_counter()

    # points planned (ICLR matches may coincide, so this is an upper estimate): target, structured, pair,
    # ICLR sweep, kept matches (both variants), random matches (channel variant)
    per_ds = (1 + len(config.ns) + len(config.pair_ns) + len(config.iclr_ns)
              + ("kept" in config.iclr_match) * (len(config.ns) + len(config.pair_ns))
              + ("random" in config.iclr_match) * len(config.ns))
    planned, done = per_ds * len(config.datasets), [0]

    def say(msg: str) -> None:
        done[0] += 1
        if progress:
            el = time.perf_counter() - t_all
            eta = el / done[0] * max(planned - done[0], 0)
            print(f"[{NAME} {done[0]}/~{planned} | {el / 60:5.1f} min, ETA ~{eta / 60:.0f} min] {msg}", flush=True)

    for ds in config.datasets:
        t_ds = time.perf_counter()
        if targets is not None and ds in targets:
            model, features = targets[ds]
        else:
            from ..targets import load_target

            model, features = load_target(f"lenet5-{ds}", epochs=config.epochs, seed=config.seed, progress=progress)
        if data is not None and ds in data:
            X_test, y_test = data[ds]
        else:
            from ..data import load_dataset

            X_test, y_test = load_dataset(ds, "test", root=data_dir)
        target = copy.deepcopy(features).double().eval()
        for p in target.parameters():
            p.requires_grad_(False)
        sub = X_test[:config.empirical_images].double()
        ctx = {"model": model, "target": target, "X_test": X_test, "y_test": y_test, "sub": sub,
               "f_out": conv_outputs(target, sub), "shape": tuple(X_test.shape[1:]),
               "n_target": sum(p.numel() for p in target.parameters()),
               "target_acc": accuracy_with_features(model, copy.deepcopy(target), X_test, y_test)}
        rows.append(_target_row(ds, ctx, config))
        say(f"{ds}: target conv part {ctx['n_target']} parameters, accuracy {ctx['target_acc']:.2f}%, "
            f"{rows[-1]['macs']:,} MACs")
        structured, pair = {}, {}
        for blocks, ns, dest in (("channel", config.ns, structured), ("pair", config.pair_ns, pair)):
            for n in ns:
                if progress:
                    print(f"[{NAME} {done[0] + 1}/~{planned}] {ds} {VARIANT[blocks]} n={n}: solving the MRSS "
                          f"instances ({', '.join(config.solvers)}), then measuring", flush=True)
                row, inst = _structured_row(ds, n, ctx, config, n_jobs, store, blocks, progress)
                rows.append(row)
                instances += inst
                dest[n] = row
                stages[f"{ds}:{VARIANT[blocks]}:n={n}"] = round(row["solve_seconds"] + row["verify_seconds"], 2)
                say(f"{ds} {VARIANT[blocks]} n={n}: {row['random_parameters']:,} random / {row['kept_parameters']:,} "
                    f"kept, rel. error {row['per_image_rel']:.2e} (global {row['global_rel']:.2e}, adversarial "
                    f"{row['adversarial_rel']:.2e}), accuracy {row['test_accuracy']:.2f}%, residual max "
                    f"{row['max_residual']:.3f} vs ||z|| {row['max_empty']:.3f}; {row['statuses']} "
                    f"(solve {row['solve_seconds']:.0f} s)")
        iclr: dict[int, dict] = {}

        def iclr_at(n: int, tag: str = "") -> dict:
            n = max(1, int(n))
            if n not in iclr:
                iclr[n] = _iclr_row(ds, n, ctx, config, n_jobs, store)
                rows.append(iclr[n])
                r = iclr[n]
                stages[f"{ds}:iclr:n={n}"] = round(r["solve_seconds"] + r["verify_seconds"], 2)
                say(f"{ds} iclr n={n}{tag}: {r['random_parameters']:,} random / {r['kept_parameters']:,} kept, "
                    f"rel. error {r['per_image_rel']:.2e}, accuracy {r['test_accuracy']:.2f}% "
                    f"(solve {r['solve_seconds']:.0f} s)")
            return iclr[n]

        def mark(r: dict, what: str) -> None:
            r["matches"] = ";".join(filter(None, [r["matches"], what]))

        for n in config.iclr_ns:
            mark(iclr_at(n), "sweep")
        if "kept" in config.iclr_match:
            ref = max(config.iclr_ns)
            rate = iclr[ref]["kept_parameters"] / ref
            for prefix, variant in (("", structured), ("pair", pair)):
                for n, srow in variant.items():
                    want = srow["kept_parameters"]
                    guess = max(1, round(want / rate))
                    r = iclr_at(guess, f" (kept match for {srow['construction']} n={n})")
                    if r["kept_parameters"] > 0 and abs(r["kept_parameters"] - want) > 0.25 * want:
                        better = max(1, round(guess * want / r["kept_parameters"]))
                        if better != guess:
                            r = iclr_at(better, f" (kept match for {srow['construction']} n={n}, corrected)")
                    mark(r, f"{prefix}kept@{n}")
        if "random" in config.iclr_match:
            per_n = _iclr_random_per_n(target)
            for n, srow in structured.items():
                mark(iclr_at(round(srow["random_parameters"] / per_n), f" (random match for structured n={n})"),
                     f"random@{n}")
        stages[f"{ds}:total"] = round(time.perf_counter() - t_ds, 1)
        del ctx
    summary = {"command": command, "machine": machine_line(), **config_record(config), "n_jobs": n_jobs,
               "store": str(store), "wall_seconds": round(time.perf_counter() - t_all, 1), "stages": stages,
               "results": rows, "instances": instances}
    record_run(out, config, command, started, stages=stages)
    write_all(rows, instances, summary, out)
    return {**summary, "out": str(out)}


def rewrite_report(out) -> None:
    """Rewrites results.csv, instances.csv, the figures and report.md from a run's summary.json (no
    recomputation)."""
    from pathlib import Path

    out = Path(out)
    summary = json.loads((out / "summary.json").read_text())
    write_all(summary["results"], summary["instances"], summary, out)


__all__ = ["NAME", "DESCRIPTION", "Config", "run", "rewrite_report", "subset_sum_range", "box_floor",
           "density_floor", "conv_macs", "measure_latency", "NS"]
