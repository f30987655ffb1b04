"""Reproduction of the ICLR 2022 LeNet5 experiment (da Cunha, Natale, Viennot; Section 3, Figs. 3-4).

For every n in the sweep, every parameter p of LeNet5's convolutional part (weights AND biases,
2572 in all) is replaced by its best subset sum of n fresh Uniform[-1, 1] samples,
min |p - sum_i a_i x_i| over a in {0,1}^n (Section 3), solved through the batch engine. Metrics
(:mod:`pipelines.metrics`):

- Figure 3: per parameter tensor, max |p - p'| / max |p|; the figure shows the max over tensors.
- Figure 4: on the output of the convolutional part (16 x 7 x 7, before flatten). Paper's text:
  per image, max activation error / max original activation, then the max over all images
  (``per_image``). The authors' public code instead divides the largest activation error over the
  data set by the largest original activation over the data set (``global``). Both are computed.
- Test accuracy of the whole network with the substituted conv part.

What is cached, and under which key (reruns skip finished work unit by unit): the trained models
(``models.training.TrainConfig`` hash, see :mod:`pipelines.targets`), every solved instance (the
SQLite store, default ``<cache>/stores/iclr-lenet5.sqlite``, keyed by instance + solver options),
and the output metrics of every sweep point (:func:`metrics_key`, a content hash of the model, the
substituted weights and the data, in ``<cache>/stores/iclr-metrics/``). :class:`Config` holds
everything that determines the results; its ``key()`` is recorded in ``config.json`` and
``summary.json`` of the results folder.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..metrics import accuracy, conv_outputs, max_rel_weight_error, output_errors
from ..reporting import atomic_write_text, machine_line, status_counts
from . import iclr_lenet5_report as report_module
from .base import ExperimentConfig, config_record, record_run, start_run
from .iclr_lenet5_report import PAPER

NAME = "iclr-lenet5"
DESCRIPTION = "ICLR 2022 Section 3 (Figs. 3-4): LeNet5's 2572 conv parameters as random subset sums, n = 5..30"


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Everything that determines the results of the sweep (not: worker count, store, data folder)."""

    NAME = NAME

    datasets: tuple[str, ...] = ("mnist", "fashion-mnist")
    ns: tuple[int, ...] = (5, 10, 15, 20, 25, 30)
    solvers: tuple[str, ...] = ("auto",)
    time_limit: float | None = None
    epochs: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        from ..data import check_name

        super().__post_init__()
        if isinstance(self.datasets, str) or isinstance(self.solvers, str) or isinstance(self.ns, (int, str)):
            raise ValueError("Config: datasets, ns and solvers are sequences (e.g. ('mnist',), (20,), ('auto',))")
        self._set("datasets", tuple(dict.fromkeys(check_name(d) for d in self.datasets)))
        if not self.datasets:
            raise ValueError("datasets: at least one data set")
        ns = tuple(int(n) for n in self.ns)
        if not ns or min(ns) < 1:
            raise ValueError(f"ns: sample sizes must be positive integers, got {self.ns!r}")
        self._set("ns", ns)
        solvers = tuple(str(s) for s in self.solvers)
        if not solvers or not all(solvers):
            raise ValueError(f"solvers: at least one solver name, got {self.solvers!r}")
        self._set("solvers", solvers)
        if self.time_limit is not None:
            if not float(self.time_limit) > 0:
                raise ValueError(f"time_limit: must be a positive number of seconds or None, got {self.time_limit!r}")
            self._set("time_limit", float(self.time_limit))
        if int(self.epochs) < 0:
            raise ValueError(f"epochs: must be >= 0, got {self.epochs!r}")
        self._set("epochs", int(self.epochs))
        self._set("seed", int(self.seed))


#: the earlier name of :class:`Config`
SweepConfig = Config


