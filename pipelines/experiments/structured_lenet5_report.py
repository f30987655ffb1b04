"""results.csv, instances.csv, figures (PNG+PDF), summary.json and report.md of the structured LeNet5 study
(experiment (b) of issue 12). Never imports the experiment module: everything comes from the rows."""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..reporting import atomic_write_csv, atomic_write_json, atomic_write_text, save_figure
from .base import runs_markdown

LABEL = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
#: the two blockings of the structured construction: row label, colour, name in figures and text
VARIANTS = (("structured", "C0", "structured (Thm 3, per input channel)"),
            ("structured-pair", "C2", "structured per (in, out) pair"))
NAMES = {"structured": "structured (Theorem 3)", "structured-pair": "structured per channel pair"}
COLUMNS = ["dataset", "construction", "n", "matches", "solver", "time_limit", "lambdas", "target_parameters",
           "random_parameters", "kept_parameters", "kept_target_bias", "kept_channels", "macs", "macs_nonzero",
           "per_image_rel", "global_rel", "empirical_abs", "adversarial_abs", "adversarial_rel", "certified_abs",
           "certified_rel", "ordered", "test_accuracy", "target_test_accuracy", "stitch", "instances",
           "max_residual", "unreachable", "max_residual_reachable", "max_empty", "max_floor_box", "max_floor_density",
           "output_ratio", "statuses"]
TAIL = ["latency_notes", "load_average", "solve_seconds", "verify_seconds"]
INSTANCE_COLUMNS = ["dataset", "construction", "n", "layer", "kind", "channel", "output", "m", "dim", "lambda", "target_l1", "empty", "range",
                    "floor_box", "floor_density", "residual", "lower_bound", "best_solver", "status", "selected"]


