"""Benchmark metrics on hand-made results, suite construction, and a tiny real run."""
import json
import math

import numpy as np
import pytest

from pipelines.experiments import bench as B


def row(iid, solver, residual, status="feasible", seconds=1.0, claimed=False, suite="rss", n=10, ttb=None):
    return {"id": iid, "suite": suite, "n": n, "d": 1, "k": None, "solver": solver, "residual": residual,
            "status": status, "claimed_optimal": claimed, "seconds": seconds, "time_to_first": None,
            "time_to_best": ttb}


def test_reference_is_the_exact_optimum_when_proven_else_the_best_found():
    rows = [row("a", "exact", 1e-3, "optimal"), row("a", "cbc", 5e-4),  # exact proven: reference stays 1e-3
            row("b", "cbc", 2e-3), row("b", "highs", 1e-3),
            row("c", "exact", math.inf, "failed"), row("c", "cbc", math.inf, "time_limit")]
    ref = B.reference_residuals(rows)
    assert ref["a"] == (1e-3, "exact")
    assert ref["b"] == (1e-3, "best_found")
    assert ref["c"][0] == math.inf


def test_residual_ratio_conventions():
    assert B.residual_ratio(2e-3, 1e-3) == pytest.approx(2.0)
    assert B.residual_ratio(1e-3 * (1 + 1e-12), 1e-3) == 1.0  # equal within tolerance
    assert B.residual_ratio(0.0, 0.0) == 1.0
    assert B.residual_ratio(1e-9, 0.0) == pytest.approx(1e6)  # reference floored at 1e-15
    assert B.residual_ratio(math.inf, 1e-3) == math.inf


def test_claimed_optimal_but_beaten_flag():
    rows = [row("a", "cbc", 2e-6, "feasible", claimed=True),  # claimed, demoted, and beaten by exact
            row("a", "scip", 1e-9, "optimal"),                   # proven and best: not flagged
            row("a", "exact", 1e-9, "optimal"),
            row("a", "highs", 1e-9 * (1 + 1e-12), "optimal"),    # tie within tolerance: not beaten
            row("a", "heuristic", 1e-6)]                         # never claimed anything
    out = {r["solver"]: r for r in B.annotate(rows)}
    assert out["cbc"]["claimed_optimal_beaten"] is True
    assert not out["scip"]["claimed_optimal_beaten"] and not out["highs"]["claimed_optimal_beaten"]
    assert not out["heuristic"]["claimed_optimal_beaten"]
    assert out["cbc"]["ratio"] == pytest.approx(2000.0)
    assert out["cbc"]["reference_kind"] == "exact"


def test_performance_profile_by_hand():
    # costs: instance x: s1=1, s2=2; y: s1=4, s2=2; z: s1=inf (failed), s2=3
    values = {"s1": {"x": 1.0, "y": 4.0, "z": math.inf}, "s2": {"x": 2.0, "y": 2.0, "z": 3.0}}
    prof = B.performance_profile(values, [1.0, 2.0, 1e9])
    assert prof["s1"] == pytest.approx([1 / 3, 2 / 3, 2 / 3])  # ratios 1, 2, inf
    assert prof["s2"] == pytest.approx([2 / 3, 1.0, 1.0])      # ratios 2, 1, 1
    # every solver failed on an instance: a failure for all
    assert B.performance_profile({"a": {"x": math.inf}, "b": {"x": math.inf}}, [1e9]) == {"a": [0.0], "b": [0.0]}


def test_solved_time_uses_time_to_best_only_when_the_reference_is_reached():
    assert B.solved_time({"ratio": 1.0, "time_to_best": 0.2, "seconds": 1.0}) == 0.2
    assert B.solved_time({"ratio": 1.0, "time_to_best": None, "seconds": 1.0}) == 1.0
    assert B.solved_time({"ratio": 3.0, "time_to_best": 0.2, "seconds": 1.0}) == math.inf


def test_target_check_counts_within_2x_and_time():
    rows = [row(f"i{j}", "exact", 1.0, "optimal", n=20) for j in range(4)]
    rows += [row("i0", "cpsat", 1.5, seconds=0.5, n=20), row("i1", "cpsat", 3.0, seconds=0.5, n=20),
             row("i2", "cpsat", 1.0, seconds=2.0, n=20), row("i3", "cpsat", 1.0, seconds=0.9, n=20)]
    tc = B.target_check(B.annotate(rows))
    assert tc["cpsat"]["instances"] == 4 and tc["cpsat"]["within"] == 2  # i0 and i3
    assert tc["cpsat"]["share"] == 0.5


