"""Analysis, figures (PNG+PDF), summary.json and report.md of the structured-random study
(:mod:`pipelines.experiments.structured_random`, issue 12 experiment (a)).

Works on result rows only (one per instance and solver) and imports nothing from the experiment module
(the experiment imports this one), so a finished run's report can be redrawn from its ``results.csv``
and ``summary.json`` alone (:func:`rewrite`).

- Medians over repeats per (dim, n, solver); the pseudo-solver ``best`` is the smallest error any solver
  found on an instance.
- n needed for eps: the first n of the sweep whose median error is <= eps, refined by log-log
  interpolation between it and the previous n (:func:`crossing`). Points where the first n of the sweep
  already reaches eps are only an upper bound, points never reached only a lower bound; dimensions whose
  median empty-mask error ``||z||_inf`` is already <= eps are trivial. None of them enter the fit.
- Fit ``n ~ a * dim^b`` by least squares on log n against log dim (:func:`loglog_fit`).
- Theorem 3 asks ``n >= C d^12 c^6 log^3(d^2 c c0 l / eps)``; the MRSS dimension is ``dim = c d^2`` so
  ``d^12 c^6 = (c d^2)^6 = dim^6``: exponent 6 in dim, plus the log^3 (:func:`theory_exponent`).
- Counting floor: ``R 2^(-n/dim) / 2 <= eps`` with ``R ~ rho n`` gives ``n = dim log2(rho n / (2 eps))``
  (:func:`counting_n`): exponent ~1 in dim up to the logarithm.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from ..reporting import atomic_write_csv, atomic_write_json, atomic_write_text, save_figure
from .base import runs_markdown

COLUMNS = ["dim", "n", "repeat", "solver", "error", "status", "seconds", "floor", "empty_error", "range", "target_l1",
           "solved_by", "watchdog", "message"]
#: the pseudo-solver: the smallest error of any solver on the instance
BEST = "best"
#: a solver "follows" the counting estimate while its median error is within this factor of
#: median(min(floor, ||z||_inf)) (the empty mask is always available)
FOLLOW_FACTOR = 10.0
#: dim -> the (d, c1) pairs of d in {1, 3}, c1 in {1, 2, 4} giving it
DIM_ORIGIN = {1: "d=1, c1=1", 2: "d=1, c1=2", 4: "d=1, c1=4", 9: "d=3, c1=1", 18: "d=3, c1=2", 36: "d=3, c1=4"}
COLORS = {"exact": "C3", "heuristic": "C0", "auto": "C2", "highs": "C1", "cpsat": "C4", "scip": "C5", "cbc": "C6",
          "gurobi": "C8", BEST: "k"}
MARKERS = {"exact": "*", "heuristic": "o", "auto": "s", "highs": "^", "cpsat": "v", "scip": "D", "cbc": "P",
           "gurobi": "X", BEST: "."}


# ----------------------------------------------------------------------------- rows
def _typed(r: dict) -> dict:
    out = dict(r)
    for k in ("dim", "n", "repeat"):
        out[k] = int(r[k])
    for k in ("error", "seconds", "floor", "empty_error", "range", "target_l1"):
        v = r.get(k)
        out[k] = float(v) if v not in (None, "") else math.nan
    out["watchdog"] = str(r.get("watchdog")) in ("True", "true", "1")
    return out


def read_rows(path) -> list[dict]:
    """The rows of a results.csv with numbers as numbers."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [_typed(r) for r in csv.DictReader(fh)]


def with_best(rows: list[dict]) -> list[dict]:
    """``rows`` plus one ``best`` row per instance: the smallest error any solver found on it."""
    best: dict[tuple, dict] = {}
    for r in rows:
        key = (int(r["dim"]), int(r["n"]), int(r["repeat"]))
        if key not in best or float(r["error"]) < float(best[key]["error"]):
            best[key] = r
    return list(rows) + [{**r, "solver": BEST, "solved_by": r["solver"]} for r in best.values()]


def solvers_of(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["solver"] for r in rows if r["solver"] != BEST))


def median_errors(rows: list[dict]) -> dict[str, float]:
    """Median error over the rows of each solver (inf counts as inf: no mask)."""
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["solver"], []).append(float(r["error"]))
    return {s: float(np.median(v)) for s, v in by.items()}


def curves(rows: list[dict]) -> dict:
    """{dim: {"ns": [...], solver: {n: median error}, "floor": {n: median}, "empty": {n: median},
    "reference": {n: median of min(floor, ||z||_inf)}, "relative": {solver: {n: median of error / ||z||_inf}}}}."""
    out: dict = {}
    for dim in sorted({int(r["dim"]) for r in rows}):
        rd = [r for r in rows if int(r["dim"]) == dim]
        ns = sorted({int(r["n"]) for r in rd})
        c = {"ns": ns, "floor": {}, "empty": {}, "reference": {}, "relative": {}, "solvers": {}}
        for n in ns:
            inst = {}
            for r in rd:
                if int(r["n"]) == n:
                    inst[int(r["repeat"])] = r
            fl = [float(r["floor"]) for r in inst.values()]
            em = [float(r["empty_error"]) for r in inst.values()]
            c["floor"][n] = float(np.median(fl))
            c["empty"][n] = float(np.median(em))
            c["reference"][n] = float(np.median(np.minimum(fl, em)))
            for s in dict.fromkeys(r["solver"] for r in rd if int(r["n"]) == n):
                errs = [float(r["error"]) for r in rd if int(r["n"]) == n and r["solver"] == s]
                rel = [float(r["error"]) / float(r["empty_error"]) for r in rd if int(r["n"]) == n and r["solver"] == s]
                c["solvers"].setdefault(s, {})[n] = float(np.median(errs))
                c["relative"].setdefault(s, {})[n] = float(np.median(rel))
        out[dim] = c
    return out


