"""Experiment (a) of issue 12 (structured-random): a tiny config end to end, the counting floor on a hand
example, the sampling, and the analysis helpers (crossing, fit, theory exponent)."""
import csv
import json
import math

import numpy as np
import pytest

from pipelines import experiments
from pipelines.experiments import structured_random as sr
from pipelines.experiments import structured_random_report as rep


def test_floor_and_range_on_a_hand_example():
    X = np.array([[1.0, -2.0],
                  [-0.5, 3.0],
                  [2.0, 0.5],
                  [-1.5, -1.0]])
    # coordinate 0: positives 1 + 2 = 3, negatives -0.5 - 1.5 = -2 -> range 5; coordinate 1: 3.5 - (-3) = 6.5
    assert sr.subset_sum_range(X) == pytest.approx(6.5)
    # R 2^(-m/dim) / 2 with m = 4, dim = 2: 6.5 * 2^-2 / 2
    assert sr.counting_floor(X) == pytest.approx(6.5 / 4 / 2)
    # 1-D: three scalars 0.5, -0.25, 1: range 1.75, floor 1.75 * 2^-3 / 2
    assert sr.counting_floor(np.array([0.5, -0.25, 1.0])) == pytest.approx(1.75 / 8 / 2)


def test_sampling_is_seeded_and_in_the_theorems_regime():
    X, z = sr.sample(0, 9, 16, 2)
    X2, z2 = sr.sample(0, 9, 16, 2)
    assert X.shape == (16, 9) and z.shape == (9,)
    assert np.array_equal(X, X2) and np.array_equal(z, z2)
    assert np.abs(z).sum() == pytest.approx(1.0)  # default radius "one": the boundary of ||K[:, t0]||_1 <= 1
    Xu, zu = sr.sample(0, 9, 16, 2, "uniform")
    assert np.array_equal(Xu, X) and np.allclose(zu / np.abs(zu).sum(), z) and np.abs(zu).sum() < 1
    with pytest.raises(ValueError, match="radius"):
        sr.Config(radius="two")
    assert not np.array_equal(sr.sample(0, 9, 16, 3)[1], z)
    assert sr.DIMS == (1, 2, 4, 9, 18, 36)


def test_crossing_fit_and_theory_exponent():
    cr = rep.crossing({4: 1.0, 8: 0.1, 16: 0.01}, 0.1)
    assert cr["kind"] == "interpolated" and cr["n"] == pytest.approx(8.0)
    cr = rep.crossing({4: 1.0, 8: 0.01}, 0.1)  # halfway in log error -> halfway in log n
    assert cr["n"] == pytest.approx(math.sqrt(32))
    assert rep.crossing({4: 0.05, 8: 0.01}, 0.1)["kind"] == "at_first_n"
    nr = rep.crossing({4: 1.0, 8: 0.5}, 0.1)
    assert nr["kind"] == "not_reached" and nr["n"] == 8
    fit = rep.loglog_fit([(1, 3.0), (2, 12.0), (4, 48.0)])
    assert fit["b"] == pytest.approx(2.0) and fit["a"] == pytest.approx(3.0)
    assert rep.loglog_fit([(2, 3.0)]) is None
    assert rep.theory_exponent([1, 36], 1e-2) > 6.0  # dim^6 plus the log^3's share
    n = rep.counting_n(10, 1e-2, 0.7)
    assert n == pytest.approx(10 * math.log2(0.7 * n / 2e-2), rel=1e-6)


def test_config_validates_and_is_registered():
    assert "structured-random" in experiments.experiment_names()
    mod = experiments.get_experiment("structured-random")
    assert mod.NAME == mod.Config.NAME == "structured-random" and callable(mod.rewrite_report)
    c = sr.Config(dims=[2, 1], ns=[8, 4], solvers=["exact"], eps=0.1)
    assert c.dims == (1, 2) and c.ns == (4, 8) and c.eps == (0.1,)
    assert c.key() == sr.Config(dims=(1, 2), ns=(4, 8), solvers=("exact",), eps=(0.1,)).key()
    with pytest.raises(ValueError, match="solvers"):
        sr.Config(solvers=("nope",))
    with pytest.raises(ValueError, match="time_limit"):
        sr.Config(time_limit=0)
    with pytest.raises(ValueError, match="dims"):
        sr.Config(dims=(0,))