def test_suites_are_deterministic_and_follow_the_papers():
    a, b = B.suite_rss(2), B.suite_rss(2)
    assert [x.instance.content_hash() for x in a] == [x.instance.content_hash() for x in b]
    assert sorted({x.meta["n"] for x in a}) == list(B.RSS_NS)
    rf = B.suite_rfss(1)
    assert {(x.meta["n"], x.meta["k"]) for x in rf} >= {(40, 10), (40, 20), (10, 2), (10, 5)}
    mr = [x for x in B.suite_mrss(1) if x.meta["d"] == 25 and x.meta["n"] == 128][0]
    assert mr.instance.cardinality == 11  # k = floor(sqrt(n)), n >= k^2
    assert np.abs(mr.instance.target).sum() == pytest.approx(math.sqrt(11) / 2)  # ||z||_1 <= sqrt(k)
    X = B.nsn(np.random.default_rng(0), 20000, 3)  # NSN: product of two standard normals, var 1, kurtosis 9
    assert X.var() == pytest.approx(1.0, rel=0.05)
    assert (X ** 4).mean() / X.var() ** 2 == pytest.approx(9.0, rel=0.2)


def test_bad_arguments_name_the_field():
    with pytest.raises(B.BenchError, match="--suite"):
        B.check_args(["nope"], ["exact"], 1.0, 1, 1)
    with pytest.raises(B.BenchError, match="--solvers"):
        B.check_args(["rss"], ["magic"], 1.0, 1, 1)
    with pytest.raises(B.BenchError, match="--time-limit"):
        B.check_args(["rss"], ["exact"], -1.0, 1, 1)
    with pytest.raises(B.BenchError, match="--repeats"):
        B.check_args(["rss"], ["exact"], 1.0, 0, 1)


def test_a_tiny_real_run_writes_everything(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "RSS_NS", (8, 12))
    out = tmp_path / "bench"
    s = B.run_bench(["rss"], ["exact", "heuristic", "cpsat"], time_limit=2.0, repeats=2, out=out, n_jobs=1,
                    store=tmp_path / "b.sqlite", progress=False)
    for name in ("results.csv", "headline.csv", "summary.md", "summary.json", "profile_time.png",
                 "profile_residual.pdf", "residual_vs_time.png", "instances/manifest.json"):
        assert (out / name).exists(), name
    head = {t["solver"]: t for t in s["headline"]}
    assert head["exact"]["within_2x"] == 1.0 and head["exact"]["proven_optimal"] == 4
    assert head["cpsat"]["claimed_optimal_beaten"] == 0
    manifest = json.loads((out / "instances/manifest.json").read_text())
    import milp

    inst = milp.Instance.load(out / "instances" / manifest[0]["file"])
    assert inst.content_hash() == manifest[0]["content_hash"]


def test_bench_rows_carry_the_proven_lower_bound_and_the_counting_estimate(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "MRSS_DS", (4, 25))
    monkeypatch.setattr(B, "MRSS_NS", (8, 12))
    out = tmp_path / "bench"
    B.run_bench(["mrss"], ["exact", "heuristic"], time_limit=1.0, repeats=1, out=out, n_jobs=1,
                store=tmp_path / "b.sqlite", progress=False)
    from pipelines.experiments.bench_report import read_csv

    rows = read_csv(out / "results.csv")
    assert rows and all(r["floor"] is not None and r["floor"] > 0 for r in rows)
    for r in rows:
        if r["solver"] == "exact" and r["lower_bound"] is not None:  # proven optimum >= proven bound
            assert r["lower_bound"] <= r["residual"] * (1 + 1e-9) + 1e-12
    assert "median lower bound (proven)" in (out / "summary.md").read_text()


def test_structured_suite_is_the_constructions_own_instances(monkeypatch):
    import torch

    from models.lenet5 import LeNet5
    from pipelines.constructions.structured import StructuredConstruction

    monkeypatch.setattr(B, "STRUCTURED_POINTS", (("channel", 8), ("pair", 8)))
    features = LeNet5(seed=0).features
    items = B.suite_structured(2, seed=0, features=features)
    assert len({b.id for b in items}) == len(items)
    dims = {b.meta["kind"]: set() for b in items}
    for b in items:
        dims[b.meta["kind"]].add(b.meta["d"])
        assert b.suite == "structured" and b.instance.cardinality is None
    assert dims == {"structured-channel": {150, 400}, "structured-pair": {25}}
    c = StructuredConstruction(features.to(torch.float64), 8, seed=0, domain="auto", blocks="pair")
    by_entry = {(sp.layer + 1, tuple(sp.entry)): sp for sp in c.subproblems()}
    for b in items:
        if b.meta["kind"] == "structured-pair":
            sp = by_entry[(b.meta["layer"], tuple(b.meta["entry"]))]
            assert b.instance.content_hash() == sp.instance.content_hash()
    assert sum(b.meta["kind"] == "structured-pair" for b in items) == 4  # 2 per conv


