"""The four sup-norm numbers of one ticket (issue 15), empirical <= adversarial <= exact <= certified, as one row,
and the verification section every construction's report carries (iclr-construction, structured-random,
rfss-density; the verification experiment's table is made of the same rows).

- empirical: max |f(X) - g(X)| over the given inputs (:func:`pipelines.verify.empirical`);
- adversarial: :func:`pipelines.verify.adversarial` (seeded, ``attack_rounds`` rounds and ``attack_time`` s at most);
- exact: :func:`pipelines.exact_sup.exact_sup` (``time_limit`` s per MILP, ``milp_total`` s in all): the sup where
  its MILPs close, else the bracket [lower, upper]; "not run" where the exact MILP does not encode a layer of the
  target (its reason is kept) or the caller asks for none;
- certified: the smaller of the interval certificate (:func:`pipelines.verify.certified_intervals`) and the
  construction's Appendix B one (``Construction.certify``).
"""
from __future__ import annotations

import math
import time

#: the columns of a ticket row (the caller puts its own labels in front)
FIELDS = ["input_shape", "domain", "layers", "empirical_abs", "adversarial_abs", "exact_run", "exact_lower",
          "exact_upper", "exact_closed", "certified_interval", "certified_appendix_b", "certified_abs",
          "certified_over_exact", "adversarial_over_exact", "appendix_b_over_exact", "milps_solved", "milp_classes",
          "milps_closed", "max_binaries", "attack_rounds", "attack_seconds", "exact_seconds", "verify_seconds",
          "interval_unavailable", "exact_not_run", "ordered"]


def ticket_row(target, c, shape, data, *, seed: int = 0, restarts: int = 8, steps: int = 60,
               attack_time: float | None = 30.0, attack_rounds: int | None = 10, exact: bool = True,
               milp_solver: str = "highs", milp_confirm: str | None = "scip", time_limit: float = 30.0,
               milp_total: float = 60.0, domain=(0.0, 1.0), certificate: dict | None = None,
               pruned=None, n_jobs: int = 1, store=None) -> dict:
    """The four numbers of target ``target`` and construction ``c`` (its pruned network ``c.network``, or
    ``pruned``; its ``effective()`` form for the interval certificate, the attack and the MILPs) on the box
    ``domain`` ^ ``shape``, ``data`` (inputs in the box) for the empirical number and as attack starts;
    ``n_jobs`` / ``store``: the exact MILPs' batch workers and result store (:func:`milp.batch.solve_models`)."""
    from ..bounds import network_ops
    from ..verify import verify

    t0 = time.perf_counter()
    net = c.network if pruned is None else pruned
    not_run = "" if exact else "not asked"
    if exact:
        try:  # the exact MILP encodes Conv2d / ReLU / MaxPool2d networks only
            network_ops(target)
        except ValueError as exc:
            exact, not_run = False, f"pipelines.exact_sup: {exc}"
    res = verify(target, net, data, input_shape=shape, restarts=restarts, steps=steps, seed=seed,
                 evaluate_with=net.compact() if hasattr(net, "compact") else None,
                 certificate=c.certify() if certificate is None else certificate, effective=c.effective(),
                 domain=domain, attack_time=attack_time, attack_rounds=attack_rounds, exact=exact, solver=milp_solver,
                 exact_time_limit=time_limit, exact_total_time=milp_total, confirm_with=milp_confirm,
                 exact_n_jobs=n_jobs, exact_store=store)
    s, ex, adv = res["summary"], res["exact"], res["adversarial"]
    upper = s["exact_upper"]
    ratio = (lambda a: a / upper if exact and upper > 0 else math.nan)  # noqa: E731
    records = ex["records"] if ex else []
    return {"input_shape": "x".join(map(str, shape)), "domain": f"[{domain[0]:g}, {domain[1]:g}]",
            "layers": " ".join(type(m).__name__.replace("2d", "") for m in target),
            "empirical_abs": s["empirical_abs"], "adversarial_abs": s["adversarial_abs"], "exact_run": bool(exact),
            "exact_lower": s["exact_lower"], "exact_upper": upper, "exact_closed": s["exact_closed"],
            "certified_interval": s["certified_interval"], "certified_appendix_b": s["certified_appendix_b"],
            "certified_abs": s["certified_abs"], "certified_over_exact": ratio(s["certified_abs"]),
            "adversarial_over_exact": ratio(s["adversarial_abs"]),
            "appendix_b_over_exact": ratio(s["certified_appendix_b"]),
            "milps_solved": ex["milps"] if ex else 0, "milp_classes": len(records),
            "milps_closed": sum(bool(r.get("closed")) for r in records),
            "max_binaries": max([r.get("binaries", 0) for r in records] + [0]),
            "attack_rounds": adv["rounds"], "attack_seconds": round(adv["seconds"], 2),
            "exact_seconds": round(ex["seconds"], 2) if ex else 0.0,
            "verify_seconds": round(time.perf_counter() - t0, 2), "interval_unavailable": s["interval_unavailable"],
            "exact_not_run": not_run, "ordered": s["ordered"]}


def _g(x) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def exact_text(row: dict) -> str:
    """The exact column: the sup where the MILPs closed, else ``[lower, upper] open``, or ``not run``."""
    if not row.get("exact_run", True):
        return "not run"
    if row["exact_closed"]:
        return _g(row["exact_upper"])
    return f"[{_g(row['exact_lower'])}, {_g(row['exact_upper'])}] open"