# ----------------------------------------------------------------------------- helpers
def _f(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def nanmax(values) -> float:
    """max of the non-NaN values (NaN when there is none)."""
    vals = [v for v in (_f(x) for x in values) if v == v]
    return max(vals) if vals else math.nan


def nanmin(values) -> float:
    vals = [v for v in (_f(x) for x in values) if v == v]
    return min(vals) if vals else math.nan


def latency_keys(rows) -> list[str]:
    """``latency_b{b}_t{t}_ms`` keys present in the rows, by threads then batch."""
    keys = {k for r in rows for k in r if k.startswith("latency_b") and k.endswith("_ms")}

    def order(k):
        b, t = k[len("latency_b"):-len("_ms")].split("_t")
        return int(t), int(b)

    return sorted(keys, key=order)


def _lat_label(key: str) -> str:
    b, t = key[len("latency_b"):-len("_ms")].split("_t")
    return f"batch {b}, {t} thr"


def solver_names(instances) -> list[str]:
    return sorted({k[len("residual_"):] for r in instances for k in r if k.startswith("residual_")})


def pts(rows, ds: str, construction: str) -> list[dict]:
    return sorted((r for r in rows if r["dataset"] == ds and r["construction"] == construction), key=lambda r: int(r["n"]))


def target_row(rows, ds: str) -> dict | None:
    return next((r for r in rows if r["dataset"] == ds and r["construction"] == "target"), None)


def first_below(rows, ds: str, level: float, cons: str = "structured") -> dict | None:
    """The first structured n whose empirical (per image) AND adversarial relative errors are <= level."""
    for r in pts(rows, ds, cons):
        if _f(r["per_image_rel"]) <= level and _f(r["adversarial_rel"]) <= level:
            return r
    return None


def best_structured(rows, ds: str, cons: str = "structured") -> dict | None:
    """The structured row of lowest empirical error (the smaller n on a tie)."""
    s = pts(rows, ds, cons)
    return min(s, key=lambda r: (_f(r["per_image_rel"]), int(r["n"]))) if s else None


def similar_error(rows, ds: str, ref: dict) -> dict | None:
    """The ICLR row whose empirical relative error is closest to ``ref``'s in log scale."""
    iclr = pts(rows, ds, "iclr")
    if not iclr or ref is None:
        return None
    e = max(_f(ref["per_image_rel"]), 1e-300)
    return min(iclr, key=lambda r: (abs(math.log(max(_f(r["per_image_rel"]), 1e-300) / e)), int(r["n"])))


def matched(rows, ds: str, what: str, n, cons: str = "structured") -> dict | None:
    """The ICLR row matched to structured ``n`` by ``what`` (random / kept)."""
    tag = f"{'pair' if cons == 'structured-pair' else ''}{what}@{n}"
    return next((r for r in pts(rows, ds, "iclr") if tag in str(r.get("matches", "")).split(";")), None)


def floor_estimate(rec: dict) -> float:
    """What counting allows for one instance: the first-moment estimate, never above ||z||_inf (the empty
    subset always achieves ||z||_inf)."""
    return min(_f(rec["floor_density"]), _f(rec["empty"]))


def verdict(rec: dict) -> str:
    """Why one instance's residual is what it is (estimates, module docstring of the experiment)."""
    res, empty, fl = _f(rec["residual"]), _f(rec["empty"]), floor_estimate(rec)
    if rec.get("status") == "optimal":
        return "n (proven optimum)"
    if _f(rec["floor_density"]) >= 0.5 * empty:
        return "n (counting: no subset expected much below ||z||)"
    if res <= 3 * fl:
        return "at the counting estimate"
    return f"solver ({res / fl:.0f}x the estimate)" if fl > 0 else "solver"


def layer_groups(instances, ds: str, cons: str = "structured") -> dict[tuple[int, int], list[dict]]:
    out: dict[tuple[int, int], list[dict]] = {}
    for r in instances:
        if r["dataset"] == ds and r.get("construction", "structured") == cons:
            out.setdefault((int(r["n"]), int(r["layer"])), []).append(r)
    return dict(sorted(out.items()))


# ----------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_errors(rows, out: Path, level: float) -> None:
    plt = _plt()
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(len(datasets), 3, figsize=(15, 4.2 * len(datasets)), squeeze=False)
    for i, ds in enumerate(datasets):
        groups = [(pts(rows, ds, cons), color, name, (("per_image_rel", "-", "o", "per image"),
                                                      ("global_rel", ":", "x", "global"),
                                                      ("adversarial_rel", "--", "s", "adversarial")))
                  for cons, color, name in VARIANTS]
        groups.append((pts(rows, ds, "iclr"), "C1", "ICLR", (("per_image_rel", "-", "o", "per image"),
                                                             ("adversarial_rel", "--", "s", "adversarial"))))
        for j, (xkey, xlabel) in enumerate((("n", "n (structured: channels per half-block; ICLR: samples per entry)"),
                                            ("random_parameters", "random parameters of the conv part"),
                                            ("kept_parameters", "kept parameters of the conv part"))):
            ax = axes[i][j]
            for group, color, name, keys in groups:
                if not group:
                    continue
                g = sorted(group, key=lambda r: _f(r[xkey]))
                for key, ls, m, lab in keys:
                    ax.loglog([_f(r[xkey]) for r in g], [max(_f(r[key]), 1e-18) for r in g], ls, color=color,
                              marker=m, ms=4, label=f"{name}: {lab}")
            t = target_row(rows, ds)
            if t is not None and j > 0:
                ax.axvline(_f(t[xkey]), color="k", ls=":", lw=0.8, label="target conv part")
            ax.axhline(level, color="gray", ls="-.", lw=0.8, label=f"{level:g}")
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel("relative conv-output error")
            ax.set_title(f"{LABEL.get(ds, ds)}")
            ax.grid(True, which="both", alpha=0.3)
        axes[i][0].legend(fontsize=6.5)
    fig.suptitle("LeNet5 conv part: structured (NeurIPS 2023) vs unstructured (ICLR 2022) pruned random networks")
    fig.tight_layout()
    save_figure(fig, out, "structured_lenet5_errors")


def plot_accuracy(rows, out: Path) -> None:
    plt = _plt()
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 4 * len(datasets)), squeeze=False)
    for i, ds in enumerate(datasets):
        for j, (xkey, xlabel) in enumerate((("n", "n (structured: channels per half-block; ICLR: samples per entry)"),
                                            ("kept_parameters", "kept parameters of the conv part"))):
            ax = axes[i][j]
            for cons, color, name in VARIANTS + (("iclr", "C1", "ICLR"),):
                g = sorted(pts(rows, ds, cons), key=lambda r: _f(r[xkey]))
                if g:
                    ax.semilogx([_f(r[xkey]) for r in g], [_f(r["test_accuracy"]) for r in g], "-o", ms=4,
                                color=color, label=name)
            t = target_row(rows, ds)
            if t is not None:
                ax.axhline(_f(t["test_accuracy"]), color="k", ls=":", lw=1, label="trained LeNet5")
            ax.axhline(10.0, color="gray", ls="--", lw=0.8, label="chance")
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel("test accuracy (%)")
            ax.set_ylim(0, 100)
            ax.set_title(LABEL.get(ds, ds))
            ax.grid(True, which="both", alpha=0.3)
        axes[i][0].legend(fontsize=7)
    fig.suptitle("LeNet5 with its conv part replaced by the pruned random network (trained classifier kept)")
    fig.tight_layout()
    save_figure(fig, out, "structured_lenet5_accuracy")