# ----------------------------------------------------------------------------- n needed and fits
def crossing(points: dict[int, float], eps: float) -> dict:
    """The n at which a median-error curve ``{n: error}`` first reaches ``eps``.

    kind ``interpolated``: between the last n above eps and the first at or below it, log n interpolated
    linearly in log error; ``at_first_n``: the sweep's first n already reaches it (an upper bound);
    ``not_reached``: no n of the sweep does (``n`` = the largest n tried, a lower bound)."""
    ns = sorted(points)
    if not ns:
        return {"n": None, "first_n": None, "kind": "not_reached"}
    for i, n in enumerate(ns):
        e = points[n]
        if e <= eps:
            if i == 0:
                return {"n": float(n), "first_n": n, "kind": "at_first_n"}
            n0, e0 = ns[i - 1], points[ns[i - 1]]
            if not math.isfinite(e0):
                return {"n": float(n), "first_n": n, "kind": "interpolated"}
            le0, le1, lt = math.log(e0), math.log(max(e, 1e-300)), math.log(eps)
            t = (le0 - lt) / (le0 - le1) if le0 > le1 else 1.0
            ln = math.log(n0) + t * (math.log(n) - math.log(n0))
            return {"n": float(math.exp(ln)), "first_n": n, "kind": "interpolated"}
    return {"n": float(ns[-1]), "first_n": None, "kind": "not_reached"}


def loglog_fit(points: list[tuple[float, float]]) -> dict | None:
    """Least squares of log n = log a + b log dim over ``[(dim, n), ...]``; None with fewer than two dims."""
    pts = [(float(d), float(n)) for d, n in points if n and n > 0]
    if len({d for d, _ in pts}) < 2:
        return None
    x = np.log([d for d, _ in pts])
    y = np.log([n for _, n in pts])
    b, loga = np.polyfit(x, y, 1)
    resid = y - (loga + b * x)
    return {"a": float(math.exp(loga)), "b": float(b), "points": len(pts),
            "rms_log_residual": float(math.sqrt(float(np.mean(resid ** 2))))}


def counting_n(dim: int, eps: float, rho: float) -> float:
    """The n at which the counting estimate reaches eps: n = dim * log2(rho * n / (2 eps)) (fixed point;
    ``rho`` = R / n measured on the instances, R the subset-sum range)."""
    n = float(dim)
    for _ in range(200):
        new = dim * math.log2(max(rho * n / (2.0 * eps), 2.0))
        if abs(new - n) < 1e-9 * max(1.0, n):
            return new
        n = new
    return n


def theory_n(dim: float, eps: float) -> float:
    """Theorem 3's size with C = 1, c0 = l = 1: dim^6 * log^3(dim / eps) (d^12 c^6 = (c d^2)^6)."""
    return float(dim) ** 6 * math.log(float(dim) / eps) ** 3


def theory_exponent(dims, eps: float) -> float:
    """The log-log slope of :func:`theory_n` between the smallest and largest dim (6 plus the log^3's share)."""
    lo, hi = min(dims), max(dims)
    if hi == lo:
        return 6.0
    return math.log(theory_n(hi, eps) / theory_n(lo, eps)) / math.log(hi / lo)


def n_needed(rows: list[dict], eps_levels, rel_levels) -> list[dict]:
    """One record per (criterion, level, solver, dim): the n needed and its kind (see :func:`crossing`);
    absolute levels are marked ``trivial`` where the dim's median ||z||_inf is already <= eps."""
    cv = curves(rows)
    out = []
    for crit, levels in (("abs", eps_levels), ("rel", rel_levels)):
        for eps in levels:
            for dim, c in cv.items():
                empty_all = float(np.median([float(r["empty_error"]) for r in rows if int(r["dim"]) == dim]))
                for s, pts in c["solvers" if crit == "abs" else "relative"].items():
                    cr = crossing(pts, eps)
                    kind = cr["kind"]
                    if crit == "abs" and empty_all <= eps:
                        kind = "trivial"
                    out.append({"criterion": crit, "eps": eps, "solver": s, "dim": dim, "n": cr["n"],
                                "first_n": cr["first_n"], "kind": kind, "n_max": max(pts) if pts else None,
                                "empty_median": empty_all})
    return out


def range_per_candidate(rows: list[dict]) -> dict[int, float]:
    """Per dim: rho = median of R / n over its instances (R ~ rho n; E|Z Z'| = 2 / pi per coordinate, the
    max over dim coordinates adds a little)."""
    rho = {}
    for dim in sorted({int(r["dim"]) for r in rows}):
        seen = {(int(r["n"]), int(r["repeat"])): float(r["range"]) / int(r["n"]) for r in rows if int(r["dim"]) == dim}
        rho[dim] = float(np.median(list(seen.values()))) if seen else 2 / math.pi
    return rho