def ordered(rows) -> bool:
    """empirical <= adversarial <= exact lower <= exact upper <= certified in every row (``verify`` checked
    it; checked again on the stored numbers)."""
    def ok(r):
        chain = [r["empirical_abs"], r["adversarial_abs"]]
        if r.get("exact_run", True):
            chain += [r["exact_lower"], r["exact_upper"]]
        chain.append(r["certified_abs"])
        chain = [x for x in chain if not (isinstance(x, float) and math.isnan(x))]
        return bool(r["ordered"]) and all(a <= b * (1 + 1e-12) for a, b in zip(chain, chain[1:]))
    return all(ok(r) for r in rows)


def section(rows, label: str, labels, what: str, settings: dict, record: dict | None = None) -> list[str]:
    """The markdown verification section: ``label`` names the ticket column, ``labels`` gives each row's
    text, ``what`` says which tickets these are and why, ``settings`` the attack / MILP settings, ``record``
    the stage's command, machine and wall time (:func:`run_record`)."""
    lines = ["## Verification: empirical <= adversarial <= exact <= certified", "", what, "",
             "Sup-norm errors max |f(X) - g(X)| over the input box, absolute: **empirical** over the inputs named "
             "below; **adversarial** `pipelines.verify.adversarial` "
             f"({settings.get('attack_rounds', '?')} rounds, {settings.get('attack_time', '?')} s at most, seeded); "
             + ("**exact** `pipelines.exact_sup.exact_sup` (highs, then scip on every MILP, "
                f"{settings.get('time_limit', '?')} s per MILP, {settings.get('milp_total', '?')} s in all): the sup where "
                "its MILPs closed, else the bracket [attained, dual bound] (open), or not run where the MILP does not "
                "encode a layer; " if any(r.get("exact_run", True) for r in rows) else
                "**exact** not run (reason below); ") +
             "**certified** the smaller of the interval certificate (`pipelines.verify.certified_intervals`) "
             "and the Appendix B one (`Construction.certify`).", "",
             f"| {label} | input | empirical | adversarial | exact | certified | interval | Appendix B | "
             "MILPs solved / classes | seconds (attack, MILP) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r, text in zip(rows, labels):
        lines.append(f"| {text} | {r['input_shape']} in {r['domain']} | {_g(r['empirical_abs'])} | "
                     f"{_g(r['adversarial_abs'])} | {exact_text(r)} | {_g(r['certified_abs'])} | "
                     f"{_g(r['certified_interval'])} | {_g(r['certified_appendix_b'])} | "
                     f"{r['milps_solved']} / {r['milp_classes']} | {r['attack_seconds']}, {r['exact_seconds']} |")
    notes = sorted({r["exact_not_run"] for r in rows if r.get("exact_not_run")})
    if notes:
        lines += ["", "Exact not run: " + "; ".join(notes) + "."]
    gaps = sorted({r["interval_unavailable"] for r in rows if r.get("interval_unavailable")})
    if gaps:
        lines += ["", "Interval certificate unavailable (the Appendix B one stands): " + "; ".join(gaps) + "."]
    lines += ["", f"Every row satisfies empirical <= adversarial <= exact <= certified (`ordered`: {ordered(rows)}; "
              "`verify` raises instead of reporting otherwise)."]
    return lines + run_lines(record)


# ----------------------------------------------------------------------------- the verification stage alone
def previous_summary(out, config) -> dict:
    """``--verification-only``: the ``summary.json`` in ``out`` of a finished run of ``config`` up to its
    ``verify_*`` fields (they only change the verification section); a one-line ValueError otherwise."""
    import json
    from pathlib import Path

    path = Path(out) / "summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ValueError(f"--verification-only: no readable {path}; run the experiment without it first") from None
    old, new = summary.get("config") or {}, config.to_dict()
    differ = sorted(k for k in set(old) | set(new) if not k.startswith("verify_") and old.get(k) != new.get(k))
    if summary.get("experiment") != config.NAME or differ:
        raise ValueError(f"--verification-only: {path} holds another run ({summary.get('experiment')}; fields differing: "
                         f"{', '.join(differ) or 'none'}); give the flags of that run or run without --verification-only")
    return summary


def run_record(command: str, seconds: float) -> dict:
    """Command, machine (with load) and wall time of the verification stage, for its report section."""
    from ..reporting import machine_line

    return {"command": command, "machine": machine_line(), "wall_seconds": round(seconds, 1)}


def run_lines(record: dict | None) -> list[str]:
    if not record:
        return []
    alone = ("--verification-only" in (record.get("command") or "")) * (
        " Only this section was recomputed by it; the rest of the report is from the run of the command at the top "
        "(same config up to the verify_* fields).")
    return ["", f"Verification stage: `{record.get('command') or '?'}` on {record.get('machine', '?')}; wall time "
                f"{record.get('wall_seconds', '?')} s.{alone}"]


def rerun_verification(out, config, command: str, started: float, previous: dict, compute) -> dict:
    """``--verification-only``: the section recomputed by ``compute()`` on the run already in ``out``, merged
    into its ``previous`` summary, the rerun recorded (``runs.jsonl``); returns the new summary (the caller
    writes it)."""
    from .base import config_record, record_run

    t0 = time.perf_counter()
    ver = compute()
    summary = {**previous, **config_record(config), "verification": ver,
               "verification_run": run_record(command, time.perf_counter() - t0)}
    record_run(out, config, command, started, stages={"verification": round(time.perf_counter() - t0, 1)})
    return summary


def progress_line(tag: str, what: str, row: dict, t0: float) -> str:
    """The progress line of one verified ticket."""
    return (f"[{tag}] {what}: empirical {row['empirical_abs']:.4g} <= adversarial {row['adversarial_abs']:.4g} <= "
            f"exact [{row['exact_lower']:.4g}, {row['exact_upper']:.4g}] <= certified {row['certified_abs']:.4g} "
            f"({time.perf_counter() - t0:.0f} s)")
