"""The rfss-density experiment's pieces that need no data set: config checks, the counting estimate against exact
optima of real RFSS instances, n-needed interpolation, report rewrite, and the slth reproduce flags."""
import math

import numpy as np
import pytest

import milp
from pipelines.cli import main
from pipelines.experiments import experiment_names, get_experiment
from pipelines.experiments.rfss_density import (Config, RfssDensityError, _f1_grid, counting_median, matched_ks,
                                                sum_densities, tradeoff_k)
from pipelines.experiments.rfss_density_report import n_needed, rewrite, write_all


def test_registered_and_reachable():
    assert "rfss-density" in experiment_names()
    assert get_experiment("rfss-density").NAME == "rfss-density"


@pytest.mark.parametrize("field,value,match", [
    ("ks", (0,), "ks"), ("ks", (25,), "ks"), ("n", 50, "n:"), ("datasets", ("cifar",), "datasets"),
    ("whole", ((4, 5),), "whole"), ("tradeoff_densities", (1.5,), "tradeoff_densities"),
])
def test_bad_config_fields_are_refused(field, value, match):
    with pytest.raises(RfssDensityError, match=match):
        Config(**{field: value})


def test_config_normalises_and_hashes():
    a, b = Config(ks=[6, 1, 3, 12, 6]), Config(ks=(1, 3, 6, 12))
    assert a.ks == (1, 3, 6, 12) and a.key() == b.key()
    assert tradeoff_k(24, 0.125) == 3 and tradeoff_k(8, 0.05) == 1


def test_product_density_bins_sum_to_one_and_match_the_formula():
    p = _f1_grid(1e-3)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    # density of V u at y = 0.5 is -ln(0.5) / 2
    assert p[len(p) // 2 + 500] / 1e-3 == pytest.approx(-math.log(0.5) / 2, rel=1e-3)


def test_counting_estimate_predicts_the_median_exact_optimum():
    """Real RFSS / RSS instances with the construction's candidate law, solved exactly: the median optimum is
    within a factor 2 of the counting estimate (it is an estimate, not a bound)."""
    rng = np.random.default_rng(0)
    dens = sum_densities(14)
    for n, k in ((14, 3), (14, 7), (14, None)):
        errs, zs = [], []
        for _ in range(300):
            cand = rng.uniform(-1, 1, n) * rng.uniform(0, 1, n)
            z = rng.uniform(-0.2, 0.2)
            errs.append(milp.solve(milp.Instance(cand, z, cardinality=k), solver="exact").error)
            zs.append(z)
        est = np.median(counting_median(np.array(zs), n, k, dens))
        assert 0.5 < np.median(errs) / est < 2.0, (n, k, np.median(errs), est)


def test_matched_rss_points_are_2k_samples_within_the_exact_range():
    assert matched_ks(Config(n=24, ks=(1, 3, 6, 12))) == [1, 3, 6]  # 2k = 24 is the plain RSS row itself
    assert matched_ks(Config(n=24, ks=(1, 12), rss=False)) == [1, 12]
    assert matched_ks(Config(n=44, ks=(20, 23))) == [20]  # RSS over 46 samples: beyond the exact solver
    assert matched_ks(Config(rss_matched=False)) == []


def test_n_needed_interpolates_in_log_error():
    rows = [{"density": "0.5", "n": str(n), "e": str(e)} for n, e in ((8, 1e-2), (16, 1e-4), (24, 1e-6))]
    assert n_needed(rows, "e", 1e-5)[0.5] == pytest.approx(20.0)
    assert math.isnan(n_needed(rows, "e", 1e-9)[0.5])


def test_report_is_written_and_rewritten_from_its_csvs(tmp_path):
    head = [{"dataset": "mnist", "method": m, "n": n, "k": k, "matched_k": mk, "density": d, "measured_density": d,
             "instances": 10, "kept_per_entry": 2.0,
             "optimal": 10, "max_residual": 0.1, "median_residual": e, "p99_residual": 0.05, "share_above_1e-3": 0.5,
             "counting_median": e, "max_rel_weight_error": 0.2, "logits_err_abs": 1.0, "logits_err_rel": 0.1,
             "logits_err_median": 0.5, "accuracy": 0.9, "target_accuracy": 0.95, "certified_head": 10.0,
             "input_bound": 3.0, "random_params": 1000, "kept_params": 100, "kept_V": 80, "target_params": 50,
             "solver_seconds": 0.1, "wall_seconds": 0.2, "worst_entry": "layer 0 weight (0, 0) target 1"}
            for m, n, k, mk, d, e in (("rfss", 8, 2, "", 0.25, 1e-2), ("rfss", 8, 4, "", 0.5, 1e-3),
                                      ("rss", 8, "", "", 0.45, 5e-4), ("rss-matched", 4, "", 2, 0.24, 4e-2))]
    trade = [{"dataset": "mnist", "layer": "84->10", "n": n, "k": n // 2, "density": 0.5, "instances": 850,
              "optimal": 850, "median_residual": 10.0 ** -n, "p90_residual": 1, "max_residual": 1,
              "counting_median": 10.0 ** -n, "solver_seconds": 0} for n in (4, 8)]
    summary = {"command": "test", "config_key": "x", "config": {}, "n_jobs": 1, "wall_seconds": 1.0}
    write_all(head, trade, [], summary, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| mnist | rss | 8 | free |" in text and "counting estimate" in text
    assert "| mnist | rss-matched | 4 | free (~2) | 0.2400 |" in text
    assert "mnist, k = 2: RSS over 2k = 4 samples" in text and "ratio 4;" in text and "C(8, 2) = 28" in text
    for stem in ("density", "tradeoff"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 0 and (tmp_path / f"{stem}.pdf").stat().st_size > 0
    (tmp_path / "report.md").unlink()
    rewrite(tmp_path)
    assert (tmp_path / "report.md").read_text() == text


def test_reproduce_maps_ns_and_ks_and_refuses_what_it_does_not_take(capsys, tmp_path):
    from pipelines.cli import build_parser
    from pipelines.cli.reproduce import config_from_args

    exp = get_experiment("rfss-density")
    args = build_parser("reproduce").parse_args(["reproduce", "rfss-density", "--ns", "16", "--ks", "2,4",
                                                 "--dataset", "mnist"])
    c = config_from_args(exp, args)
    assert c.n == 16 and c.ks == (2, 4) and c.datasets == ("mnist",)
    assert main(["reproduce", "rfss-density", "--ns", "16,20", "--out", str(tmp_path)]) == 2
    assert "takes one n" in capsys.readouterr().err
    assert main(["reproduce", "rfss-density", "--ks", "30", "--out", str(tmp_path)]) == 2
    assert "ks" in capsys.readouterr().err