def test_tiny_run_end_to_end(tmp_path):
    config = sr.Config(dims=(1, 2), ns=(4, 8), repeats=1, solvers=("exact", "heuristic"), time_limit=0.2,
                       stop_error=0.0, verify_targets=("conv1x1",), verify_ns=(8,), verify_points=100,
                       verify_attack_rounds=1)
    out = tmp_path / "run"
    summary = sr.run(config, out=out, progress=False, command="test", n_jobs=1, store=tmp_path / "store.sqlite")
    for name in ("results.csv", "summary.json", "config.json", "report.md", "runs.jsonl",
                 "error_vs_n.png", "error_vs_n.pdf", "n_needed_vs_dim.png", "n_needed_vs_dim.pdf"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 2 * 1 * 2  # dims x ns x repeats x solvers
    for r in rows:
        X, z = sr.sample(0, int(r["dim"]), int(r["n"]), int(r["repeat"]))
        assert float(r["floor"]) == pytest.approx(sr.counting_floor(X))
        assert float(r["empty_error"]) == pytest.approx(np.abs(z).max())
        assert float(r["error"]) <= float(r["empty_error"]) + 1e-12  # both solvers can return the empty mask
        if r["solver"] == "exact":
            assert r["status"] == "optimal"
    exact = {(r["dim"], r["n"]): float(r["error"]) for r in rows if r["solver"] == "exact"}
    heur = {(r["dim"], r["n"]): float(r["error"]) for r in rows if r["solver"] == "heuristic"}
    assert all(exact[k] <= heur[k] + 1e-12 for k in exact)  # exact is the optimum
    saved = json.loads((out / "summary.json").read_text())
    assert saved["config_key"] == config.key() and saved["experiment"] == "structured-random"
    assert {"medians", "n_needed", "fits", "follow_floor", "status"} <= set(saved["analysis"])
    assert summary["out"] == str(out)
    text = (out / "report.md").read_text()
    assert "Command: `test`" in text and "0.2 s per instance" in text and "dim^6" in text
    # the report is rebuilt from the files alone, and a finished run is recognised
    (out / "report.md").unlink()
    sr.rewrite_report(out)
    assert (out / "report.md").read_text() == text
    again = sr.run(config, out=out, progress=False, n_jobs=1, store=tmp_path / "store.sqlite", skip_finished=True)
    assert again["config_key"] == config.key()
    # the verification section, and --verification-only: that section alone, the sweep's rows kept
    assert "## Verification: empirical <= adversarial <= exact <= certified" in text and "`ordered`: True" in text
    csv_before = (out / "results.csv").read_text()
    ver = sr.run(config, out=out, progress=False, command="again", n_jobs=1, verification_only=True)
    assert (out / "results.csv").read_text() == csv_before and len(ver["verification"]) == 1
    assert "Verification stage: `again`" in (out / "report.md").read_text()


def test_stop_rule_ends_a_dimensions_sweep(tmp_path):
    # dim 1 with exact: n = 4 already within a huge stop_error, so n = 8 is never run
    config = sr.Config(dims=(1,), ns=(4, 8), repeats=1, solvers=("exact",), time_limit=0.2, stop_error=10.0)
    sr.run(config, out=tmp_path / "o", progress=False, n_jobs=1, store=tmp_path / "s.sqlite")
    with open(tmp_path / "o" / "results.csv", newline="") as fh:
        ns = {int(r["n"]) for r in csv.DictReader(fh)}
    assert ns == {4}
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["stopped_at"] == {"1": 4}