def plot_floor(instances, out: Path) -> None:
    if not instances:
        return
    plt = _plt()
    panels = list(dict.fromkeys((r["dataset"], r.get("construction", "structured")) for r in instances))
    layers = sorted({int(r["layer"]) for r in instances})
    solvers = solver_names(instances)
    fig, axes = plt.subplots(len(panels), len(layers), figsize=(6 * len(layers), 4.2 * len(panels)),
                             squeeze=False)
    for i, (ds, cons) in enumerate(panels):
        groups = layer_groups(instances, ds, cons)
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            ns = sorted({n for n, lay in groups if lay == layer})
            g = [groups[(n, layer)] for n in ns]
            dims = sorted({int(r["dim"]) for gr in g for r in gr})

            def line(key, fn=nanmax):
                return [fn(_f(r.get(key)) for r in gr) for gr in g]

            ax.loglog(ns, line("empty"), "k:", label="||z||_inf (empty subset)")
            ax.loglog(ns, line("floor_box"), "--", color="C7", label="counting: R 2^(-m/dim)/2")
            ax.loglog(ns, line("floor_density"), "--", color="C2", label="counting: first moment")
            ax.loglog(ns, line("residual"), "-o", color="C3", ms=5, label="achieved (best solver), max")
            if any(len(gr) > 1 for gr in g):
                ax.loglog(ns, line("residual", nanmin), "-", color="C3", alpha=0.35, label="achieved, min")
            for k, s in enumerate(solvers):
                ax.loglog(ns, line(f"residual_{s}"), "x", color=f"C{4 + k}", ms=6, label=f"{s}, max")
            top = max(line("empty")) if g else 1.0
            ax.set_ylim(max(1e-6, nanmin(line("floor_density") + line("residual")) / 3), top * 30)
            ax.set_xlabel("n (channels per half-block)")
            ax.set_ylabel("max-norm kernel residual (target units)")
            ax.set_title(f"{LABEL.get(ds, ds)}, {NAMES.get(cons, cons)}: conv{layer} MRSS (dim "
                         f"{', '.join(map(str, dims))})", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
        axes[i][-1].legend(fontsize=6.5)
    fig.suptitle("Filter-removal MRSS instances: achieved residual vs counting estimates (estimates, not bounds)")
    fig.tight_layout()
    save_figure(fig, out, "structured_lenet5_floor")


def first_iclr(rows, ds: str, level: float | None = None, accuracy_gap: float | None = None) -> dict | None:
    """The ICLR row of smallest n with empirical and adversarial relative error <= ``level``, or with test
    accuracy within ``accuracy_gap`` points of the target's."""
    t = target_row(rows, ds)
    for r in pts(rows, ds, "iclr"):
        if level is not None and _f(r["per_image_rel"]) <= level and _f(r["adversarial_rel"]) <= level:
            return r
        if accuracy_gap is not None and t is not None and _f(r["test_accuracy"]) >= _f(t["test_accuracy"]) - accuracy_gap:
            return r
    return None


def cost_tickets(rows, ds: str, level: float = 1e-2) -> list[tuple[str, dict]]:
    """(label, row) for the cost comparison: the target, the structured ticket at every n, and, against the
    structured ticket of the largest n, the ICLR ticket of similar error, of the same kept and of the same
    random parameters; then the first ICLR n within 1 accuracy point of the target and the first at
    ``level``. A row chosen twice gets both labels."""
    out: list[tuple[str, dict]] = []

    def add(label, r):
        if r is None:
            return
        for k, (lab, row) in enumerate(out):
            if row is r:
                out[k] = (f"{lab} = {label}", row)
                return
        out.append((label, r))

    add("target", target_row(rows, ds))
    for cons, short in (("structured", "structured"), ("structured-pair", "pair")):
        s = pts(rows, ds, cons)
        for r in s:
            add(f"{short} n={r['n']}", r)
        if s:
            last = s[-1]
            for label, r in (("ICLR similar error", similar_error(rows, ds, last)),
                             ("ICLR same kept", matched(rows, ds, "kept", last["n"], cons)),
                             ("ICLR same random", matched(rows, ds, "random", last["n"], cons))):
                if r is not None:
                    add(f"{label} as {short} n={last['n']} (ICLR n={r['n']})", r)
    r = first_iclr(rows, ds, accuracy_gap=1.0)
    if r is not None:
        add(f"ICLR first within 1 pt accuracy (n={r['n']})", r)
    r = first_iclr(rows, ds, level=level)
    if r is not None:
        add(f"ICLR first at {level:g} (n={r['n']})", r)
    return out


def plot_cost(rows, out: Path, level: float = 1e-2) -> None:
    import numpy as np

    plt = _plt()
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    keys = latency_keys(rows)
    fig, axes = plt.subplots(len(datasets), 3, figsize=(19, 5.6 * len(datasets)), squeeze=False)
    for i, ds in enumerate(datasets):
        tickets = cost_tickets(rows, ds, level)
        labels = [lab for lab, _ in tickets]
        x = np.arange(len(tickets))
        for j, (key, ylabel) in enumerate((("kept_parameters", "kept parameters"), ("macs", "MACs per image (dense)"))):
            ax = axes[i][j]
            vals = [_f(r[key]) for _, r in tickets]
            ax.bar(x, vals, color=[f"C{k}" for k in range(len(tickets))])
            if key == "macs":
                nz = [_f(r.get("macs_nonzero")) for _, r in tickets]
                ax.scatter(x, nz, marker="_", s=400, color="k", zorder=3, label="non-zero MACs")
                ax.legend(fontsize=7)
            ax.set_yscale("log")
            ax.set_xticks(x, labels, rotation=25, ha="right", fontsize=7)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{LABEL.get(ds, ds)}: {ylabel}")
            ax.grid(True, axis="y", which="both", alpha=0.3)
        ax = axes[i][2]
        width = 0.8 / max(1, len(keys))
        for k, key in enumerate(keys):
            vals = [_f(r.get(key)) for _, r in tickets]
            pos = x + (k - (len(keys) - 1) / 2) * width
            ax.bar(pos, [v if v == v else 0 for v in vals], width, label=_lat_label(key))
            for p, v in zip(pos, vals):
                if v != v:
                    ax.text(p, 1e-2, "n/m", rotation=90, ha="center", va="bottom", fontsize=6)
        ax.set_yscale("log")
        ax.set_xticks(x, labels, rotation=25, ha="right", fontsize=7)
        ax.set_ylabel("median latency of the conv part (ms, float32 CPU)")
        ax.set_title(f"{LABEL.get(ds, ds)}: latency (n/m = not measured)")
        ax.legend(fontsize=6.5)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.suptitle("Cost of the compact tickets (conv part only; the classifier is the same for all)")
    fig.tight_layout()
    save_figure(fig, out, "structured_lenet5_cost")


# ----------------------------------------------------------------------------- report
def _e(x) -> str:
    v = _f(x)
    return "n/a" if v != v else f"{v:.2e}"


def _ms(x) -> str:
    v = _f(x)
    return "n/m" if v != v else (f"{v:.3g}")


def _int(x) -> str:
    v = _f(x)
    return "" if v != v else f"{int(v):,}"


def _floor_lines(instances, ds: str, cons: str = "structured") -> list[str]:
    solvers = solver_names(instances)
    head = ("| n | conv | instances | m (min-max) | dim | max ||z||_inf | max floor R2^(-m/dim)/2 | max floor first moment | "
            "max achieved | " + " | ".join(f"max {s}" for s in solvers) + " | best lower bound (min-max) | proven optimal | "
            "limited by |")
    lines = [head, "|" + "---|" * (12 + len(solvers))]
    for (n, layer), g in layer_groups(instances, ds, cons).items():
        ms = [int(r["m"]) for r in g]
        verdicts = {}
        for r in g:
            v = verdict(r)
            key = v.split(" (")[0] if v.startswith("solver") else v
            verdicts[key] = verdicts.get(key, 0) + 1
        ratio = max(_f(r["residual"]) / floor_estimate(r) for r in g if floor_estimate(r) > 0) if any(
            floor_estimate(r) > 0 for r in g) else math.nan
        vtext = ", ".join(f"{k} x{c}" for k, c in verdicts.items())
        if any(verdict(r).startswith("solver") for r in g):
            vtext += f" (worst {ratio:.0f}x the estimate)"
        lines.append(f"| {n} | {layer} | {len(g)} | {min(ms)}-{max(ms)} | {', '.join(sorted({str(r['dim']) for r in g}))} | "
                     f"{max(_f(r['empty']) for r in g):.3f} | {_e(max(_f(r['floor_box']) for r in g))} | "
                     f"{_e(max(_f(r['floor_density']) for r in g))} | {max(_f(r['residual']) for r in g):.3f} | "
                     + " | ".join(_e(nanmax(r.get(f'residual_{s}') for r in g)) for s in solvers)
                     + f" | {_e(nanmin(r.get('lower_bound') for r in g))}-{_e(nanmax(r.get('lower_bound') for r in g))}"
                     + f" | {sum(r.get('status') == 'optimal' for r in g)}/{len(g)} | {vtext} |")
    return lines


def _verdict_summary(g: list[dict]) -> list[str]:
    """The verdicts of a group of instances, each once with its count (solver verdicts with the range of
    their factors over the estimate)."""
    counts: dict[str, int] = {}
    factors = []
    for x in g:
        v = verdict(x)
        if v.startswith("solver"):
            fl = floor_estimate(x)
            if fl > 0:
                factors.append(_f(x["residual"]) / fl)
            v = "solver"
        counts[v] = counts.get(v, 0) + 1
    out = []
    for v, c in sorted(counts.items()):
        text = f"{v} x{c}"
        if v == "solver" and factors:
            text += f" ({min(factors):.3g}-{max(factors):.3g}x the estimate)"
        out.append(text)
    return out


def caveats(rows) -> list[str]:
    """What the numbers of this run depend on besides n (computed from the rows)."""
    out = []
    loads = [_f(r.get("load_average")) for r in rows if _f(r.get("load_average")) == _f(r.get("load_average"))]
    if loads:
        out.append(f"- Machine load (1-min load average per row, 2 cores): {min(loads):.2f}-{max(loads):.2f}. Above 2, "
                   "other jobs shared the cores: solver budgets are wall-clock limits, so a loaded machine gets less "
                   "search per instance, and latencies (medians of few calls) are noisy, especially with 2 threads. "
                   "A rerun takes every solve from the store: the masks (and their solver budgets) are those of the "
                   "run that solved them, under that run's load (the runs table below lists every run with its "
                   "load), while the latencies and timings are the rerun's.")
    starved = [r for r in rows if r["construction"] == "iclr" and "heuristic:time_limit" in str(r.get("statuses", ""))]
    if starved:
        worst = max(starved, key=lambda r: _f(r["per_image_rel"]))
        out.append(f"- ICLR rows above `iclr_exact_max` candidates rely on the heuristic with "
                   f"{_f(worst.get('time_limit')):g} s per entry; {len(starved)} rows have entries that hit that limit. "
                   f"Their error is budget-limited, not n-limited (worst: {LABEL.get(worst['dataset'], worst['dataset'])} "
                   f"n = {worst['n']}, {_e(worst['per_image_rel'])}), so the ICLR curve is not monotone in n here; the "
                   "ICLR construction's own study (results/iclr-lenet5, results/iclr-construction) is its reference.")
    return out


def _statement(rows, instances, ds: str, level: float, cons: str = "structured") -> list[str]:
    s = pts(rows, ds, cons)
    if not s:
        return []
    out = []
    r = first_below(rows, ds, level, cons)
    if r is not None:
        out.append(f"- **{LABEL.get(ds, ds)}, {NAMES[cons]}**: the ticket reaches {level:g} relative conv-output error "
                   f"(empirical and adversarial) first at n = {r['n']} ({_e(r['per_image_rel'])} / "
                   f"{_e(r['adversarial_rel'])}; accuracy {_f(r['test_accuracy']):.2f}%).")
    else:
        b = best_structured(rows, ds, cons)
        out.append(f"- **{LABEL.get(ds, ds)}, {NAMES[cons]}**: the ticket does **not** reach {level:g} relative conv-output "
                   f"error at any n up to {s[-1]['n']}: the best is n = {b['n']} with {_e(b['per_image_rel'])} per "
                   f"image / {_e(b['global_rel'])} global / {_e(b['adversarial_rel'])} adversarial, accuracy "
                   f"{_f(b['test_accuracy']):.2f}% (target {_f(b['target_test_accuracy']):.2f}%).")
    groups = layer_groups(instances, ds, cons)
    for (n, layer), g in groups.items():
        if n != int(s[-1]["n"]) and n != int(s[0]["n"]):
            continue
        res = max(_f(x["residual"]) for x in g)
        emp = max(_f(x["empty"]) for x in g)
        fl = max(floor_estimate(x) for x in g)
        flb = max(min(_f(x["floor_box"]), _f(x["empty"])) for x in g)
        vs = _verdict_summary(g)
        out.append(f"  - n = {n}, conv{layer} ({len(g)} MRSS, m = {min(int(x['m']) for x in g)}-"
                   f"{max(int(x['m']) for x in g)} candidates of dimension {g[0]['dim']}): achieved max residual "
                   f"{res:.3f} against ||z||_inf = {emp:.3f} (the empty subset); counting estimate "
                   f"{fl:.2e} (first moment) / {flb:.2e} (R 2^(-m/dim)/2, capped at ||z||_inf): {'; '.join(vs)}.")
    r = first_iclr(rows, ds, level=level)
    a = first_iclr(rows, ds, accuracy_gap=1.0)
    iclr = pts(rows, ds, "iclr")
    if iclr and cons == "structured":
        out.append(f"  - ICLR beside it: "
                   + (f"first at {level:g} at n = {r['n']} ({_int(r['random_parameters'])} random / "
                      f"{_int(r['kept_parameters'])} kept parameters, {_e(r['per_image_rel'])})" if r is not None
                      else f"no ICLR n up to {iclr[-1]['n']} reaches {level:g}")
                   + (f"; within 1 accuracy point of the target from n = {a['n']} ({_f(a['test_accuracy']):.2f}%, "
                      f"{_int(a['kept_parameters'])} kept)" if a is not None else "")
                   + ". Per ICLR row, `unreachable` counts the entries outside the range of their candidates "
                   "(results.csv: `max_residual_reachable` is the worst residual of the others, exact optima up to "
                   "`iclr_exact_max` candidates).")
    return out


def _row_line(r: dict, lat: list[str]) -> str:
    acc = _f(r["test_accuracy"])
    return (f"| {r['construction']} | {r['n']} | {r.get('matches', '')} | {_int(r['random_parameters'])} | "
            f"{_int(r['kept_parameters'])} | {_int(r['macs'])} | {_int(r.get('macs_nonzero'))} | {_e(r['per_image_rel'])} | "
            f"{_e(r['global_rel'])} | {_e(r['adversarial_rel'])} | {_e(r['certified_rel'])} | {_f(r.get('output_ratio')):.2f} | "
            f"{_int(r.get('unreachable'))} | {acc:.2f} | "
            f"{_e(r['stitch'])} | " + " | ".join(_ms(r.get(k)) for k in lat) + f" | {r.get('statuses', '')} | "
            f"{_f(r.get('solve_seconds')):.0f} |")


def _ratio(a, b) -> str:
    a, b = _f(a), _f(b)
    return "n/m" if a != a or b != b or b <= 0 else f"{a / b:.2g}x"


def _cost_text(rows, ds: str, lat: list[str], level: float, cons: str = "structured") -> list[str]:
    t, s = target_row(rows, ds), pts(rows, ds, cons)
    if t is None or not s:
        return []
    last = s[-1]
    out = []
    keys = [k for k in lat if k.endswith("_t1_ms")] or lat
    lat_text = ", ".join(f"{_ratio(last.get(k), t.get(k))} at {_lat_label(k)}" for k in keys)
    name = NAMES[cons][0].upper() + NAMES[cons][1:]
    out.append(f"- {name}, n = {last['n']}, against the target: {_ratio(last['kept_parameters'], t['kept_parameters'])} "
               f"the parameters, {_ratio(last['macs'], t['macs'])} the MACs, latency {lat_text}; its error "
               f"is {_e(last['per_image_rel'])} per image (accuracy {_f(last['test_accuracy']):.2f}% against "
               f"{_f(t['test_accuracy']):.2f}%)"
               + (f", above {level:g}: it does not stand in for the target." if _f(last["per_image_rel"]) > level
                  else f", within {level:g}."))
    for label, r in (("the ICLR ticket of similar error", similar_error(rows, ds, last)),
                     ("the first ICLR ticket within 1 accuracy point of the target", first_iclr(rows, ds, accuracy_gap=1.0)),
                     (f"the first ICLR ticket at {level:g}", first_iclr(rows, ds, level=level))):
        if r is None:
            continue
        lat_text = ", ".join(f"{_ratio(last.get(k), r.get(k))} at {_lat_label(k)}" for k in keys)
        out.append(f"- {name}, n = {last['n']}, against {label} (n = {r['n']}, {_e(r['per_image_rel'])}, "
                   f"{_f(r['test_accuracy']):.2f}%): {_ratio(last['kept_parameters'], r['kept_parameters'])} the kept "
                   f"parameters, {_ratio(last['macs'], r['macs'])} the dense MACs "
                   f"({_ratio(last['macs_nonzero'], r['macs_nonzero'])} the non-zero ones), latency {lat_text}.")
    return out


def write_all(rows, instances, summary, out) -> dict:
    out = Path(out)
    level = float(summary.get("config", {}).get("level", 1e-2))
    lat = latency_keys(rows)
    solvers = solver_names(instances)
    atomic_write_csv(out / "results.csv", rows, COLUMNS + lat + TAIL, extrasaction="ignore")
    inst_cols = INSTANCE_COLUMNS + [f"{k}_{s}" for s in solvers for k in ("residual", "status", "seconds", "bound")]
    atomic_write_csv(out / "instances.csv", instances, inst_cols, extrasaction="ignore")
    atomic_write_json(out / "summary.json", summary)
    plot_errors(rows, out, level)
    plot_accuracy(rows, out)
    plot_floor(instances, out)
    plot_cost(rows, out, level)
    cfg = summary.get("config", {})
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    lines = ["# Structured (NeurIPS 2023) vs unstructured (ICLR 2022) pruned random networks for LeNet5's conv part",
             "", "Experiments (b) and (c) of issue 12.", "",
             f"Command: `{summary.get('command', '')}`", "",
             f"Machine: {summary.get('machine', '')}; wall {_f(summary.get('wall_seconds')):.0f} s; config key "
             f"`{summary.get('config_key', '')}`; store `{summary.get('store', '')}`.", "",
             "Config: " + ", ".join(f"{k}={v}" for k, v in cfg.items()), "",
             "## What is measured", "",
             f"- **structured**: Theorem 3's network (V 1x1 -> ReLU -> U 5x5 per conv, {cfg.get('dist', 'normal')} "
             f"weights, 2 c0 n hidden channels per block, domain {cfg.get('domain', 'auto')}: both LeNet5 convs see "
             "non-negative inputs, so only positive half-blocks are used: 1 MRSS for conv1 (dimension 6x5x5 = 150) and 6 "
             "for conv2 (16x5x5 = 400), about n/2 candidates each). Each MRSS is solved by "
             f"{' and '.join(cfg.get('solvers', []))} with {cfg.get('time_limit')} s per instance each (one thread, "
             "two worker processes); the smaller residual is kept. Every unselected filter is removed.",
             f"- **structured-pair** (experiment (c), beyond the paper): the same construction with one 2n-block per "
             "(input channel, output channel) pair: 2 c0 c1 n hidden channels, each feeding one output channel (U "
             "is a grouped conv), so every MRSS has dimension 5x5 = 25 (1x6 = 6 instances for conv1, 6x16 = 96 for "
             f"conv2, about n/2 candidates each), solved the same way with {cfg.get('pair_time_limit')} s per "
             "instance and solver (102 instances instead of 7). Still filter removal; the compact export keeps per "
             "output channel only its live hidden channels (padded with zero channels to the largest group). ICLR "
             "`pairkept@n` rows match its kept parameters; there is no random-parameter match for it (its random "
             "count at n is within 25% of the channel variant's).",
             f"- **ICLR**: the unstructured ticket (one 1-D RSS per target weight and bias, 2572 per n, U[-1, 1], no "
             f"scaling); per RSS exact enumeration (proven optimum) up to {cfg.get('iclr_exact_max')} candidates, the "
             f"heuristic with {cfg.get('iclr_time_limit')} s beyond. `unreachable` (results.csv) counts the entries "
             "outside [sum of negative, sum of positive candidates] (no subset reaches them: their residual is "
             "|z| - reach), `max_residual_reachable` the worst residual on the others. Rows: the sweep `iclr_ns`; `random@n` = same random parameters as structured n "
             "(exact, both counts are linear in n); `kept@n` = about the same kept parameters (estimated from the "
             "sweep's kept / n, corrected once).",
             "- errors on the conv part's output (16x7x7) in float64 over the first "
             f"{cfg.get('empirical_images')} test images: **per image** = max over images of max|f-g| / max|f| "
             "(Figure 4's text), **global** = max|f-g| / max|f| over all of them (the authors' code), adversarial = "
             f"projected gradient ascent ({cfg.get('restarts')} random + 4 worst-image starts, {cfg.get('steps')} "
             "steps; a lower bound on the sup) / the same max|f|, certified = an upper bound on [0, 1]^(28x28) / the "
             "same max|f|. Accuracy: the trained classifier on the pruned conv part, full test set.",
             "- errors and accuracy are computed with `construction.effective()` (the target-shaped network of what "
             "the pruned blocks compute on non-negative inputs); `stitch` = max |compact(x) - effective(x)| on "
             f"{cfg.get('stitch_images')} test images (float64): rounding level means the same function.",
             "- **MACs**: multiply-accumulates per image of every Conv2d of the compact network (only the live "
             "channels; dense count out_h*out_w*out_c*in_c*k*k; `nonzero` counts only the non-zero weights, what "
             "unstructured sparsity could save with sparse kernels). **Latency**: median wall time of one float32 "
             "forward of the compact conv part (torch CPU, dense convolutions), after warm-up; n/m = not measured "
             "(too slow or too large, see `latency_notes` in results.csv). Another job may have shared the 2 cores: "
             "`load_average` per row in results.csv.",
             "- **counting estimates** per MRSS (instances.csv; estimates, NOT bounds): `floor_box` = R 2^(-m/dim) / 2 "
             "with R the largest coordinate range of subset sums (2^m sums spread evenly over a box of side R); "
             "`floor_density` = the first-moment estimate: the eps at which 2^m prod_j (2 eps phi_j(z_j)) = 1 with the "
             "sum of a uniformly random subset taken Gaussian per coordinate (mean sum X/2, variance sum X^2/4). The "
             "box estimate ignores that sums concentrate near their mean and is far higher; both are capped by "
             "||z||_inf, which the empty subset achieves. `lower_bound` (instances.csv, and the table's min-max) is "
             "the best lower bound on the optimum any solver *proved* (the MILP dual bound; 0 = nothing proven): "
             "the optimum lies between it and the achieved residual.", ""]
    for ds in datasets:
        lines += [f"## {LABEL.get(ds, ds)}", "",
                  "| construction | n | matches | random | kept | MACs | non-zero MACs | per-image rel | global rel | "
                  "adversarial rel | certified rel | max|g|/max|f| | unreachable | accuracy % | stitch | "
                  + " | ".join(_lat_label(k) + " (ms)" for k in lat) + " | statuses | solve s |",
                  "|" + "---|" * (17 + len(lat))]
        for r in [x for x in rows if x["dataset"] == ds and x["construction"] == "target"] + pts(rows, ds, "structured") \
                + pts(rows, ds, "structured-pair") + pts(rows, ds, "iclr"):
            lines.append(_row_line(r, lat))
        for cons, _, _ in VARIANTS:
            if layer_groups(instances, ds, cons):
                lines += ["", f"### Counting floor vs solvers ({LABEL.get(ds, ds)}, {NAMES[cons]}, kernel residuals in "
                              f"max norm, target units)", "", *_floor_lines(instances, ds, cons), ""]
    lines += [f"## Where each structured ticket reaches or fails {level:g}, and what limits it", ""]
    for ds in datasets:
        for cons, _, _ in VARIANTS:
            lines += _statement(rows, instances, ds, level, cons)
    lines += ["",
              "`limited by`: **n** where the solver proved the optimum (HiGHS inside `auto`) or the first-moment "
              "estimate is at least half of ||z||_inf (no subset of these m candidates is expected to do much better "
              "than the empty one: more candidates are needed); **solver** where the estimate is far below what was "
              "found (a better MRSS solver or more time could go lower, the estimate says how far at most); the "
              "estimates are heuristics, the proven optima are not.", ""]
    lines += ["## Caveats of this run", "", *caveats(rows), ""]
    lines += ["## Cost of the compact tickets (the practical reason for structured pruning)", ""]
    for ds in datasets:
        tickets = cost_tickets(rows, ds, level)
        if not tickets:
            continue
        lines += [f"{LABEL.get(ds, ds)}:", "",
                  "| ticket | kept | MACs | non-zero MACs | per-image rel | accuracy % | " +
                  " | ".join(_lat_label(k) + " (ms)" for k in lat) + " |", "|" + "---|" * (6 + len(lat))]
        for label, r in tickets:
            lines.append(f"| {label} | {_int(r['kept_parameters'])} | {_int(r['macs'])} | {_int(r.get('macs_nonzero'))} | "
                         f"{_e(r['per_image_rel'])} | {_f(r['test_accuracy']):.2f} | "
                         + " | ".join(_ms(r.get(k)) for k in lat) + " |")
        lines += ["", *_cost_text(rows, ds, lat, level), *_cost_text(rows, ds, lat, level, "structured-pair"), ""]
    lines += ["Note: on non-negative inputs every pruned block of both constructions computes exactly one conv, its "
              "`effective()` kernel (the hidden ReLU only ever sees non-negative values; `stitch` confirms it on "
              "data), so each ticket collapses to a target-shaped conv part at the target's own cost. The tickets "
              "above are the pruned subnetworks themselves, as the theorems state them.", ""]
    ordered = all(r.get("ordered") in (True, "True") for r in rows)
    lines += [("empirical <= adversarial <= certified holds in every row." if ordered else
               "empirical <= adversarial <= certified FAILS in some rows (column `ordered`): a bug to investigate."), ""]
    runs = runs_markdown(out)
    if runs:
        lines += ["## Runs that wrote this folder (oldest first; from runs.jsonl)", "", *runs, ""]
    lines += ["![errors](structured_lenet5_errors.png)", "", "![accuracy](structured_lenet5_accuracy.png)", "",
              "![floor](structured_lenet5_floor.png)", "", "![cost](structured_lenet5_cost.png)", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return summary