def test_every_method_is_reported_with_its_distance_to_the_bounds_and_its_time_to_target():
    """Per size: residual / floor and residual - lower bound (medians over instances), time to target; a
    method not in DEFAULT_SOLVERS (a backend registered later) is reported like the others."""
    from pipelines.experiments.bench_report import distance_markdown, methods, time_to_target_markdown

    rows = []
    for i, (lb, fl) in enumerate([(0.1, 0.01), (0.2, 0.02), (0.3, 0.03)]):
        for solver, res, ttb in (("heuristic", 0.5, 0.2), ("newbackend", 0.4, 0.1 * (i + 1))):
            rows.append({**row(f"m{i}", solver, res, suite="mrss", n=64, ttb=ttb), "d": 25, "k": None,
                         "lower_bound": lb, "floor": fl})
    rows = B.annotate(rows)
    assert methods(rows) == ["heuristic", "newbackend"]
    assert [t["solver"] for t in B.headline(rows)] == ["heuristic", "newbackend"]
    text = "\n".join(distance_markdown(rows))
    assert "| 64 | 25 | - | 25 | 20 |" in text  # median of 0.5/f and 0.4/f over f = 0.01, 0.02, 0.03
    assert "| 64 | 25 | - | 0.3 | 0.2 |" in text  # median of 0.5 - lb and 0.4 - lb over lb = 0.1, 0.2, 0.3
    times = "\n".join(time_to_target_markdown(rows))
    assert "| 64 | 25 | - | not reached (0/3) | 0.2 s (3/3) |" in times  # newbackend is the reference everywhere


def test_the_best_lower_bound_of_an_instance_comes_from_any_source():
    rows = [{"id": "a", "solver": "exact", "solution_lower_bound": 0.3, "solution_lower_bound_source": "exact"},
            {"id": "a", "solver": "cpsat", "solution_lower_bound": 0.2, "solution_lower_bound_source": "cpsat"},
            {"id": "b", "solver": "heuristic", "solution_lower_bound": None},
            {"id": "c", "solver": "heuristic", "solution_lower_bound": None}]
    B.best_lower_bounds(rows, {"a": {"lower_bound": 0.1, "lower_bound_source": "lp"},
                               "b": {"lower_bound": 0.05, "lower_bound_source": "lp"}, "c": {"lower_bound": None}})
    assert [(r["lower_bound"], r["lower_bound_source"]) for r in rows] == \
           [(0.3, "exact"), (0.3, "exact"), (0.05, "lp"), (None, "")]


def test_vector_suite_and_warm_started_milp_specs():
    """Issue 13's suite and the <milp>+warm solvers (auto forced onto its heuristic + MILP path)."""
    import milp
    from pipelines.experiments.bench import BenchError, _check_fields, solver_spec, suite_vector

    items = suite_vector(1)
    assert len(items) == 2 * 3 * 2 and {(b.meta["d"], b.meta["n"]) for b in items} == {
        (d, n) for d in (25, 150) for n in (256, 1024, 4096)}
    assert all(b.instance.cardinality is None and b.instance.d == b.meta["d"] for b in items)
    assert [b.instance.content_hash() for b in suite_vector(1)] == [b.instance.content_hash() for b in items]
    assert solver_spec("highs+warm") == ("highs", True) and solver_spec("tabu") == ("tabu", False)
    _check_fields(["vector"], ["highs+warm", "tabu"], 1.0, 1)
    with pytest.raises(BenchError, match="--solvers"):
        _check_fields(["vector"], ["tabu+warm"], 1.0, 1)
    rng = np.random.default_rng(0)
    inst = milp.Instance(rng.standard_normal((60, 3)), rng.uniform(-0.5, 0.5, 3))  # n > 2d: auto alone is tabu
    sol = milp.solve(inst, "auto", time_limit=1.0, params={"milp": "highs"})
    assert sol.solver in ("auto:highs", "auto:heuristic") and sol.error == inst.residual(sol.mask)