def fits(needed: list[dict], rows: list[dict]) -> list[dict]:
    """Per (criterion, level, solver): the log-log fit over the interpolated points, the theory's effective
    exponent over the same dims, and the counting estimate's n and fitted exponent over them."""
    rho = range_per_candidate(rows)
    out = []
    keys = list(dict.fromkeys((r["criterion"], r["eps"], r["solver"]) for r in needed))
    for crit, eps, s in keys:
        recs = [r for r in needed if (r["criterion"], r["eps"], r["solver"]) == (crit, eps, s)]
        used = [(r["dim"], r["n"]) for r in recs if r["kind"] == "interpolated"]
        fit = loglog_fit(used)
        dims_used = sorted(d for d, _ in used)
        rec = {"criterion": crit, "eps": eps, "solver": s, "fit": fit, "dims_used": dims_used,
               "kinds": {r["dim"]: r["kind"] for r in recs}}
        if dims_used:
            # the absolute error level at each dim (relative levels: eps x the dim's median ||z||_inf)
            level = {r["dim"]: eps if crit == "abs" else eps * r["empty_median"] for r in recs}
            cn = [(d, counting_n(d, level[d], rho[d])) for d in dims_used]
            rec["counting_n"] = {str(d): round(n, 1) for d, n in cn}
            cfit = loglog_fit(cn)
            rec["counting_exponent"] = cfit["b"] if cfit else None
            lo, hi = dims_used[0], dims_used[-1]
            rec["theory_exponent"] = (math.log(theory_n(hi, level[hi]) / theory_n(lo, level[lo])) / math.log(hi / lo)
                                      if hi > lo else None)
        out.append(rec)
    return out


def follow_floor(rows: list[dict]) -> dict:
    """Per dim and solver: the n from which on the median error stays above FOLLOW_FACTOR x the median of
    min(floor, ||z||_inf) for every larger n of the solver's sweep (None: within the factor at its largest
    n), and the ratio at the largest n. "From which on" because at the smallest n the estimate itself is
    poor (few subsets, not evenly spread): a solver there is compared with the proven optimum instead."""
    cv = curves(rows)
    out: dict = {}
    for dim, c in cv.items():
        out[str(dim)] = {}
        for s, pts in c["solvers"].items():
            leave = None
            for n in sorted(pts, reverse=True):
                if pts[n] > FOLLOW_FACTOR * c["reference"][n]:
                    leave = n
                else:
                    break
            last = max(pts)
            ratio = pts[last] / c["reference"][last] if c["reference"][last] > 0 else math.inf
            out[str(dim)][s] = {"leaves_at": leave, "n_max": last, "ratio_at_n_max": ratio}
    return out


def exact_vs_floor(rows: list[dict]) -> dict | None:
    """On the instances ``exact`` solved to proven optimality: how the true optimum compares with the
    counting floor (median ratio optimum / floor; share of instances with optimum < floor)."""
    ex = [r for r in rows if r["solver"] == "exact" and r["status"] == "optimal" and float(r["floor"]) > 0]
    if not ex:
        return None
    ratios = np.array([float(r["error"]) / float(r["floor"]) for r in ex])
    inside = np.array([float(r["error"]) / float(r["floor"]) for r in ex if float(r["floor"]) < float(r["empty_error"])])
    per = {}
    for dim in sorted({int(r["dim"]) for r in ex}):
        rr = np.array([float(r["error"]) / float(r["floor"]) for r in ex if int(r["dim"]) == dim])
        per[str(dim)] = {"instances": int(rr.size), "median_ratio": float(np.median(rr)),
                         "share_below_floor": float(np.mean(rr < 1))}
    return {"instances": int(ratios.size), "median_ratio": float(np.median(ratios)),
            "share_below_floor": float(np.mean(ratios < 1)), "per_dim": per,
            "informative_instances": int(inside.size),
            "informative_median_ratio": float(np.median(inside)) if inside.size else None,
            "informative_share_below_floor": float(np.mean(inside < 1)) if inside.size else None}


def status_table(rows: list[dict]) -> dict:
    """Per solver: status counts, watchdog stops, no-mask results, median / max seconds, and what ``auto`` ran."""
    out = {}
    for s in solvers_of(rows):
        rs = [r for r in rows if r["solver"] == s]
        counts: dict[str, int] = {}
        for r in rs:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        secs = [float(r["seconds"]) for r in rs]
        by = {}
        for r in rs:
            by[r.get("solved_by", s)] = by.get(r.get("solved_by", s), 0) + 1
        out[s] = {"solves": len(rs), "statuses": counts, "watchdog": sum(bool(r.get("watchdog")) for r in rs),
                  "no_mask": sum(not math.isfinite(float(r["error"])) for r in rs),
                  "median_seconds": float(np.median(secs)), "max_seconds": float(np.max(secs)), "solved_by": by}
    return out


def analyse(rows: list[dict], config: dict) -> dict:
    """Everything summary.json records beyond the run's own fields."""
    allr = with_best(rows)
    needed = n_needed(allr, config.get("eps", (1e-1, 1e-2)), config.get("rel_eps", (0.1,)))
    cv = curves(allr)
    med = {str(d): {"ns": c["ns"], "floor": c["floor"], "empty": c["empty"], "solvers": c["solvers"]}
           for d, c in cv.items()}
    return {"medians": med, "rho": range_per_candidate(rows), "n_needed": needed, "fits": fits(needed, allr), "follow_floor": follow_floor(allr),
            "exact_vs_floor": exact_vs_floor(rows), "status": status_table(rows)}


