"""Report of rfss-density: CSVs, figures (PNG + PDF), summary.json and report.md; :func:`rewrite` rebuilds them
from the CSVs and summary.json without recomputing anything. Never imports the experiment module."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from ..reporting import atomic_write_csv, atomic_write_json, atomic_write_text, save_figure
from .base import runs_markdown

HEAD_CSV, TRADE_CSV, WHOLE_CSV = "results.csv", "tradeoff.csv", "whole_lenet5.csv"
EPS_NEEDED = 1e-4  # the error level of the "n needed" panel


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def n_needed(rows: list[dict], key: str, eps: float) -> dict[float, float]:
    """Per density: the n at which the median ``key`` reaches eps (log-linear interpolation between measured n;
    NaN when not reached)."""
    out = {}
    for g in sorted({_f(r["density"]) for r in rows}):
        pts = sorted((int(r["n"]), _f(r[key])) for r in rows if abs(_f(r["density"]) - g) < 1e-9)
        val = math.nan
        for (n0, e0), (n1, e1) in zip(pts, pts[1:]):
            if e0 > eps >= e1 and e0 > 0 and e1 > 0:
                val = n0 + (n1 - n0) * (math.log(e0) - math.log(eps)) / (math.log(e0) - math.log(e1))
                break
        if pts and pts[0][1] <= eps:
            val = pts[0][0]
        out[g] = val
    return out


def _figures(head: list[dict], trade: list[dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    datasets = list(dict.fromkeys(r["dataset"] for r in head))
    colors = {"mnist": "tab:blue", "fashion-mnist": "tab:red"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ds in datasets:
        col = colors.get(ds, "k")
        rf = sorted([r for r in head if r["dataset"] == ds and r["method"] == "rfss"], key=lambda r: _f(r["density"]))
        rs = [r for r in head if r["dataset"] == ds and r["method"] == "rss"]
        rm = sorted([r for r in head if r["dataset"] == ds and r["method"] == "rss-matched"],
                    key=lambda r: _f(r["density"]))
        xm = [_f(r["density"]) for r in rm]
        x = [_f(r["density"]) for r in rf]
        ax = axes[0, 0]
        ax.semilogy(x, [_f(r["median_residual"]) for r in rf], "o-", color=col, label=f"{ds}: median residual (RFSS)")
        ax.semilogy(x, [_f(r["max_rel_weight_error"]) for r in rf], "s--", color=col, alpha=0.6,
                    label=f"{ds}: max relative weight error")
        ax.semilogy(x, [_f(r["counting_median"]) for r in rf], ":", color=col, label=f"{ds}: counting estimate (median)")
        for r in rs:
            ax.semilogy([_f(r["density"])], [_f(r["median_residual"])], "*", ms=13, color=col, label=f"{ds}: RSS (free size)")
            ax.semilogy([_f(r["density"])], [_f(r["max_rel_weight_error"])], "P", ms=10, color=col, alpha=0.6)
        if rm:
            ax.semilogy(xm, [_f(r["median_residual"]) for r in rm], "v-.", ms=8, color=col, mfc="none",
                        label=f"{ds}: RSS over 2k samples (same density, same kept)")
        ax = axes[0, 1]
        ax.semilogy(x, [_f(r["logits_err_abs"]) for r in rf], "o-", color=col, label=f"{ds}: max |f - g| (logits)")
        ax.semilogy(x, [_f(r["logits_err_rel"]) for r in rf], "s--", color=col, alpha=0.6, label=f"{ds}: relative per image")
        for r in rs:
            ax.semilogy([_f(r["density"])], [_f(r["logits_err_abs"])], "*", ms=13, color=col)
        if rm:
            ax.semilogy(xm, [_f(r["logits_err_abs"]) for r in rm], "v-.", ms=8, color=col, mfc="none",
                        label=f"{ds}: RSS over 2k samples")
        ax = axes[1, 0]
        ax.plot(x, [100 * _f(r["accuracy"]) for r in rf], "o-", color=col, label=f"{ds}: pruned random head")
        if rf:
            ax.axhline(100 * _f(rf[0]["target_accuracy"]), color=col, ls=":", label=f"{ds}: trained target")
        for r in rs:
            ax.plot([_f(r["density"])], [100 * _f(r["accuracy"])], "*", ms=13, color=col)
        if rm:
            ax.plot(xm, [100 * _f(r["accuracy"]) for r in rm], "v-.", ms=8, color=col, mfc="none",
                    label=f"{ds}: RSS over 2k samples")
        ax = axes[1, 1]
        ax.semilogy(x, [_f(r["kept_params"]) for r in rf], "o-", color=col, label=f"{ds}: kept (RFSS)")
        for r in rs:
            ax.semilogy([_f(r["density"])], [_f(r["kept_params"])], "*", ms=13, color=col, label=f"{ds}: kept (RSS)")
        if rm:
            ax.semilogy(xm, [_f(r["kept_params"]) for r in rm], "v-.", ms=8, color=col, mfc="none",
                        label=f"{ds}: kept (RSS over 2k)")
            ax.semilogy(xm, [_f(r["random_params"]) for r in rm], "1:", ms=10, color=col,
                        label=f"{ds}: random (RSS over 2k)")
        if rf:
            ax.axhline(_f(rf[0]["target_params"]), color="gray", ls=":", label="target head parameters")
            ax.axhline(_f(rf[0]["random_params"]), color="gray", ls="--", label="random head parameters")
    titles = ["entry errors (dense head)", "logits error over the test set", "test accuracy (%)", "parameters"]
    for ax, t in zip(axes.flat, titles):
        ax.set_title(t)
        ax.set_xlabel("density of V's mask (k/n; RSS: measured, over 2k: in the n-net)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"RFSS tickets of the trained LeNet5 dense head, n = {head[0]['n'] if head else '?'}")
    fig.tight_layout()
    save_figure(fig, out, "density")
    plt.close(fig)
    names.append("density")
    if trade:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        dens = sorted({_f(r["density"]) for r in trade})
        cmap = plt.get_cmap("viridis")
        for ds, marker in zip(dict.fromkeys(r["dataset"] for r in trade), ("o", "s")):
            for gi, g in enumerate(dens):
                rows = sorted([r for r in trade if r["dataset"] == ds and abs(_f(r["density"]) - g) < 1e-9],
                              key=lambda r: int(r["n"]))
                c = cmap(gi / max(1, len(dens) - 1))
                axes[0].semilogy([int(r["n"]) for r in rows], [_f(r["median_residual"]) for r in rows], marker + "-",
                                 color=c, label=f"{ds}, k/n = {g:g}")
                if marker == "o":
                    axes[0].semilogy([int(r["n"]) for r in rows], [_f(r["counting_median"]) for r in rows], ":", color=c)
            meas = n_needed([r for r in trade if r["dataset"] == ds], "median_residual", EPS_NEEDED)
            axes[1].plot(list(meas), list(meas.values()), marker + "-", label=f"{ds}: measured")
            theo = n_needed([r for r in trade if r["dataset"] == ds], "counting_median", EPS_NEEDED)
            axes[1].plot(list(theo), list(theo.values()), marker + ":", color="gray", label=f"{ds}: counting estimate")
        gs = np.linspace(0.05, 0.5, 50)
        H = -(gs * np.log2(gs) + (1 - gs) * np.log2(1 - gs))
        axes[1].plot(gs, math.log2(1 / EPS_NEEDED) / H, "k--", alpha=0.5, label="log2(1/eps) / H(k/n)")
        axes[0].set_xlabel("n (samples per entry)")
        axes[0].set_ylabel("median residual, last dense layer (84->10)")
        axes[0].set_title("measured (solid) vs counting estimate (dotted, mnist)")
        axes[1].set_xlabel("density k/n")
        axes[1].set_ylabel(f"n needed for median residual {EPS_NEEDED:g}")
        axes[1].set_title("density vs over-parameterisation")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, out, "tradeoff")
        plt.close(fig)
        names.append("tradeoff")
    return names


def _fmt(v, spec=".3g") -> str:
    x = _f(v)
    return "" if math.isnan(x) else format(x, spec)


def _findings(head: list[dict], trade: list[dict]) -> list[str]:
    out = []
    ratios = [_f(r["median_residual"]) / _f(r["counting_median"]) for r in head + trade
              if _f(r["counting_median"]) > 0 and r.get("method") != "rss-matched"]
    if ratios:
        out.append(f"- Measured median optimum / counting estimate: between {min(ratios):.2f} and {max(ratios):.2f} over "
                   f"all {len(ratios)} (data set, n, k) points of RFSS and RSS over n samples: the first-moment estimate "
                   f"predicts the median RFSS optimum of these real instances.")
    matched = [(int(r["n"]), _f(r["median_residual"]) / _f(r["counting_median"])) for r in head
               if r.get("method") == "rss-matched" and _f(r["counting_median"]) > 0]
    if matched:
        out.append("- RSS over 2k samples, measured median optimum / counting estimate: " + ", ".join(
            f"{q:.2f} (n' = {n})" for n, q in sorted(matched)) + " (with 2 or 6 samples there are only 3 or 63 "
                   "non-empty subsets: a first-moment estimate is crude there).")
    for ds in dict.fromkeys(r["dataset"] for r in head):
        rows = [r for r in head if r["dataset"] == ds and r["method"] == "rfss"]
        rss = [r for r in head if r["dataset"] == ds and r["method"] == "rss"]
        ok = [r for r in rows if _f(r["accuracy"]) >= _f(r["target_accuracy"]) - 0.001]
        if ok:
            r = min(ok, key=lambda r: _f(r["density"]))
            out.append(f"- {ds}: the smallest density whose pruned head is within 0.1 point of the target's test "
                       f"accuracy is k/n = {_f(r['density']):.4f} (k = {r['k']}): {100 * _f(r['accuracy']):.2f}% vs "
                       f"{100 * _f(r['target_accuracy']):.2f}%, {int(_f(r['kept_params'])):,} kept parameters "
                       f"({_f(r['kept_params']) / _f(r['target_params']):.1f}x the head's {int(_f(r['target_params'])):,}).")
        half = [r for r in rows if abs(_f(r["density"]) - 0.5) < 1e-9]
        if half and rss:
            n = int(half[0]["n"])
            out.append(f"- {ds}: RSS (free size, measured density {_f(rss[0]['density']):.3f}) has median residual "
                       f"{_f(rss[0]['median_residual']):.2e}, RFSS at k = n/2 {_f(half[0]['median_residual']):.2e}: "
                       f"ratio {_f(half[0]['median_residual']) / _f(rss[0]['median_residual']):.1f}, against "
                       f"2^n / C(n, n/2) = {2 ** n / math.comb(n, n // 2):.1f} subsets (counting).")
        for m in [r for r in head if r["dataset"] == ds and r["method"] == "rss-matched"]:
            k = int(_f(m["matched_k"]))
            twin = [r for r in rows if str(r["k"]) == str(k)]
            if not twin:
                continue
            r = twin[0]
            nn = int(r["n"])
            out.append(f"- {ds}, k = {k}: RSS over 2k = {2 * k} samples (free size; density {_f(m['density']):.4f} in "
                       f"the n = {nn} network, {_f(m['kept_per_entry']):.2f} kept per entry, "
                       f"{int(_f(m['kept_params'])):,} kept / {int(_f(m['random_params'])):,} random) against RFSS(n = {nn}, "
                       f"k = {k}) ({int(_f(r['kept_params'])):,} kept / {int(_f(r['random_params'])):,} random): median "
                       f"residual {_f(m['median_residual']):.2e} vs {_f(r['median_residual']):.2e} (ratio "
                       f"{_f(m['median_residual']) / _f(r['median_residual']):.3g}; subsets 2^{2 * k} = "
                       f"{2 ** (2 * k):.3g} vs C({nn}, {k}) = {math.comb(nn, k):.3g}), logits error "
                       f"{_f(m['logits_err_abs']):.2e} vs {_f(r['logits_err_abs']):.2e}, accuracy "
                       f"{100 * _f(m['accuracy']):.2f}% vs {100 * _f(r['accuracy']):.2f}%.")
        worst = max(rows, key=lambda r: _f(r["max_residual"]), default=None)
        if worst:
            out.append(f"- {ds}: the largest residuals (up to {_f(worst['max_residual']):.2f}, k = {worst['k']}) come "
                       f"from the few entries out of the k-subsets' reach (rows of V with nearly all n samples of one "
                       f"sign, or |W| above the sum of the k largest products): {100 * _f(worst['share_above_1e-3']):.3f}% "
                       f"of the entries are above 1e-3 at that k; they, not the median, set the max weight and logits "
                       f"errors.")
    return out


def _report(head, trade, whole, summary, out: Path) -> str:
    lines = [f"# rfss-density: fixed-density (RFSS) tickets of the LeNet5 dense head (issue 14)", "",
             f"Command: `{summary.get('command', '')}`", "",
             f"Config `{summary.get('config_key')}`: `{json.dumps(summary.get('config'))}`", "",
             f"Wall time of this run: {summary.get('wall_seconds', 0) / 60:.1f} min with {summary.get('n_jobs')} "
             f"worker(s) for the solves; {summary.get('machine', '')}. Stage timings are in `runs.jsonl` and "
             f"`summary.json`; every solved instance is in the SQLite store, so a rerun only re-measures.", "",
             "Construction (`pipelines/constructions/dense_rfss.py`): every target weight W[j, i] and bias b[j] of "
             "the dense head is the subset sum of exactly k of its n products V[j, i n + t] u[i, t] (fan-out "
             "weights u >= 0, positive half, inputs non-negative); RSS = free subset size. Solver: exact meet "
             "in the middle with the cardinality row (proven optima). The conv part stays the trained one in "
             "the head stage: the head's inputs are the trained conv features of the 10,000 test images.", "",
             "## Dense head against density k/n", "",
             "| data set | method | n | k | density | median residual | counting estimate | max residual | max rel. weight error | "
             "logits error (max abs) | logits error (rel., per image) | accuracy | target acc. | kept params | random params | "
             "certified head bound | optimal / instances | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in head:
        kk = r["k"] or ("free (~" + str(r["matched_k"]) + ")" if r.get("matched_k") else "free")
        lines.append(f"| {r['dataset']} | {r['method']} | {r['n']} | {kk} | {_fmt(r['density'], '.4f')} | "
                     f"{_fmt(r['median_residual'], '.2e')} | {_fmt(r['counting_median'], '.2e')} | {_fmt(r['max_residual'], '.2e')} | "
                     f"{_fmt(r['max_rel_weight_error'], '.2e')} | {_fmt(r['logits_err_abs'], '.2e')} | "
                     f"{_fmt(r['logits_err_rel'], '.2e')} | {100 * _f(r['accuracy']):.2f}% | "
                     f"{100 * _f(r['target_accuracy']):.2f}% | {int(_f(r['kept_params'])):,} | {int(_f(r['random_params'])):,} | "
                     f"{_fmt(r['certified_head'], '.2e')} | {r['optimal']} / {r['instances']} | {_fmt(r['wall_seconds'], '.0f')} |")
    lines += ["", "Findings (computed from the rows above and below):", ""] + _findings(head, trade)
    lines += ["", "Worst entry per row (largest residual): " + "; ".join(
        f"{r['dataset']} {r['method']} n={r['n']} k={r['k'] or 'free'}: {r['worst_entry']}" for r in head), "",
        "![density](density.png)", "",
        "Notes. `density` is k/n, which is exactly the measured density of V's mask for RFSS (checked per run: "
        "`measured_density` in results.csv); for RSS it is the measured mean subset size / n. `rss-matched` rows: "
        "plain RSS (free subset size) over n' = 2k samples per entry, matched to RFSS(n, k): a random subset of m "
        "samples has m/2 elements on average, so RSS over 2k samples keeps about k per entry, the kept parameters of "
        "RFSS(n, k) (the optimal subsets are measured to be somewhat smaller: `kept_per_entry` in results.csv and "
        "the findings); placed in the n-sample network of RFSS (its other n - 2k samples per entry pruned a priori) "
        "its mask has then about the average density k/n; the `density` shown is the measured one in that network (its density in its own 2k-sample network, about 0.5, is "
        "`measured_density`); its random parameters are those of the 2k-sample network. The two then differ only in "
        "what a subset may be: exactly k of n, or any subset of a fixed 2k (C(n, k) against 2^(2k) subsets). "
        "Kept parameters = "
        "kept V entries (k per target entry) plus the fan-out weights of live hidden neurons; random parameters = "
        "all fan-out weights u, beta and all of V (n (m_in + 1)(m_out + 1) per layer). The certified head bound "
        "holds for every head input in [0, B]^784 with B the certified bound of the trained conv part's output on "
        "[0, 1]^784 images (B in results.csv); it propagates ||W_j - L_j||_1 row by row (ICLR Appendix B) and is "
        "loose by construction."]
    if trade:
        lines += ["", "## Density against over-parameterisation (last dense layer, 84 -> 10, 850 entries)", "",
                  "| data set | n | k | density | median residual | counting estimate | p90 | max |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in trade:
            lines.append(f"| {r['dataset']} | {r['n']} | {r['k']} | {_fmt(r['density'], '.3f')} | "
                         f"{_fmt(r['median_residual'], '.2e')} | {_fmt(r['counting_median'], '.2e')} | "
                         f"{_fmt(r['p90_residual'], '.2e')} | {_fmt(r['max_residual'], '.2e')} |")
        lines += ["", f"n needed for a median residual of {EPS_NEEDED:g} (log-linear interpolation in n; blank: not "
                      f"reached within the n swept):", "", "| data set | density | measured | counting estimate |",
                  "|---|---|---|---|"]
        for ds in dict.fromkeys(r["dataset"] for r in trade):
            rows = [r for r in trade if r["dataset"] == ds]
            meas, theo = n_needed(rows, "median_residual", EPS_NEEDED), n_needed(rows, "counting_median", EPS_NEEDED)
            for g in meas:
                lines.append(f"| {ds} | {g:g} | {_fmt(meas[g], '.1f')} | {_fmt(theo[g], '.1f')} |")
        lines += ["", "![tradeoff](tradeoff.png)", "",
                  "Theory drawn: the counting (first-moment) estimate of the median optimum, ln 2 / (2 C(n, k) "
                  "f_k(z)), with f_k the exact density of a sum of k products V u (V ~ U[-1, 1], u ~ U[0, 1]), per "
                  "target z, median over the layer's entries; and n = log2(1/eps) / H(k/n), its large-n form. The "
                  "paper proves (second moment method) that RFSS reaches this order with constant probability; the "
                  "constants of its theorem are not in the summary available here, so no constant-exact curve of "
                  "the paper's bound is drawn."]
    if whole:
        lines += ["", "## Whole pruned random LeNet5 (conv part: ICLR, RSS with n_conv samples; dense head: RFSS)", "",
                  "| data set | n | k | n_conv | random params | kept params | target params | accuracy | target acc. | "
                  "logits error (empirical, max abs) | relative per image | adversarial (PGD) | certified on [0,1]^784 | "
                  "max entry residual | optimal / instances | wall s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in whole:
            lines.append(f"| {r['dataset']} | {r['n']} | {r['k']} | {r['n_conv']} | {int(_f(r['random_params'])):,} | "
                         f"{int(_f(r['kept_params'])):,} | {int(_f(r['target_params'])):,} | {100 * _f(r['accuracy']):.2f}% | "
                         f"{100 * _f(r['target_accuracy']):.2f}% | {_fmt(r['logits_err_abs'], '.2e')} | "
                         f"{_fmt(r['logits_err_rel'], '.2e')} | {_fmt(r['adversarial_abs'], '.2e')} | "
                         f"{_fmt(r['certified_abs'], '.2e')} | {_fmt(r['max_residual'], '.2e')} | {r['optimal']} / "
                         f"{r['instances']} | {_fmt(r['wall_seconds'], '.0f')} |")
        lines += ["", "Mask densities per block: " + " | ".join(
            f"{r['dataset']} n={r['n']} k={r['k']}: {r['densities']}" for r in whole), "",
            f"Empirical and accuracy on the first {whole[0]['images']} test images; the attack starts from 4 random "
            "points and the 4 worst of the first 200 images (20 steps). The certified bound is the ICLR Appendix B "
            "propagation through all five layers with the actual norms of the trained weights (row / channel l1 "
            "norms up to the hundreds): it multiplies every layer's entry errors by the norms of the layers after "
            "it, which is why it is orders of magnitude above the attained error. What a useful certificate would "
            "take: entry errors ~ certified target / prod of the layer norms, i.e. far larger n (every halving of the "
            "error costs about one more sample per entry at density 1/2, ~1/H(k/n) at density k/n), or a "
            "tighter bound than the layer-by-layer one (e.g. interval / LP relaxation of the ReLUs)."]
    lines += verification_lines(summary)
    lines += ["", "## Runs", ""] + runs_markdown(out)
    return "\n".join(lines) + "\n"


def verification_lines(summary: dict) -> list[str]:
    """The four numbers of the section's tickets (``summary["verification"]``), or nothing."""
    from .four_numbers import section

    ver = summary.get("verification") or []
    if not ver:
        return []
    cfg = summary.get("config", {})
    what = (f"Tickets of {ver[0]['dataset']}: the dense head at n = {cfg.get('n', '?')} and k = "
            + ", ".join(str(r["k"]) for r in ver if r["ticket"] == "head") + " (f the trained head, inputs the box "
            "[0, B]^784 of the conv features, B the certified bound of the trained conv part's output; empirical over "
            "the test set's features, clamped into the box)" + ("" if not any(r["ticket"] == "whole" for r in ver) else
            ", and the first whole pruned LeNet5 (inputs [0, 1]^784; empirical over the first "
            f"{cfg.get('whole_images', '?')} test images)") + ". The interval certificate now carries Flatten and "
            "Linear layers (`pipelines.bounds`), so it covers these whole networks; the attack starts from the 4 worst "
            "data points (4 restarts, 20 steps per phase).")
    settings = {k: cfg.get(f"verify_{k}") for k in ("attack_rounds", "attack_time")}
    return ["", *section(ver, "ticket", [f"{r['ticket']} n = {r['n']}, k = {r['k']}" for r in ver], what, settings,
                         summary.get("verification_run"))]


def write_all(head: list[dict], trade: list[dict], whole: list[dict], summary: dict, out) -> dict:
    out = Path(out)
    for rows, name in ((head, HEAD_CSV), (trade, TRADE_CSV), (whole, WHOLE_CSV)):
        if rows:
            atomic_write_csv(out / name, rows, list(rows[0]))
    str_rows = lambda rows: [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in rows]  # noqa: E731
    head, trade, whole = str_rows(head), str_rows(trade), str_rows(whole)
    summary = {**summary, "figures": _figures(head, trade, out) if head else []}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.md", _report(head, trade, whole, summary, out))
    return summary


def rewrite(out) -> None:
    out = Path(out)
    summary = json.loads((out / "summary.json").read_text())
    rows = [_read(out / name) if (out / name).exists() else [] for name in (HEAD_CSV, TRADE_CSV, WHOLE_CSV)]
    summary = {**summary, "figures": _figures(rows[0], rows[1], out) if rows[0] else []}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.md", _report(*rows, summary, out))
