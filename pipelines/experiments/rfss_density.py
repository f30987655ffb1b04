"""Experiment rfss-density (issue 14): fixed-density tickets of the trained LeNet5 dense head, and whole pruned
random LeNet5s.

Paper: "On the Sparsity of the SLTH" (arXiv 2410.14754): Random Fixed-Size Subset Sum (exactly k of n) gives
tickets of uniform density k/n; the paper has no experiment. Construction:
:mod:`pipelines.constructions.dense_rfss` (one RFSS per dense weight and bias, exact meet in the middle with the
cardinality row, every instance through :func:`milp.solve_many` and its SQLite store).

Three stages, per data set (the cached trained LeNet5 of :mod:`pipelines.targets`):

1. ``head``: the whole dense head (784 -> 120 -> 84 -> 10: 105,214 weights and biases) replaced by its pruned
   random head, n samples per entry, for every k of ``ks`` (RFSS, density k/n) and plain RSS (free subset
   size, ``rss=True``) at the same n, and for every k plain RSS matched to it (``rss_matched=True``, method
   ``rss-matched``): free subsets over n' = 2k samples per entry. Matching: RSS over m samples keeps m/2 of
   them on average, so RSS over 2k samples keeps about k per entry, the kept parameters of RFSS(n, k); put
   into the n-sample network of RFSS (its other n - 2k samples per entry pruned a priori, same random
   distribution) its V mask has the average density k/n. So RFSS(n, k) and RSS(2k) compare the same
   average density and the same kept parameters; they differ in what the subset may be (exactly k of n,
   against any subset of a fixed 2k) and RSS(2k) draws fewer random parameters. Reported ``density`` for
   these rows: the kept V entries over the V entries of the n-sample network (the embedded density);
   ``measured_density``: over its own 2k-sample network. The conv part stays the trained one: the head's inputs are the trained
   conv features of the test images. Measured: max relative weight error (per tensor max|W - L| / max|W|, max
   over the six tensors, the ICLR Figure 3 metric), residual quantiles, logits error (per image max over the
   10 logits, max over the test set; relative per image: / max |f(x)|), accuracy, kept and random
   parameters, the measured density of V's mask, and a certified bound of the head's logit error for every
   head input in [0, B]^784 (B: the certified bound of the trained conv part's output on [0, 1]^784 images).
2. ``tradeoff``: the density / over-parameterisation trade-off on the last dense layer (84 -> 10, 850 entries):
   median residual for every n of ``tradeoff_ns`` and density of ``tradeoff_densities`` (k = density * n),
   beside the counting (first-moment) estimate of the optimum (:func:`counting_median`).
3. ``whole``: whole pruned random LeNet5s (conv part by the ICLR construction with ``n_conv`` samples per
   entry, plain RSS; head by RFSS) for every (n, k) of ``whole``: random and kept parameters, accuracy and the
   three logit errors (empirical on ``whole_images`` test images, adversarial PGD, certified on [0, 1]^784).
   Its dense instances are the head stage's (same seed, same targets): store hits.

The counting estimate. With candidates Y_t = V_t u_t (V ~ U[-1, 1], u ~ U[0, 1] i.i.d., density of Y:
-ln|y| / 2 on [-1, 1]) and f_m the density of a sum of m of them, the expected number of k-subsets whose sum
is within eps of z is about C(n, k) 2 eps f_k(z) (for RSS: sum over m of C(n, m) 2 eps f_m(z)); setting it to
ln 2 (a Poisson count is then 0 with probability 1/2) gives the estimate eps_med(z) = ln 2 / (2 C(n, k) f_k(z))
of the median optimum. The paper's second-moment argument shows the RFSS optimum is of this order with
constant probability; its constants are not in the summary we have, so this first-moment estimate is what is
drawn as "theory". Density against over-parameterisation: log C(n, k) ~ n H(k/n) bits, so reaching eps at
density gamma needs n ~ log2(1 / eps) / H(gamma) samples per entry.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..reporting import machine_line
from .base import ExperimentConfig, config_record, finished_run, prepare_out, record_run

NAME = "rfss-density"
DESCRIPTION = ("arXiv 2410.14754 (RFSS): the trained LeNet5 dense head at density k/n (errors, logits, accuracy, "
               "kept parameters vs k/n, RSS beside it, counting estimate), and whole pruned random LeNet5s")


class RfssDensityError(ValueError):
    """A bad config field; the message names it."""


@dataclass(frozen=True)
class Config(ExperimentConfig):
    NAME = NAME
    datasets: tuple = ("mnist", "fashion-mnist")
    n: int = 24
    ks: tuple = (1, 3, 6, 12)
    rss: bool = True
    rss_matched: bool = True
    tradeoff_ns: tuple = (8, 16, 24, 32)
    tradeoff_densities: tuple = (0.125, 0.25, 0.375, 0.5)
    whole: tuple = ((24, 6), (24, 12))
    n_conv: int = 24
    whole_images: int = 2000
    epochs: int = 50
    seed: int = 0
    solver: str = "exact"
    verify_ks: tuple = (1, 12)
    verify_whole: bool = True
    verify_attack_time: float = 20.0
    verify_attack_rounds: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("datasets", "ks", "tradeoff_ns", "tradeoff_densities"):
            if isinstance(getattr(self, name), (str, int, float)):
                self._set(name, (getattr(self, name),))
        for d in self.datasets:
            if d not in ("mnist", "fashion-mnist"):
                raise RfssDensityError(f"datasets: unknown data set {d!r}; choose mnist, fashion-mnist")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n <= 44:
            raise RfssDensityError(f"n: expected an integer in [1, 44] (exact meet in the middle), got {self.n!r}")
        for k in self.ks:
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.n:
                raise RfssDensityError(f"ks: every k must be an integer 1 <= k <= n = {self.n}, got {k!r}")
        self._set("ks", tuple(sorted(set(self.ks))))
        for n in self.tradeoff_ns:
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 44:
                raise RfssDensityError(f"tradeoff_ns: integers in [1, 44], got {n!r}")
        for g in self.tradeoff_densities:
            if not 0 < float(g) <= 1:
                raise RfssDensityError(f"tradeoff_densities: numbers in (0, 1], got {g!r}")
        whole = tuple(tuple(int(v) for v in p) for p in self.whole)
        for n, k in whole:
            if not 1 <= k <= n <= 44:
                raise RfssDensityError(f"whole: pairs (n, k) with 1 <= k <= n <= 44, got {(n, k)}")
        self._set("whole", whole)


def matched_ks(config: "Config") -> list[int]:
    """The k of ``ks`` that get an RSS point over 2k samples (exact meet in the middle: 2k <= 44; with
    ``rss`` the k = n/2 point is the plain RSS row itself, not repeated)."""
    if not config.rss_matched:
        return []
    return [k for k in config.ks if 2 * k <= 44 and not (config.rss and 2 * k == config.n)]


def tradeoff_k(n: int, density: float) -> int:
    return max(1, int(round(n * float(density))))


# ----------------------------------------------------------------------------- counting estimate
_H = 1e-3  # grid step of the densities f_m


def _f1_grid(h: float = _H) -> np.ndarray:
    """Bin probabilities of Y = V u (V ~ U[-1, 1], u ~ U[0, 1]) on bins [ih - h/2, ih + h/2], |ih| <= 1:
    P(0 < Y < y) = (y - y ln y) / 2 for 0 < y <= 1, symmetric."""
    m = int(round(1 / h))
    edges = np.clip((np.arange(-m, m + 2) - 0.5) * h, -1, 1)

    def cdf(y):
        a = np.abs(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            half = np.where(a > 0, (a - a * np.log(a)) / 2, 0.0)
        return 0.5 + np.sign(y) * half

    return np.diff(cdf(edges))


def sum_densities(max_m: int, h: float = _H) -> list[np.ndarray]:
    """[p_1, ..., p_max_m]: bin probabilities of sums of m i.i.d. Y on the grid ih, |i| <= m/h (centred)."""
    from scipy.signal import fftconvolve

    p1 = _f1_grid(h)
    out, p = [], p1
    for m in range(1, max_m + 1):
        if m > 1:
            p = np.clip(fftconvolve(p, p1), 0, None)
        out.append(p / p.sum())
    return out


def density_at(p: np.ndarray, z: np.ndarray, h: float = _H) -> np.ndarray:
    """f(z) from the centred bin probabilities ``p`` (linear interpolation, density = probability / h)."""
    half = (len(p) - 1) // 2
    grid = (np.arange(len(p)) - half) * h
    return np.interp(z, grid, p / h, left=0.0, right=0.0)


def counting_median(z: np.ndarray, n: int, k: int | None, dens: list[np.ndarray]) -> np.ndarray:
    """Per target z: ln 2 / (2 * expected subsets per unit error) (module docstring); k None = RSS."""
    z = np.asarray(z, dtype=np.float64)
    if k is None:
        rate = sum(math.comb(n, m) * density_at(dens[m - 1], z) for m in range(1, n + 1))
    else:
        rate = math.comb(n, k) * density_at(dens[k - 1], z)
    with np.errstate(divide="ignore"):
        return np.where(rate > 0, math.log(2) / (2 * rate), np.inf)


# ----------------------------------------------------------------------------- helpers
def default_store() -> Path:
    from ..paths import store_dir

    return store_dir() / "rfss-density.sqlite"


def _features(model, images, batch: int = 1000):
    import torch

    f = model.features.double().eval()
    with torch.no_grad():
        return torch.cat([f(images[s:s + batch].double()) for s in range(0, len(images), batch)]).flatten(1)


def _logits_metrics(f_out, g_out, labels) -> dict:
    err = (f_out - g_out).abs().amax(1)
    top = f_out.abs().amax(1)
    return {"logits_err_abs": float(err.max()), "logits_err_rel": float((err / top.clamp_min(1e-300)).max()),
            "logits_err_median": float(err.median()), "accuracy": float((g_out.argmax(1) == labels).double().mean()),
            "target_accuracy": float((f_out.argmax(1) == labels).double().mean())}


def _weight_errors(c) -> dict:
    worst = 0.0
    for lin, (L, cb) in zip(c.linears(), c.effective_weights()[-len(c.linears()):]):
        W = lin.weight.detach().double()
        worst = max(worst, float((W - L).abs().max() / W.abs().max()))
        if lin.bias is not None and float(lin.bias.detach().abs().max()) > 0:
            b = lin.bias.detach().double()
            worst = max(worst, float((b - cb).abs().max() / b.abs().max()))
    return {"max_rel_weight_error": worst}


def _solve(c, config, store, n_jobs):
    from ..constructions.base import solve_subproblems

    return solve_subproblems(c, solver=config.solver, n_jobs=n_jobs, store=store, seed=config.seed, progress=False)


# ----------------------------------------------------------------------------- verification section
def verification(config: Config, store, n_jobs: int = 1, data_dir=None, progress: bool = True) -> list[dict]:
    """The four numbers (:mod:`pipelines.experiments.four_numbers`) of the first data set's tickets: the dense head
    at n and every k of ``verify_ks`` (f the trained head, inputs the box [0, B]^784 of the conv features, B the
    certified bound of the trained conv part's output; empirical over the test set's features) and, with
    ``verify_whole``, the first whole pruned LeNet5 of ``whole`` (inputs [0, 1]^784; empirical over
    ``whole_images`` test images). The exact MILP does not encode Linear layers: exact is not run (its reason
    kept); the interval certificate carries the whole network."""
    import torch

    from ..constructions.dense_rfss import RfssConstruction
    from ..data import load_dataset
    from ..targets import ensure_trained_lenet5, get_trained_lenet5
    from ..verify import certified
    from .four_numbers import ticket_row

    dataset, rows = config.datasets[0], []
    ensure_trained_lenet5([dataset], config.epochs, config.seed, data_dir=data_dir, progress=progress)
    model, _ = get_trained_lenet5(dataset, epochs=config.epochs, seed=config.seed, data_dir=data_dir, progress=progress)
    model = model.double().eval()
    X, _ = load_dataset(dataset, "test", root=data_dir)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    B = certified(list(model.features), [(m.weight.detach(), m.bias.detach()) for m in convs])["output_bound"]
    F = _features(model, X)
    kw = dict(seed=config.seed, restarts=4, steps=20, attack_time=config.verify_attack_time,
              attack_rounds=config.verify_attack_rounds)
    tickets = [("head", config.n, k) for k in config.verify_ks]
    if config.verify_whole and config.whole:
        tickets.append(("whole", *config.whole[0]))
    for what, n, k in tickets:
        t0 = time.perf_counter()
        if what == "head":
            target = model.classifier
            c = RfssConstruction(target, n, seed=config.seed, k=k)
            _solve(c, config, store, n_jobs)
            row = ticket_row(target, c, tuple(F.shape[1:]), F.clamp(0, B), domain=(0.0, B),
                             certificate=c.certify(input_bound=B), **kw)
        else:
            target = torch.nn.Sequential(*model.features, *model.classifier).double().eval()
            c = RfssConstruction(target, n, seed=config.seed, k=k, n_conv=config.n_conv)
            _solve(c, config, store, n_jobs)
            row = ticket_row(target, c, (1, 28, 28), X[:config.whole_images].double(), **kw)
        rows.append({"dataset": dataset, "ticket": what, "n": n, "k": k, **row})
        if progress:
            print(f"[{NAME}] verification {dataset} {what} n={n} k={k}: empirical {row['empirical_abs']:.4g} <= "
                  f"adversarial {row['adversarial_abs']:.4g} <= certified {row['certified_abs']:.4g} (interval "
                  f"{row['certified_interval']:.4g}, Appendix B {row['certified_appendix_b']:.4g}; "
                  f"{time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


# ----------------------------------------------------------------------------- run
def run(config: Config, *, out=None, progress: bool = True, command: str = "", n_jobs: int = 1, store=None,
        data_dir=None, skip_finished: bool = False, verification_only: bool = False) -> dict:
    """All three stages (resumable: every solved instance is in the store) and the verification section; writes
    the report into ``out``. ``verification_only``: only the verification section, on the run already in ``out``
    (same config up to the ``verify_*`` fields; its other results are kept)."""
    import torch

    from ..constructions.dense_rfss import RfssConstruction
    from ..data import load_dataset
    from ..targets import ensure_trained_lenet5, get_trained_lenet5
    from ..verify import certified, verify
    from .four_numbers import previous_summary, rerun_verification, run_record
    from .rfss_density_report import rewrite, write_all

    if not isinstance(config, Config):
        raise TypeError(f"config: expected {__name__}.Config, got {type(config).__name__}")
    started = time.time()
    previous = previous_summary(out, config) if verification_only else None
    out = prepare_out(config, out, progress)
    if skip_finished and (done := finished_run(out, config, progress)) is not None:
        return done
    store = store if store is not None else default_store()
    torch.set_num_threads(1)
    if previous is not None:
        from ..reporting import atomic_write_json

        summary = rerun_verification(out, config, command, started, previous,
                                    lambda: verification(config, store, n_jobs, data_dir, progress))
        atomic_write_json(Path(out) / "summary.json", summary)
        rewrite(out)
        return {**summary, "out": str(out)}
    t_all = time.perf_counter()
    stages: dict[str, float] = {}
    head_rows, trade_rows, whole_rows = [], [], []
    methods = ([("rfss", k) for k in config.ks] + ([("rss", None)] if config.rss else [])
               + [("rss-matched", k) for k in matched_ks(config)])
    steps_total = len(config.datasets) * (len(methods) + 1 + len(config.whole))
    steps_done = 0

    def stage(name: str, seconds: float, text: str) -> None:
        nonlocal steps_done
        steps_done += 1
        stages[name] = round(seconds, 2)
        if progress:
            el = time.perf_counter() - t_all
            eta = el / steps_done * (steps_total - steps_done)
            print(f"[{NAME}] {steps_done}/{steps_total} {name}: {text} ({seconds:.1f} s; elapsed {el / 60:.1f} min, "
                  f"ETA {eta / 60:.1f} min)", flush=True)

    dens = sum_densities(max(max(config.tradeoff_ns), config.n, *(2 * k for k in matched_ks(config))))
    for dataset in config.datasets:
        ensure_trained_lenet5([dataset], config.epochs, config.seed, data_dir=data_dir, progress=progress)
        model, _ = get_trained_lenet5(dataset, epochs=config.epochs, seed=config.seed, data_dir=data_dir,
                                      progress=progress)
        model = model.double().eval()
        X, y = load_dataset(dataset, "test", root=data_dir)
        F = _features(model, X)
        head = model.classifier
        with torch.no_grad():
            f_out = head(F)
        convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
        B = certified(list(model.features), [(m.weight.detach(), m.bias.detach()) for m in convs])["output_bound"]
        target_params = sum(p.numel() for p in head.parameters())
        # ---- stage 1: the head at density k/n, and RSS
        for method, k in methods:
            t0 = time.perf_counter()
            n_own = 2 * k if method == "rss-matched" else config.n
            c = RfssConstruction(head, n_own, seed=config.seed, k=None if method == "rss-matched" else k)
            info = _solve(c, config, store, n_jobs)
            res = info["residuals"]
            subs = c.subproblems()
            targets = np.array([sp.target for sp in subs])
            with torch.no_grad():
                g_out = c.network.compact()(F)
            counts = c.network.parameter_counts()
            V_ones = sum(int(b.V.weight_mask.sum()) for b in c.network.blocks())
            V_all = sum(b.V.weight_mask.numel() for b in c.network.blocks())
            if method == "rss-matched":  # V's entries scale with n: the n-sample network has V_all n / n_own
                theory = counting_median(targets, n_own, None, dens)
                density = V_ones / (V_all * config.n / n_own)
            else:
                theory = counting_median(targets, config.n, k, dens)
                density = (k / config.n) if k is not None else V_ones / V_all
            row = {"dataset": dataset, "method": method, "n": n_own, "k": k if method == "rfss" else "",
                   "matched_k": k if method == "rss-matched" else "",
                   "density": density, "measured_density": V_ones / V_all,
                   "kept_per_entry": V_ones / info["instances"],
                   "instances": info["instances"], "optimal": info["statuses"].get("optimal", 0),
                   "max_residual": float(res.max()), "median_residual": float(np.median(res)),
                   "p99_residual": float(np.quantile(res, 0.99)), "share_above_1e-3": float((res > 1e-3).mean()),
                   "counting_median": float(np.median(theory)), **_weight_errors(c),
                   **_logits_metrics(f_out, g_out, y),
                   "certified_head": float(c.certify(input_bound=B)["abs"]), "input_bound": B,
                   "random_params": counts["dense_random"], "kept_params": counts["dense_kept"],
                   "kept_V": V_ones, "target_params": target_params,
                   "solver_seconds": round(info["seconds"], 2), "wall_seconds": round(time.perf_counter() - t0, 2)}
            worst = int(np.argmax(res))
            sp = subs[worst]
            row["worst_entry"] = f"layer {sp.layer} {sp.kind} {sp.entry} target {sp.target:.4g}"
            head_rows.append(row)
            label = f"n'={n_own} (matched to k={k})" if method == "rss-matched" else f"k={k if k is not None else 'free'}"
            stage(f"{dataset} head {method} {label}", time.perf_counter() - t0,
                  f"median residual {row['median_residual']:.2e}, max rel weight error {row['max_rel_weight_error']:.2e}, "
                  f"logits error {row['logits_err_abs']:.2e}, accuracy {100 * row['accuracy']:.2f}% "
                  f"(target {100 * row['target_accuracy']:.2f}%)")
        # ---- stage 2: the trade-off on the last dense layer
        t0 = time.perf_counter()
        last = torch.nn.Sequential(head[-1])
        for n in config.tradeoff_ns:
            for g in config.tradeoff_densities:
                k = tradeoff_k(n, g)
                c = RfssConstruction(last, n, seed=config.seed, k=k)
                info = _solve(c, config, store, n_jobs)
                res = info["residuals"]
                targets = np.array([sp.target for sp in c.subproblems()])
                trade_rows.append({"dataset": dataset, "layer": "84->10", "n": n, "k": k, "density": k / n,
                                   "instances": info["instances"], "optimal": info["statuses"].get("optimal", 0),
                                   "median_residual": float(np.median(res)), "p90_residual": float(np.quantile(res, 0.9)),
                                   "max_residual": float(res.max()),
                                   "counting_median": float(np.median(counting_median(targets, n, k, dens))),
                                   "solver_seconds": round(info["seconds"], 2)})
        stage(f"{dataset} tradeoff", time.perf_counter() - t0,
              f"{len(config.tradeoff_ns) * len(config.tradeoff_densities)} (n, k) points on the 84->10 layer")
        # ---- stage 3: whole pruned random LeNet5s
        whole_target = torch.nn.Sequential(*model.features, *model.classifier).double().eval()
        Xw, yw = X[:config.whole_images].double(), y[:config.whole_images]
        for n, k in config.whole:
            t0 = time.perf_counter()
            c = RfssConstruction(whole_target, n, seed=config.seed, k=k, n_conv=config.n_conv)
            info = _solve(c, config, store, n_jobs)
            g = c.network.compact()
            with torch.no_grad():
                fw, gw = whole_target(Xw), torch.cat([g(Xw[s:s + 250]) for s in range(0, len(Xw), 250)])
            cert = c.certify()
            r = verify(whole_target, c.network, Xw[:200], restarts=4, steps=20, seed=config.seed,
                       evaluate_with=g, certificate=cert)["summary"]
            counts = c.network.parameter_counts()
            dens_blocks = c.densities()
            whole_rows.append({"dataset": dataset, "n": n, "k": k, "n_conv": config.n_conv,
                               "instances": info["instances"], "optimal": info["statuses"].get("optimal", 0),
                               "max_residual": float(info["residuals"].max()),
                               "random_params": counts["random"], "kept_params": counts["kept"],
                               "conv_random": counts["conv_random"], "conv_kept": counts["conv_kept"],
                               "dense_random": counts["dense_random"], "dense_kept": counts["dense_kept"],
                               "target_params": sum(p.numel() for p in whole_target.parameters()),
                               "images": len(Xw), **_logits_metrics(fw, gw, yw),
                               "adversarial_abs": r["adversarial_abs"], "certified_abs": r["certified_abs"],
                               "densities": "; ".join(f"{d['kind']} {d['block']}: {d['mask_density']:.4f}"
                                                      for d in dens_blocks),
                               "wall_seconds": round(time.perf_counter() - t0, 2)})
            w = whole_rows[-1]
            stage(f"{dataset} whole n={n} k={k}", time.perf_counter() - t0,
                  f"{w['random_params']} random, {w['kept_params']} kept, accuracy {100 * w['accuracy']:.2f}% "
                  f"(target {100 * w['target_accuracy']:.2f}%), logits error {w['logits_err_abs']:.2e}, "
                  f"certified {w['certified_abs']:.2e}")
    t0 = time.perf_counter()
    ver = verification(config, store, n_jobs, data_dir, progress)
    stages["verification"] = round(time.perf_counter() - t0, 2)
    summary = {"command": command, "machine": machine_line(), **config_record(config), "n_jobs": n_jobs,
               "stages": stages, "wall_seconds": round(time.perf_counter() - t_all, 1), "verification": ver,
               "verification_run": run_record(command, time.perf_counter() - t0)}
    record_run(out, config, command, started, stages=stages)
    summary = write_all(head_rows, trade_rows, whole_rows, summary, out)
    return {**summary, "out": str(out)}


def rewrite_report(out) -> None:
    """Rewrites the figures, summary.json and report.md from the CSVs and summary.json (no recomputation)."""
    from .rfss_density_report import rewrite

    rewrite(out)


__all__ = ["NAME", "DESCRIPTION", "Config", "run", "rewrite_report", "counting_median", "sum_densities", "tradeoff_k",
           "matched_ks"]