# ----------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_error_vs_n(rows: list[dict], config: dict, out: Path) -> None:
    plt = _plt()
    cv = curves(rows)
    dims = sorted(cv)
    ncols = min(3, len(dims))
    nrows = math.ceil(len(dims) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.9 * nrows), squeeze=False)
    solvers = solvers_of(rows)
    finite = [float(r["error"]) for r in rows if math.isfinite(float(r["error"])) and float(r["error"]) > 0]
    ylo = max(min(finite) / 3, 1e-12) if finite else 1e-12
    ns_all = sorted({int(r["n"]) for r in rows})
    for ax in axes.flat[len(dims):]:
        ax.set_visible(False)
    for ax, dim in zip(axes.flat, dims):
        c = cv[dim]
        ns = c["ns"]
        for s in solvers:
            pts = c["solvers"].get(s, {})
            xs = [n for n in sorted(pts) if math.isfinite(pts[n]) and pts[n] > 0]
            if xs:
                ax.loglog(xs, [pts[n] for n in xs], "-", marker=MARKERS.get(s, "o"), ms=5 if s != "exact" else 9,
                          color=COLORS.get(s), lw=1.3, alpha=0.9,
                          label=f"{s} (median" + (f", n <= {config.get('exact_max_n')})" if s == "exact" else ")"))
        ax.loglog(ns, [max(c["floor"][n], 1e-300) for n in ns], "--", color="k", lw=1.4,
                  label="counting floor R 2^(-n/dim)/2 (estimate, median)")
        ax.loglog(ns, [c["empty"][n] for n in ns], ":", color="0.45", lw=1.6, label="empty mask ||z||_inf (median)")
        for e in config.get("eps", ()):
            ax.axhline(e, color="0.75", lw=0.7, zorder=0)
        ax.set_ylim(ylo, 10.0)
        ax.set_xlim(min(ns_all) / 1.3, max(ns_all) * 1.3)
        ax.set_xscale("log", base=2)
        ax.set_title(f"dim = c1 d^2 = {dim} ({DIM_ORIGIN.get(dim, '')})", fontsize=10)
        ax.set_xlabel("n (NSN candidates per instance)")
        ax.set_ylabel("max-norm error")
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat[1:len(dims)]:  # a solver may be missing from the first panel
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    norm = "||z||_1 = 1" if config.get("radius", "one") == "one" else "||z||_1 ~ U[0, 1]"
    fig.suptitle(f"MRSS of one filter (Lemma 12), NSN candidates, random targets {norm}: error vs n, "
                 f"{config.get('time_limit', '?')} s per instance per solver, median of {config.get('repeats', '?')}",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.045 + 0.02 * math.ceil(len(labels) / 4), 1, 0.97))
    save_figure(fig, out, "error_vs_n")