def conv_parameters(features) -> list[tuple[str, np.ndarray]]:
    """(name, float64 copy) of every weight and bias of the conv part, in state_dict order."""
    return [(name, t.detach().double().cpu().numpy().copy()) for name, t in features.state_dict().items()]


def sample_candidates(seed: int, n: int, count: int) -> np.ndarray:
    """Fresh Uniform[-1, 1] samples: row j holds the n candidates of parameter j (deterministic
    in (seed, n), independent of the solver and of the data set's training)."""
    rng = np.random.default_rng([seed, n, 2022])
    return rng.uniform(-1.0, 1.0, size=(count, n))


def build_instances(params, n: int, seed: int):
    """One RSS instance per conv parameter; returns (instances, candidates matrix, flat targets)."""
    import milp

    flat = np.concatenate([p.reshape(-1) for _, p in params])
    X = sample_candidates(seed, n, flat.size)
    return [milp.Instance(X[j], flat[j]) for j in range(flat.size)], X, flat


def approximate(params, masks: np.ndarray, X: np.ndarray):
    """Substituted tensors p' = sum_i a_i x_i, reshaped like ``params``."""
    approx_flat = np.einsum("ij,ij->i", masks.astype(np.float64), X)
    out, start = [], 0
    for name, p in params:
        out.append((name, approx_flat[start:start + p.size].reshape(p.shape)))
        start += p.size
    return out


def target_outputs(model, data) -> dict:
    """Adds the float64 conv outputs of the target network on train and test to ``data``."""
    import torch

    f64 = substituted_model(model, conv_parameters(model.features), dtype=torch.float64)
    data["train_out"] = conv_outputs(f64.features, data["train"][0])
    data["test_out"] = conv_outputs(f64.features, data["test"][0])
    return data


def substituted_model(model, approx, dtype=None):
    """A deep copy of ``model`` (converted to ``dtype`` if given) whose conv part holds the
    subset-sum approximations. Use float64 to measure errors below float32 resolution."""
    import copy

    import torch

    g = copy.deepcopy(model)
    if dtype is not None:
        g = g.to(dtype)
    dt = next(g.parameters()).dtype
    g.features.load_state_dict({name: torch.as_tensor(q, dtype=dt) for name, q in approx})
    return g


# ----------------------------------------------------------------------------- metrics cache
#: bump when the metric definitions change: cached metrics of older versions are then ignored
METRICS_VERSION = 1


def metrics_key(model, approx, data) -> str:
    """Content hash of everything the output metrics and the accuracy depend on: the whole trained
    model, the substituted conv parameters (float64 bytes) and the images and labels."""
    h = hashlib.sha256(f"iclr-lenet5-metrics/{METRICS_VERSION}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
    for name, q in approx:
        h.update(name.encode())
        h.update(np.ascontiguousarray(q, dtype=np.float64).tobytes())
    for split in ("train", "test"):
        h.update(split.encode())
        h.update(_split_digest(data, split))
    return h.hexdigest()


def _split_digest(data, split: str) -> bytes:
    """sha256 of a split's images and labels, computed once per data set (kept in ``data``)."""
    key = f"{split}_digest"
    if key not in data:
        d = hashlib.sha256()
        for array in data[split]:
            d.update(np.ascontiguousarray(np.asarray(array)).tobytes())
        data[key] = d.digest()
    return data[key]


def metrics_cache_dir() -> Path:
    """``<cache>/stores/iclr-metrics``: one JSON file per :func:`metrics_key`."""
    from ..paths import store_dir

    return store_dir() / "iclr-metrics"


def default_store() -> Path:
    """``<cache>/stores/iclr-lenet5.sqlite``: the solved instances of every sweep."""
    from ..paths import store_dir

    return store_dir() / "iclr-lenet5.sqlite"


def _cached_metrics(cache_dir, key: str):
    """The cached metrics for ``key`` (JSON, never code), or None. A damaged entry is ignored
    (and recomputed), never trusted."""
    if cache_dir is None:
        return None
    path = Path(cache_dir) / f"{key}.json"
    try:
        entry = json.loads(path.read_text())
        if entry.get("key") != key or entry.get("version") != METRICS_VERSION:
            return None
        return {k: entry[k] for k in ("train", "test", "accuracy")}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        print(f"warning: ignoring a damaged metrics cache entry {path}; recomputing", flush=True)
        return None


def _save_metrics(cache_dir, key: str, metrics: dict) -> None:
    if cache_dir is None:
        return
    # atomic: a kill leaves the old entry or none
    atomic_write_text(Path(cache_dir) / f"{key}.json", json.dumps({"key": key, "version": METRICS_VERSION, **metrics}))


# ----------------------------------------------------------------------------- one sweep point
@dataclass
class SweepPoint:
    dataset: str
    n: int
    solver: str
    max_rel_weight_error: float
    max_rel_output_error_train: float
    max_rel_output_error_test: float
    test_accuracy: float
    solve_seconds: float
    global_rel_output_error_train: float = float("nan")
    global_rel_output_error_test: float = float("nan")
    per_tensor_weight_error: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)
    max_param_residual: float = float("nan")
    cpu_seconds: float = float("nan")
    residuals: np.ndarray | None = field(default=None, repr=False)  # per parameter |p - p'|, not in the CSV


