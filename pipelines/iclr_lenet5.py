"""Reproduction of the ICLR 2022 LeNet5 experiment (da Cunha, Natale, Viennot; Section 3, Figs. 3-4).

For every n in the sweep, every parameter p of LeNet5's convolutional part (weights AND biases,
2572 in all) is replaced by its best subset sum of n fresh Uniform[-1, 1] samples,
min |p - sum_i a_i x_i| over a in {0,1}^n (Section 3), solved through the batch engine. Metrics:

- Figure 3: per parameter tensor, max |p - p'| / max |p|; the figure shows the max over tensors.
- Figure 4: on the output of the convolutional part (16 x 7 x 7, before flatten). Paper's text:
  per image, max activation error / max original activation, then the max over all images
  (``per_image``). The authors' public code instead divides the largest activation error over the
  data set by the largest original activation over the data set (``global``). Both are computed.
- Test accuracy of the whole network with the substituted conv part.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

PAPER = {
    "accuracy": {"mnist": 98.99, "fashion-mnist": 89.12},
    "weight_error_below_1e-2_from_n": (15, 20),
    "output_error_at_n20": 1e-3,
    "overparam_factor_at_n20": 30,
}


@dataclass(frozen=True)
class SweepConfig:
    """What determines the results of one sweep; its hash names cached stores."""

    dataset: str = "mnist"
    ns: tuple[int, ...] = (5, 10, 15, 20, 25, 30)
    solver: str = "auto"
    time_limit: float | None = None
    epochs: int = 50
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


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


def max_rel_weight_error(params, approx) -> tuple[float, dict]:
    """Figure 3 metric: per tensor max|p - p'| / max|p|, and the max over tensors. An all-zero tensor
    counts 0 when approximated exactly (the empty subset) and inf otherwise."""
    per = {}
    for (name, p), (_, q) in zip(params, approx):
        err, top = float(np.abs(p - q).max()), float(np.abs(p).max())
        per[name] = err / top if top > 0 else (0.0 if err == 0 else float("inf"))
    return max(per.values()), per


def conv_outputs(features, images, batch_size: int = 100):
    """Flattened outputs (N, 784) of a conv part over ``images``, in the features' dtype.

    Small batches keep the im2col buffers in cache: on 2 cores the float64 pass over the 60k
    training images takes ~4 s with batches of 100 and ~17 s with batches of 2000."""
    import torch

    features.eval()
    dt = next(features.parameters()).dtype
    outs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            outs.append(features(torch.as_tensor(images[start:start + batch_size]).to(dt)).flatten(1))
    return torch.cat(outs)


def output_errors(f_out, g_out) -> dict:
    """Figure 4 metrics from the conv-part outputs of the target (``f_out``) and the approximation.

    Returns ``per_image`` (paper's text: max over images of max|f - g| / max|f| per image),
    ``global`` (authors' code: max over everything of |f - g| / max over everything of |f|),
    and the raw ``max_abs`` error. Pass float64 outputs so the metric is not limited by float32.
    """
    import torch

    err = (f_out - g_out).abs().amax(dim=1)
    top = f_out.abs().amax(dim=1)
    zero = torch.zeros((), dtype=err.dtype)
    ratio = torch.where(top > 0, err / top.clamp_min(1e-300), torch.where(err > 0, torch.inf, zero))
    max_abs, max_f = float(err.max()), float(top.max())
    return {"per_image": float(ratio.max()), "global": max_abs / max_f if max_f > 0 else float("inf"),
            "max_abs": max_abs}


def target_outputs(model, data) -> dict:
    """Adds the float64 conv outputs of the target network on train and test to ``data``."""
    import torch

    f64 = substituted_model(model, conv_parameters(model.features), dtype=torch.float64)
    data["train_out"] = conv_outputs(f64.features, data["train"][0])
    data["test_out"] = conv_outputs(f64.features, data["test"][0])
    return data


def accuracy(model, images, labels, batch_size: int = 500) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = torch.as_tensor(images[start:start + batch_size]).float()
            y = torch.as_tensor(labels[start:start + batch_size])
            correct += int((model(x).argmax(1) == y).sum())
    return 100.0 * correct / len(images)


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
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"key": key, "version": METRICS_VERSION, **metrics}))
    os.replace(tmp, cache_dir / f"{key}.json")  # atomic: a kill leaves the old entry or none


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
    statuses: dict[str, int] = {}
    for s in sols:
        statuses[s.status.value] = statuses.get(s.status.value, 0) + 1
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
    from .data import load_dataset

    return {"train": load_dataset(dataset, "train", root=data_dir), "test": load_dataset(dataset, "test", root=data_dir)}


def run_experiment(datasets=("mnist", "fashion-mnist"), ns=(5, 10, 15, 20, 25, 30), solvers=("auto",),
                   epochs: int = 50, seed: int = 0, out=None, time_limit=None, n_jobs: int = 2, data_dir=None,
                   store=None, progress: bool = True, command: str = "", recompute_metrics: bool = False) -> dict:
    """Train (or load) LeNet5 per data set, run the subset-sum sweep for every solver and n, and
    write results.csv, figure3/figure4 (PNG+PDF), summary.json and report.md into ``out``.

    Resumable: trained models are cached by config hash, solved instances live in the SQLite store
    (default ``<cache>/stores/iclr-lenet5.sqlite``), and the output metrics of a sweep point are
    cached under a hash of (model, substituted weights, data) in ``<cache>/stores/iclr-metrics/``
    (``recompute_metrics=True`` ignores and rewrites them).
    """
    import os
    import platform

    from . import iclr_report
    from .paths import results_dir, store_dir
    from .targets import ensure_trained_lenet5, get_trained_lenet5

    out = results_dir("iclr-lenet5", out)
    store = store if store is not None else store_dir() / "iclr-lenet5.sqlite"
    metrics_cache = store_dir() / "iclr-metrics"
    t_start = time.perf_counter()
    timing: dict = {"datasets": {}}
    # Train every missing model first (in parallel 1-thread processes when two are missing).
    from .data import check_name

    datasets = list(dict.fromkeys(check_name(d) for d in datasets))
    trained = ensure_trained_lenet5(datasets, epochs, seed, data_dir, progress)
    timing["training_seconds"] = round(time.perf_counter() - t_start, 2)
    if progress:
        print(f"LeNet5 models ready ({timing['training_seconds']:.0f} s, including any training)", flush=True)
    rows, ds_info, residuals = [], {}, {}
    for ds in datasets:
        t0 = time.perf_counter()
        data = load_data(ds, data_dir)
        t_load = time.perf_counter() - t0
        model, info = get_trained_lenet5(ds, epochs=epochs, seed=seed, data_dir=data_dir, progress=progress)
        t_train = time.perf_counter() - t0 - t_load
        params = conv_parameters(model.features)
        count = sum(p.size for _, p in params)
        l1 = kernel_l1_norms(params)
        ds_info[ds] = {"test_accuracy": accuracy(model, *data["test"]), "conv_parameters": count,
                       "train_info": {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))},
                       "max_abs_weight": float(max(np.abs(p).max() for _, p in params)),
                       "min_kernel_l1": min(l1), "max_kernel_l1": max(l1)}
        if progress:
            print(f"[{ds}] LeNet5 test accuracy {ds_info[ds]['test_accuracy']:.2f}% "
                  f"(loaded in {t_train:.1f} s); "
                  f"{count} conv parameters", flush=True)
        t_sweep = {}
        for solver in solvers:
            for n in ns:
                t1 = time.perf_counter()
                point = run_sweep_point(model, params, data, n, solver, seed, time_limit, n_jobs, store,
                                        progress, ds, metrics_cache=metrics_cache,
                                        reuse_metrics=not recompute_metrics)
                row = asdict(point)
                residuals[f"{ds}/{solver}/{n}"] = row.pop("residuals")
                rows.append(row)
                t_sweep[f"{solver}:n={n}"] = round(time.perf_counter() - t1, 2)
                if progress:
                    print(f"[{ds}] {solver} n={n:>2}: weight err {point.max_rel_weight_error:.2e}, output err "
                          f"train {point.max_rel_output_error_train:.2e} test {point.max_rel_output_error_test:.2e}, "
                          f"acc {point.test_accuracy:.2f}%, solve {point.solve_seconds:.1f} s", flush=True)
        timing["datasets"][ds] = {"load_seconds": round(t_load, 2), "train_seconds": round(t_train, 2),
                                  "model_was_cached": not trained[ds]["trained_now"], "sweep_seconds": t_sweep}
        del data
    timing["total_seconds"] = round(time.perf_counter() - t_start, 2)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    summary = {"command": command, "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                                              f"{platform.python_version()}, load at end {load:.2f}",
               "settings": {"datasets": list(datasets), "ns": list(ns), "solvers": list(solvers), "epochs": epochs,
                            "seed": seed, "time_limit": time_limit, "n_jobs": n_jobs},
               "paper": PAPER, "datasets": ds_info, "timing": timing, "results": rows}
    iclr_report.write_csv(rows, out / "results.csv")
    np.savez_compressed(out / "residuals.npz", **residuals)  # per-parameter residuals, read with allow_pickle=False
    iclr_report.plot(rows, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    iclr_report.report(rows, summary, out, residuals)
    return summary
