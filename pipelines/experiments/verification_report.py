"""results.csv, summary.json and report.md of the verification table (issue 15)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..reporting import atomic_write_csv, atomic_write_json, atomic_write_text
from .base import runs_markdown

FIELDS = ["kind", "target", "n", "input_shape", "layers", "empirical_abs", "adversarial_abs", "exact_lower",
          "exact_upper", "exact_closed", "certified_interval", "certified_appendix_b", "certified_abs",
          "certified_over_exact", "adversarial_over_exact", "appendix_b_over_exact", "milps_solved", "milp_classes",
          "milps_closed", "max_binaries", "attack_rounds", "attack_seconds", "exact_seconds", "solve_seconds",
          "verify_seconds", "ordered", "domain", "exact_run", "interval_unavailable", "exact_not_run"]


def _g(x) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def report(rows, summary, out: Path) -> str:
    small = [r for r in rows if r["kind"] == "small"]
    big = [r for r in rows if r["kind"] != "small"]
    closed = [r for r in small if r["exact_closed"]]
    cfg = summary.get("config", {})
    lines = ["# Verification that cannot lie: empirical <= adversarial <= exact <= certified", "",
             "Issue 15. Every pruned network is the ICLR construction (`pipelines.constructions.iclr`) of a target; f is "
             "the target, g the pruned network. Numbers are sup-norm errors max |f(X) - g(X)| over the input box "
             "[0, 1]^(c0 x D x D), absolute.", "",
             "- **empirical**: the max over random inputs of the box (small targets: "
             f"{cfg.get('empirical_points', '?')} uniform points) or 2000 MNIST test images (LeNet5);",
             "- **adversarial**: `pipelines.verify.adversarial` (random vertices; per output entry and sign sign-gradient "
             "steps then Adam from the entry's best point, the worst data points and random points; greedy vertex "
             "search, also on each max-pool branch's objective (small inputs); coordinate grid search on small inputs; "
             f"{cfg.get('attack_rounds', '?')} rounds, seeded): an attained error;",
             "- **exact**: `pipelines.exact_sup.exact_sup`, one MILP per output channel, border class and sign (big-M "
             "from the interval bounds, max-pool as a MILP, difference cuts), "
             f"{cfg.get('milp_solver', '?')} and then {cfg.get('milp_confirm', '?')} on every MILP, {cfg.get('time_limit', '?')} "
             "s per MILP and solver; `exact_lower` is f - g evaluated in float64 at the solvers' inputs, `exact_upper` the "
             "larger of the two dual bounds (+1e-7 relative slack; a second solver because HiGHS alone once declared "
             "optimal a value 0.3 % below an error the attack attained, which `verify` refused to report); "
             "`exact_closed` when they agree to 1e-6 relative. MILPs whose interval bound is below the attack's value are "
             "skipped (they cannot hold the sup);",
             "- **certified**: the smaller of the interval certificate (`pipelines.verify.certified_intervals`: "
             "interval bounds on f, g and f - g layer by layer, each product term bounded exactly over its "
             "(x, y, x - y) polygon) and the Appendix B certificate (`Construction.certify`, the bound before "
             "this issue).", ""]
    if summary.get("command"):
        lines += ["Command:", "", f"    {summary['command']}", ""]
    lines += [f"Machine: {summary.get('machine', '?')}. Wall time of this run: {summary.get('wall_seconds', '?')} s.", ""]
    lines += ["## Small targets", "",
              "| target | input | n | empirical | adversarial | exact [lower, upper] | certified (interval) | "
              "Appendix B | cert / exact | adv / exact | B / exact | MILPs solved / classes | seconds (attack, MILP) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in small:
        ex = f"[{_g(r['exact_lower'])}, {_g(r['exact_upper'])}]" + ("" if r["exact_closed"] else " open")
        lines.append(f"| {r['target']} | {r['input_shape']} | {r['n']} | {_g(r['empirical_abs'])} | "
                     f"{_g(r['adversarial_abs'])} | {ex} | {_g(r['certified_abs'])} | {_g(r['certified_appendix_b'])} | "
                     f"{_g(r['certified_over_exact'])} | {_g(r['adversarial_over_exact'])} | "
                     f"{_g(r['appendix_b_over_exact'])} | {r['milps_solved']} / {r['milp_classes']} | "
                     f"{r['attack_seconds']}, {r['exact_seconds']} |")
    if small:
        lines += [""]
        if closed:
            cr = [r["certified_over_exact"] for r in closed]
            ar = [r["adversarial_over_exact"] for r in closed]
            br = [r["appendix_b_over_exact"] for r in closed]
            lines += [f"Where the MILPs closed ({len(closed)} of {len(small)} rows): certified / exact from {min(cr):.3g} "
                      f"to {max(cr):.3g} (target <= 3; {sum(x <= 3 for x in cr)} of {len(cr)} rows meet it), "
                      f"adversarial / exact from {min(ar):.3g} to {max(ar):.3g} (target >= 0.95; "
                      f"{sum(x >= 0.95 for x in ar)} of {len(ar)} meet it); the Appendix B certificate alone was "
                      f"{min(br):.3g} to {max(br):.3g} times the exact sup."]
        opened = [r for r in small if not r["exact_closed"]]
        if opened:
            lines += ["", "Rows whose MILPs did not close within their time: " + ", ".join(
                f"{r['target']} n={r['n']} ([{_g(r['exact_lower'])}, {_g(r['exact_upper'])}])" for r in opened) +
                ". There the ratios are taken against exact_upper (the MILPs' dual bound, >= the sup): adversarial / "
                "exact is then a lower estimate of adversarial / sup, and the true certified / sup lies between "
                "certified / exact_upper and certified / exact_lower."]
        lines += ["", "Every row satisfies empirical <= adversarial <= exact_lower <= exact_upper <= certified "
                  f"(`ordered`: {all(r['ordered'] for r in small)}; `verify` raises instead of reporting otherwise)."]
    if big:
        lines += ["", "## LeNet5 ICLR tickets (MNIST target, `slth prune --construction iclr --target lenet5-mnist`)", "",
                  "| n | empirical (2000 test images) | adversarial | exact [lower, upper] | certified (interval) | "
                  "Appendix B | MILPs solved / classes | seconds (attack, MILP) |", "|---|---|---|---|---|---|---|---|"]
        for r in big:
            ex = f"[{_g(r['exact_lower'])}, {_g(r['exact_upper'])}]" + ("" if r["exact_closed"] else " open")
            lines.append(f"| {r['n']} | {_g(r['empirical_abs'])} | {_g(r['adversarial_abs'])} | {ex} | "
                         f"{_g(r['certified_abs'])} | {_g(r['certified_appendix_b'])} | {r['milps_solved']} / "
                         f"{r['milp_classes']} | {r['attack_seconds']}, {r['exact_seconds']} |")
        before = out / "before.json"
        if before.exists():
            b = json.loads(before.read_text())
            lines += ["", "Before this issue (the same tickets, `slth verify` of the main branch at "
                      f"{b.get('commit', '?')}: `{b.get('command', '?')}`):", "",
                      "| n | empirical | adversarial (PGD) | certified (Appendix B) |", "|---|---|---|---|"]
            for n, v in sorted(b.get("results", {}).items(), key=lambda kv: int(kv[0])):
                lines.append(f"| {n} | {_g(v['empirical_abs'])} | {_g(v['adversarial_abs'])} | {_g(v['certified_abs'])} |")
            if b.get("note"):
                lines += ["", b["note"]]
    runs = runs_markdown(out)
    if runs:
        lines += ["", "## Runs", ""] + runs
    return "\n".join(lines) + "\n"


def write_all(rows, summary, out) -> None:
    out = Path(out)
    atomic_write_csv(out / "results.csv", rows, FIELDS, extrasaction="ignore")
    atomic_write_json(out / "summary.json", summary, default=str)
    atomic_write_text(out / "report.md", report(rows, summary, out))