def run_sweep_point(model, params, data, n: int, solver: str, seed: int, time_limit, n_jobs: int,
                    store, progress: bool, dataset: str, metrics_cache=None, reuse_metrics: bool = True) -> SweepPoint:
    """Solve the 2572 instances for one n, substitute, and measure.

    ``data``: {"train": (images, labels), "test": (...), "train_out"/"test_out": the target's
    float64 conv outputs from :func:`target_outputs`}. ``metrics_cache``: a folder where the output
    metrics and accuracy are kept under :func:`metrics_key` (they are a pure function of the model,
    the substituted weights and the data, so a rerun with the same solutions reuses them; with
    ``reuse_metrics=False`` they are recomputed and the entry rewritten); None: no cache."""
    from milp.batch import solve_many

    instances, X, flat = build_instances(params, n, seed)
    t0 = time.perf_counter()
    sols = solve_many(instances, solver=solver, n_jobs=n_jobs, store=store, time_limit=time_limit,
                      seed=seed, progress=progress)
    wall = time.perf_counter() - t0
    failed = [i for i, s in enumerate(sols) if not s.found and s.status.value != "time_limit"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(sols)} instances at n={n} have no solution "
                           f"(first: {sols[failed[0]].message.splitlines()[0] if sols[failed[0]].message else '?'})")
    # A time-limited solver may stop before its first solution: that parameter gets the empty subset
    # (p' = 0, always feasible), its residual |p| is what the metrics see, and it is counted.
    unsolved = [i for i, s in enumerate(sols) if not s.found]
    masks = np.stack([s.mask if s.found else np.zeros(n, dtype=np.int8) for s in sols])
    approx = approximate(params, masks, X)
    wmax, per = max_rel_weight_error(params, approx)
    import torch

    key = metrics_key(model, approx, data)
    cached = _cached_metrics(metrics_cache, key) if reuse_metrics else None
    if cached is not None:
        tr, te, acc = cached["train"], cached["test"], cached["accuracy"]
    else:
        if "train_out" not in data:
            target_outputs(model, data)  # the target's float64 outputs, once per data set
        g64 = substituted_model(model, approx, dtype=torch.float64)
        tr = output_errors(data["train_out"], conv_outputs(g64.features, data["train"][0]))
        te = output_errors(data["test_out"], conv_outputs(g64.features, data["test"][0]))
        acc = accuracy(substituted_model(model, approx), *data["test"])
        _save_metrics(metrics_cache, key, {"train": tr, "test": te, "accuracy": acc})
    statuses = status_counts(sols)
    if unsolved:
        statuses["no_solution_empty_subset"] = len(unsolved)
    residuals = np.array([s.error if s.found else abs(float(flat[i])) for i, s in enumerate(sols)])
    return SweepPoint(dataset=dataset, n=n, solver=solver, max_rel_weight_error=wmax,
                      max_rel_output_error_train=tr["per_image"], max_rel_output_error_test=te["per_image"],
                      test_accuracy=acc, solve_seconds=wall,
                      global_rel_output_error_train=tr["global"], global_rel_output_error_test=te["global"],
                      per_tensor_weight_error=per, statuses=statuses,
                      max_param_residual=float(residuals.max()),
                      cpu_seconds=float(sum(s.seconds for s in sols)),
                      residuals=residuals)