def plot_n_needed(analysis: dict, config: dict, out: Path) -> None:
    plt = _plt()
    needed = analysis["n_needed"]
    fit_of = {(f["criterion"], f["eps"], f["solver"]): f for f in analysis["fits"]}
    panels = list(dict.fromkeys((r["criterion"], r["eps"]) for r in needed))
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 5.0), squeeze=False)
    dims = sorted({r["dim"] for r in needed})
    xs = np.geomspace(min(dims), max(dims), 50)
    for ax, (crit, eps) in zip(axes[0], panels):
        recs = [r for r in needed if (r["criterion"], r["eps"]) == (crit, eps)]
        ys_all = []
        names = list(dict.fromkeys(r["solver"] for r in recs))
        for i, s in enumerate(names):
            rs = [r for r in recs if r["solver"] == s]
            col, mk = COLORS.get(s), MARKERS.get(s, "o")
            shift = 1.0 + 0.035 * (i - (len(names) - 1) / 2)  # side by side, so equal points stay visible
            got = [r for r in rs if r["kind"] == "interpolated"]
            fr = fit_of.get((crit, eps, s), {})
            f = fr.get("fit")
            lab = s + (f": b = {f['b']:.2f} (dims {','.join(map(str, fr['dims_used']))})" if f else ": no fit")
            ax.loglog([r["dim"] * shift for r in got], [r["n"] for r in got], mk, color=col,
                      ms=8 if s != "exact" else 11, label=lab, alpha=0.85)
            ys_all += [r["n"] for r in got]
            for r in rs:
                if r["kind"] == "not_reached" and r["n"]:
                    ax.loglog(r["dim"] * shift, r["n"], "^", mfc="none", color=col, ms=8, alpha=0.7)
                elif r["kind"] == "at_first_n" and r["n"]:
                    ax.loglog(r["dim"] * shift, r["n"], "v", mfc="none", color=col, ms=8, alpha=0.7)
            if f:  # over the dims it was fitted on, not extrapolated
                fx = np.geomspace(min(fr["dims_used"]), max(fr["dims_used"]), 20)
                ax.loglog(fx, f["a"] * fx ** f["b"], "-", color=col, lw=1.1 if s != BEST else 1.8, alpha=0.75)
        rho = analysis.get("rho", {})
        level = {r["dim"]: eps if crit == "abs" else eps * r["empty_median"] for r in recs}
        ys = [counting_n(d, level[d], float(rho.get(d, rho.get(str(d), 2 / math.pi)))) for d in dims]
        ax.loglog(dims, ys, "--", color="k", lw=1.2,
                  label="counting floor: n = dim log2(R / 2 eps)" if crit == "abs" else
                  "counting floor at eps x median ||z||_inf")
        anchor = [r for r in recs if r["solver"] == BEST and r["kind"] == "interpolated"]
        if anchor:
            a0 = min(anchor, key=lambda r: r["dim"])
            ax.loglog(xs, a0["n"] * (xs / a0["dim"]) ** 6, ":", color="0.3", lw=1.4,
                      label="Theorem 3 slope: dim^6 (d^12 c^6)")
        ylo = min(ys_all + [min(config.get("ns", (4,)))]) / 2
        yhi = max(max(config.get("ns", (1024,))) * 2.5, max(ys_all + [1]) * 2)
        ax.set_ylim(ylo, yhi)
        ax.set_xlim(min(dims) / 1.4, max(dims) * 1.4)
        what = f"error <= {eps:g}" if crit == "abs" else f"error <= {eps:g} x ||z||_inf"
        ax.set_title(f"n needed for median {what}", fontsize=10)
        ax.set_xlabel("dim = c1 d^2")
        ax.set_ylabel("n (candidates per instance)")
        ax.grid(True, which="major", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("n needed against dimension (filled: interpolated crossing; open ^: not reached by the largest n "
                 "(lower bound); open v: reached at the first n (upper bound))", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, "n_needed_vs_dim")


# ----------------------------------------------------------------------------- report
def _fmt(x, spec=".2e") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return "inf"
    return format(x, spec)


def _needed_cell(r: dict) -> str:
    if r["kind"] == "trivial":
        return "trivial"
    if r["kind"] == "not_reached":
        return f"> {r['n_max']}"
    if r["kind"] == "at_first_n":
        return f"<= {int(r['n'])}"
    return f"{r['n']:.0f}"


def report_lines(rows: list[dict], summary: dict, out: Path) -> list[str]:
    cfg = summary.get("config", {})
    an = summary["analysis"]
    solvers = solvers_of(rows)
    dims = sorted({int(r["dim"]) for r in rows})
    tl = cfg.get("time_limit")
    lines = ["# Structured SLTH (NeurIPS 2023, Theorem 3) on random targets: MRSS error against n (issue 12, "
             "experiment (a))", "",
             f"Command: `{summary.get('command', '')}`", "",
             f"Machine: {summary.get('machine', '')}; wall {summary.get('wall_seconds', 0):.0f} s "
             f"({summary.get('wall_seconds', 0) / 60:.1f} min) with {summary.get('n_jobs', '?')} worker processes; "
             f"config key `{summary.get('config_key', '')}`.", "",
             "## What is measured", "",
             "Lemma 12's proof reduces one filter of Theorem 3 to an MRSS instance: for input channel t0, the "
             "candidates are U[:, k] * V[t0, k] for the k of t0's positive half-block with V[t0, k] > 0 (NSN vectors, "
             "Definition 4 / Lemma 18) of dimension dim = c1 d^2, and the target is K[:, t0] flattened with "
             "||K[:, t0]||_1 <= 1. This study samples exactly that distribution: per (dim, n, repeat), "
             "`rng = np.random.default_rng([seed, dim, n, repeat])`, candidates `nsn(rng, n, dim)`, target "
             "z = u / ||u||_1 * r with u ~ N(0, I) and " + ("r = 1 (the boundary of the theorem's ||K[:, t0]||_1 <= 1)"
             if cfg.get("radius", "one") == "one" else "r ~ U[0, 1]") + " (a fresh target for every n). **n is the number "
             "of candidates of one instance** (m = n); a network of Theorem 3 offers about n/2 such candidates per "
             "half-block of n channels (only V > 0 survives), so it needs about 2n channels per input channel "
             "and sign for the same n here. No cardinality constraint.", "",
             f"dims = {', '.join(f'{d} ({DIM_ORIGIN.get(d, chr(63))})' for d in dims)}; n = "
             f"{', '.join(map(str, cfg.get('ns', [])))} (a dimension's sweep stops after the first n at which every "
             f"solver's median error is <= {cfg.get('stop_error')}); {cfg.get('repeats')} repeats per point; seed "
             f"{cfg.get('seed')}.", "",
             f"Solvers, **{tl:g} s per instance** (one thread each, {summary.get('n_jobs', '?')} worker processes): "
             f"{', '.join(solvers)}; `exact` (full enumeration, proven optimum) only for n <= {cfg.get('exact_max_n')}. "
             "`auto` enumerates exactly where 2^n dim <= 2^24 and otherwise runs the heuristic for a quarter of the "
             "budget then HiGHS warm-started from it. Every error is ||z - sum_i mask_i X_i||_inf recomputed in "
             "float64 from the returned 0/1 mask. `best` = the smallest error any solver found on the instance.", "",
             "**Counting floor** (dashed in the figure): R 2^(-n/dim) / 2 with R = max over coordinates of the range "
             "of subset sums (sum of positive parts minus sum of negative parts). It says what 2^n evenly spread "
             "sums would leave in the box of side R; it is a counting *estimate*, not a lower bound (the sums "
             "are not evenly spread, the target is near the origin, and for small n the empty mask (dotted, "
             "||z||_inf) is already below it).", ""]
    # medians table
    lines += ["## Median error per point", "",
              "| dim | n | " + " | ".join(solvers) + " | best | floor | empty mask |",
              "|---|---|" + "---|" * (len(solvers) + 3)]
    med = an["medians"]
    for d in dims:
        m = med[str(d)]
        for n in m["ns"]:
            cells = [_fmt(m["solvers"].get(s, {}).get(n, m["solvers"].get(s, {}).get(str(n)))) for s in solvers]
            get = lambda key: m[key].get(n, m[key].get(str(n)))  # noqa: E731 (JSON turns keys into strings)
            bst = m["solvers"].get(BEST, {})
            lines.append(f"| {d} | {n} | " + " | ".join(cells) + f" | {_fmt(bst.get(n, bst.get(str(n))))} | "
                         f"{_fmt(get('floor'))} | {_fmt(get('empty'))} |")
    # n needed and fits
    lines += ["", "## n needed for eps, and the fitted exponent b of n ~ a dim^b", "",
              "Per solver, the median over repeats at each n; the crossing is interpolated log-log between the "
              "last n above eps and the first at or below it. `<= n`: reached at the first n of the sweep (an upper "
              "bound); `> n`: not reached by the largest n tried (a lower bound); `trivial`: the dimension's median "
              "empty-mask error ||z||_inf is already <= eps (with ||z||_1 <= 1, ||z||_inf shrinks roughly like 1/dim). "
              "Only interpolated points enter the fit.", ""]
    needed = an["n_needed"]
    panels = list(dict.fromkeys((r["criterion"], r["eps"]) for r in needed))
    fit_of = {(f["criterion"], f["eps"], f["solver"]): f for f in an["fits"]}
    for crit, eps in panels:
        what = f"median error <= {eps:g}" if crit == "abs" else f"median of error / ||z||_inf <= {eps:g}"
        recs = [r for r in needed if (r["criterion"], r["eps"]) == (crit, eps)]
        ss = list(dict.fromkeys(r["solver"] for r in recs))
        lines += [f"### {what}", "", "| solver | " + " | ".join(f"dim {d}" for d in dims) + " | fit b | fit a | dims in fit |",
                  "|---|" + "---|" * (len(dims) + 3)]
        for s in ss:
            by = {r["dim"]: r for r in recs if r["solver"] == s}
            f = fit_of.get((crit, eps, s), {})
            fit = f.get("fit")
            lines.append(f"| {s} | " + " | ".join(_needed_cell(by[d]) if d in by else "-" for d in dims) +
                         f" | {_fmt(fit['b'], '.2f') if fit else '-'} | {_fmt(fit['a'], '.3g') if fit else '-'} | "
                         f"{','.join(map(str, f.get('dims_used', []))) or '-'} |")
        bf = fit_of.get((crit, eps, BEST), {})
        if bf.get("dims_used"):
            lines += ["", f"Over the dims of `best`'s fit ({', '.join(map(str, bf['dims_used']))}): the counting "
                      f"floor needs n = {', '.join(f'{v:.0f}' for v in bf['counting_n'].values())} (fitted exponent "
                      f"{_fmt(bf.get('counting_exponent'), '.2f')}); Theorem 3's dim^6 log^3(dim/eps) has effective "
                      f"exponent {_fmt(bf.get('theory_exponent'), '.2f')} over the same range"
                      + ("" if crit == "abs" else " (both at the absolute level eps x the dim's median ||z||_inf)") + "."]
        lines.append("")
    # theory
    lines += ["## Against Theorem 3", "",
              "Theorem 3 (and Lemma 12) ask n >= C d^12 c^6 log^3(d^2 c c0 l / eps) per layer. The MRSS dimension of "
              "one filter is dim = c1 d^2, so d^12 c1^6 = (c1 d^2)^6 = dim^6: **the theorem's exponent in dim is 6**, "
              "plus log^3(dim c0 l / eps) (c0 and l only enter the logarithm). The 6 comes from Theorem 5 "
              "(k >= C dim^3 log(dim/eps) items per subset and n >= k^2 candidates), amplified by Corollary 19's "
              "log(1/eps). The counting floor R 2^(-n/dim)/2 <= eps with R ~ rho n gives n = dim log2(rho n / 2 eps): "
              "exponent 1 in dim up to the logarithm. Measured exponents (fit of `best`, and of each solver, above):", ""]
    for crit, eps in panels:
        bf = fit_of.get((crit, eps, BEST), {})
        fit = bf.get("fit")
        what = f"eps = {eps:g}" if crit == "abs" else f"error <= {eps:g} ||z||_inf"
        if fit:
            lines.append(f"- {what}: b = {fit['b']:.2f} over dims {', '.join(map(str, bf['dims_used']))} "
                         f"({fit['points']} points, rms log residual {fit['rms_log_residual']:.2f}); theory 6"
                         + (f" (effective {bf['theory_exponent']:.2f} with its log^3 over these dims)" if bf.get('theory_exponent') else "")
                         + (f"; counting floor {bf['counting_exponent']:.2f}" if bf.get('counting_exponent') is not None else "") + ".")
        else:
            kinds = bf.get("kinds", {})
            lines.append(f"- {what}: no fit (fewer than two dims with an interpolated crossing; kinds per dim: "
                         f"{', '.join(f'{d}: {k}' for d, k in kinds.items())}).")
    # follow floor
    lines += ["", "## Where the solvers stop following the counting floor", "",
              f"The n from which on a solver's median error stays above {FOLLOW_FACTOR:g} x the median of min(floor, "
              "||z||_inf) at every larger n of its sweep (the empty mask is always available, so the reference is the "
              "smaller of the two); `-`: within the factor at its largest n. In brackets: error / reference at the "
              "largest n (below 1: better than the estimate).", "",
              "| dim | " + " | ".join(solvers + [BEST]) + " |", "|---|" + "---|" * (len(solvers) + 1)]
    ff = an["follow_floor"]
    for d in dims:
        cells = []
        for s in solvers + [BEST]:
            v = ff.get(str(d), {}).get(s)
            if v is None:
                cells.append("")
            else:
                cells.append(f"{v['leaves_at'] if v['leaves_at'] is not None else '-'} "
                             f"(x{_fmt(v['ratio_at_n_max'], '.2g')} at n = {v['n_max']})")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    ev = an.get("exact_vs_floor")
    if ev:
        lines += ["", f"Sanity check of the estimate against proven optima (`exact`, n <= {cfg.get('exact_max_n')}, "
                  f"{ev['instances']} instances): median optimum / floor = {ev['median_ratio']:.3g}; the optimum is below "
                  f"the floor on {100 * ev['share_below_floor']:.0f}% of them. Per dim: " +
                  "; ".join(f"{d}: {v['median_ratio']:.3g} ({100 * v['share_below_floor']:.0f}% below)"
                            for d, v in ev["per_dim"].items()) + "."]
        if ev.get("informative_instances"):
            lines += ["", f"Restricted to the {ev['informative_instances']} of them where the floor is below ||z||_inf "
                      f"(where the estimate says anything): median optimum / floor = "
                      f"{ev['informative_median_ratio']:.3g}, optimum below the floor on "
                      f"{100 * ev['informative_share_below_floor']:.0f}%."]
    # statuses
    lines += ["", "## Solver statuses and times", "",
              "| solver | solves | statuses | no mask | watchdog stops | median s | max s | ran as |",
              "|---|---|---|---|---|---|---|---|"]
    for s, v in an["status"].items():
        lines.append(f"| {s} | {v['solves']} | {', '.join(f'{k} {c}' for k, c in v['statuses'].items())} | {v['no_mask']} "
                     f"| {v['watchdog']} | {v['median_seconds']:.2f} | {v['max_seconds']:.2f} | "
                     f"{', '.join(f'{k} {c}' for k, c in v['solved_by'].items())} |")
    wd = sum(v["watchdog"] for v in an["status"].values())
    if wd:
        lines += ["", f"{wd} solve(s) ignored the {tl:g} s limit and were stopped by the batch engine's watchdog (after "
                  "2 x limit + 60 s; error inf, status time_limit, not stored). They count as no mask (error inf) in the "
                  "medians."]
    lines += ["", "## Honest statements", ""] + honest(rows, summary)
    lines += verification_lines(summary)
    runs = runs_markdown(out)
    if runs:
        lines += ["", "## Runs that wrote this folder (oldest first; from runs.jsonl)", "", *runs]
    lines += ["", "![error against n](error_vs_n.png)", "", "![n needed against dim](n_needed_vs_dim.png)", ""]
    return lines


def honest(rows: list[dict], summary: dict) -> list[str]:
    """Statements computed from the data (no number typed by hand)."""
    an = summary["analysis"]
    cfg = summary.get("config", {})
    med = an["medians"]
    out = []
    dims = sorted(int(d) for d in med)
    # how far below the empty mask does best get at the largest n of each dim
    parts = []
    for d in dims:
        m = med[str(d)]
        n = max(m["ns"])
        bst = m["solvers"].get(BEST, {})
        b = bst.get(n, bst.get(str(n)))
        e = m["empty"].get(n, m["empty"].get(str(n)))
        f = m["floor"].get(n, m["floor"].get(str(n)))
        parts.append(f"dim {d} at n = {n}: best {_fmt(b)} vs empty mask {_fmt(e)} (x{_fmt(e / b if b else math.inf, '.2g')}) "
                     f"vs floor {_fmt(f)}")
    out.append("- Largest n of each dimension's sweep (medians): " + "; ".join(parts) + ".")
    ff = an["follow_floor"]
    limited = [d for d in dims if (ff.get(str(d), {}).get(BEST) or {}).get("leaves_at") is not None]
    on_floor = [d for d in dims if d not in limited]
    if limited:
        out.append(f"- Search-limited, not n-limited: at dims {', '.join(map(str, limited))} the best mask of any solver "
                   f"stays more than {FOLLOW_FACTOR:g}x above min(counting floor, ||z||_inf) from n = "
                   + ", ".join(f"{ff[str(d)][BEST]['leaves_at']} (dim {d})" for d in limited)
                   + " on, up to the largest n: the candidates would (by the estimate) allow far smaller errors than "
                   "the solvers find in the budget." + (f" At dim{'s' if len(on_floor) > 1 else ''} {', '.join(map(str, on_floor))} the best mask stays "
                                                         "within that factor over the sweep." if on_floor else ""))
    best_fits = [f for f in an["fits"] if f["solver"] == BEST and f.get("fit")]
    if best_fits:
        txt = "; ".join(f"{'eps' if f['criterion'] == 'abs' else 'relative eps'} {f['eps']:g}: b = {f['fit']['b']:.2f} "
                        f"over dims {','.join(map(str, f['dims_used']))}"
                        + (f" (counting floor {f['counting_exponent']:.2f}, Theorem 3 effective "
                           f"{f['theory_exponent']:.2f})" if f.get("counting_exponent") is not None
                           and f.get("theory_exponent") is not None else "")
                        for f in best_fits)
        out.append(f"- Fitted exponents of `best`: {txt}. The n measured at a dim is what these solvers needed, an "
                   "upper bound on what an optimal search needs there (at the dims and n where `exact` ran it is the "
                   "optimum's); so where the fit's smallest dims are exact, the true growth over this range is at most "
                   "about this steep. "
                   + (f"Every fitted b is at most {max(f['fit']['b'] for f in best_fits):.2f}, far from the theorem's 6: "
                      "over these small dimensions the measured n grows about like the counting floor, not like dim^6."
                      if max(f["fit"]["b"] for f in best_fits) < 3 else
                      "Some fitted b reach 3 or more; compare them with the theorem's 6 and the floor's above."))
    out.append("- Different quantities: Theorem 3 bounds the n for which, with probability 1 - eps, *every* target with "
               "||K[:, t0]||_1 <= 1 is approximated at once; this study measures the *median* over random targets and "
               "draws. A typical-case n is expected to be smaller; the comparison is of growth rates only.")
    out.append(f"- Every number is at a fixed budget of {cfg.get('time_limit'):g} s per instance and solver; above "
               f"n = {cfg.get('exact_max_n')} nothing is proven, so the curves are what these solvers reach in that "
               "time, an upper bound on the best achievable error, not the optimum. Where a curve sits orders of "
               "magnitude above the counting floor, the solver (or the budget), not n, is the limit.")
    out.append("- The counting floor is an estimate, not a bound: where `exact` proves the optimum it can lie on "
               "either side of it (see the sanity check above).")
    out.append("- Targets are redrawn for every n (seed [seed, dim, n, repeat])"
               + (" and r ~ U[0, 1] scales ||z||_inf" if cfg.get("radius") == "uniform" else "")
               + f", so medians of {cfg.get('repeats')} repeats are noisy from one n to the next; crossings are "
               "interpolated between powers of two and the fits rest on few dimensions (see `dims in fit`).")
    out.append("- With ||z||_1 <= 1 the empty mask already has error ||z||_inf ~ sqrt(2 ln dim) / (0.8 dim) for a "
               "Gaussian direction, so at large dim a fixed "
               "absolute eps is met without choosing anything (`trivial`); the relative criterion (error <= eps "
               "||z||_inf) asks for a real improvement over the empty mask at every dim.")
    out.append("- Theorem 3's constant C is not known, so only its exponent is compared: the dotted slope-6 line in "
               "`n_needed_vs_dim` is anchored at `best`'s first fitted point, not an absolute prediction.")
    return out


def verification_lines(summary: dict) -> list[str]:
    """The four numbers of the section's tickets (``summary["verification"]``), or nothing."""
    from .four_numbers import section

    ver = summary.get("verification") or []
    if not ver:
        return []
    cfg = summary.get("config", {})
    what = ("The instances above are single filters; these are whole tickets of the same theorem: the structured "
            "construction (`pipelines.constructions.structured`, NeurIPS 2023 Theorem 3, `domain=\"signed\"`: inputs "
            "in [-1, 1], both half-blocks, normal samples, solver auto) of small random targets with max_t0 "
            "||K[:, t0]||_1 = 1 per conv (biases: PyTorch's default init / 4; filter dimensions c1 d^2 = 2 and 9, the "
            "small end of the sweep), at n = " + ", ".join(str(n) for n in cfg.get("verify_ns", [])) + " channels per "
            f"half-block; empirical over {cfg.get('verify_points', '?')} uniform points of the box.")
    settings = {k: cfg.get(f"verify_{k}") for k in ("attack_rounds", "attack_time", "time_limit", "milp_total")}
    return ["", *section(ver, "target, n", [f"{r['target']} ({r['layers']}), n = {r['n']}" for r in ver], what,
                         settings, summary.get("verification_run"))]


def write_all(rows: list[dict], summary: dict, out) -> dict:
    """results.csv, summary.json (with the analysis), the two figures (PNG+PDF) and report.md; returns the summary."""
    out = Path(out)
    rows = [_typed(r) for r in rows]
    atomic_write_csv(out / "results.csv", rows, COLUMNS, extrasaction="ignore")
    cfg = summary.get("config", {})
    summary = {**summary, "analysis": analyse(rows, cfg)}
    atomic_write_json(out / "summary.json", summary, default=str)
    plot_error_vs_n(rows, cfg, out)
    plot_n_needed(summary["analysis"], cfg, out)
    atomic_write_text(out / "report.md", "\n".join(report_lines(rows, summary, out)))
    return summary


def rewrite(out) -> None:
    """Redraws the figures and rewrites summary.json / report.md from results.csv and summary.json."""
    out = Path(out)
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("analysis", None)
    write_all(read_rows(out / "results.csv"), summary, out)