# ----------------------------------------------------------------------------- the experiment
def kernel_l1_norms(params) -> list[float]:
    """l1 norm of every kernel K^(l) (one output channel of a conv weight), Theorem 1's hypothesis."""
    return [float(np.abs(p[c]).sum()) for name, p in params if name.endswith("weight") for c in range(p.shape[0])]


def load_data(dataset: str, data_dir=None) -> dict:
    """{"train": (images, labels), "test": (...)} as float32 / int64 tensors (decoded once per process,
    see :mod:`pipelines.data`)."""
    from ..data import load_dataset

    return {"train": load_dataset(dataset, "train", root=data_dir), "test": load_dataset(dataset, "test", root=data_dir)}


def run(config: Config, *, out=None, progress: bool = True, command: str = "", n_jobs: int = 2, data_dir=None,
        store=None, recompute_metrics: bool = False, skip_finished: bool = False) -> dict:
    """Train (or load) LeNet5 per data set, run the subset-sum sweep for every solver and n, and
    write results.csv, residuals.npz, figure3/figure4 (PNG+PDF), config.json, summary.json and
    report.md into ``out`` (default ``results/iclr-lenet5``).

    Runtime arguments (they do not change the results): ``n_jobs`` workers; ``data_dir`` a folder
    of IDX files instead of the installed data sets; ``store`` the SQLite store of solved
    instances (default :func:`default_store`); ``recompute_metrics`` ignores and rewrites the cached
    output metrics; ``skip_finished`` returns the summary already in ``out`` when it records a
    finished run of this config (same key) instead of redoing the sweep and rewriting the report.
    """
    from ..targets import ensure_trained_lenet5, get_trained_lenet5

    started, out, done = start_run(config, Config, out, progress, skip_finished)
    if done is not None:
        return done
    store = store if store is not None else default_store()
    metrics_cache = metrics_cache_dir()
    datasets, ns, solvers = list(config.datasets), list(config.ns), list(config.solvers)
    epochs, seed, time_limit = config.epochs, config.seed, config.time_limit
    t_start = time.perf_counter()
    timing: dict = {"datasets": {}}
    # Train every missing model first (in parallel 1-thread processes when two are missing).
    if progress:
        print(f"[stage 1/2] LeNet5 models for {', '.join(datasets)} ({epochs} epochs, seed {seed}): loading from the "
              f"cache, training what is missing", flush=True)
    trained = ensure_trained_lenet5(datasets, epochs, seed, data_dir, progress)
    timing["training_seconds"] = round(time.perf_counter() - t_start, 2)
    total_points, done_points, t_points = len(datasets) * len(solvers) * len(ns), 0, time.perf_counter()
    if progress:
        print(f"[stage 1/2] LeNet5 models ready ({timing['training_seconds']:.0f} s, including any training)", flush=True)
    rows, ds_info, residuals = [], {}, {}
    for ds in datasets:
        t0 = time.perf_counter()
        data = load_data(ds, data_dir)
        t_load = time.perf_counter() - t0
        model, info = get_trained_lenet5(ds, epochs=epochs, seed=seed, data_dir=data_dir, progress=progress)
        t_model = time.perf_counter() - t0 - t_load
        params = conv_parameters(model.features)
        count = sum(p.size for _, p in params)
        l1 = kernel_l1_norms(params)
        ds_info[ds] = {"test_accuracy": accuracy(model, *data["test"]), "conv_parameters": count,
                       "train_info": {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))},
                       "max_abs_weight": float(max(np.abs(p).max() for _, p in params)),
                       "min_kernel_l1": min(l1), "max_kernel_l1": max(l1)}
        if progress:
            print(f"[{ds}] LeNet5 test accuracy {ds_info[ds]['test_accuracy']:.2f}% "
                  f"(loaded in {t_model:.1f} s); "
                  f"{count} conv parameters", flush=True)
        t_sweep = {}
        for solver in solvers:
            for n in ns:
                t1 = time.perf_counter()
                if progress:
                    el = time.perf_counter() - t_points
                    eta = f"ETA {el / done_points * (total_points - done_points):.0f} s" if done_points else "ETA after the first point"
                    print(f"[stage 2/2, point {done_points + 1}/{total_points}] {ds} {solver} n={n}: solving {count} "
                          f"instances, then the float64 metrics (elapsed {time.perf_counter() - t_start:.0f} s, {eta})",
                          flush=True)
                point = run_sweep_point(model, params, data, n, solver, seed, time_limit, n_jobs, store,
                                        progress, ds, metrics_cache=metrics_cache,
                                        reuse_metrics=not recompute_metrics)
                row = asdict(point)
                residuals[f"{ds}/{solver}/{n}"] = row.pop("residuals")
                rows.append(row)
                t_sweep[f"{solver}:n={n}"] = round(time.perf_counter() - t1, 2)
                done_points += 1
                if progress:
                    print(f"[{ds}] {solver} n={n:>2}: weight err {point.max_rel_weight_error:.2e}, output err "
                          f"train {point.max_rel_output_error_train:.2e} test {point.max_rel_output_error_test:.2e}, "
                          f"acc {point.test_accuracy:.2f}%, solve {point.solve_seconds:.1f} s", flush=True)
        timing["datasets"][ds] = {"load_seconds": round(t_load, 2), "model_load_seconds": round(t_model, 2),
                                  "model_was_cached": not trained[ds]["trained_now"], "sweep_seconds": t_sweep}
        del data
    timing["total_seconds"] = round(time.perf_counter() - t_start, 2)
    summary = {"command": command, "machine": machine_line(),
               "settings": {"datasets": datasets, "ns": ns, "solvers": solvers, "epochs": epochs,
                            "seed": seed, "time_limit": time_limit, "n_jobs": n_jobs},
               "paper": PAPER, "datasets": ds_info, "timing": timing, "results": rows, **config_record(config)}
    record_run(out, config, command, started, stages=timing)
    report_module.write_all(rows, summary, out, residuals)
    return {**summary, "out": str(out)}  # where it went (not in summary.json)


def rewrite_report(out) -> None:
    """Redraws results.csv, the figures and report.md of a finished run in ``out`` from its
    summary.json and residuals.npz (no recomputation)."""
    report_module.rewrite(out)


def run_experiment(datasets=("mnist", "fashion-mnist"), ns=(5, 10, 15, 20, 25, 30), solvers=("auto",),
                   epochs: int = 50, seed: int = 0, out=None, time_limit=None, n_jobs: int = 2, data_dir=None,
                   store=None, progress: bool = True, command: str = "", recompute_metrics: bool = False) -> dict:
    """The earlier keyword interface: builds the :class:`Config` and calls :func:`run`."""
    config = Config(datasets=tuple(datasets), ns=tuple(ns), solvers=tuple(solvers), time_limit=time_limit,
                    epochs=epochs, seed=seed)
    return run(config, out=out, progress=progress, command=command, n_jobs=n_jobs, data_dir=data_dir, store=store,
               recompute_metrics=recompute_metrics)
