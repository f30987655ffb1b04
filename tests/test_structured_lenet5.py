"""Experiment (b) of issue 12 (structured-lenet5): a tiny config end to end on an untrained LeNet5 and random
images (no data set, no training), the counting estimates on hand examples, MAC counting, the config's
validation and the report's independence from the experiment module."""
import ast
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines import experiments
from pipelines.experiments import structured_lenet5 as sl
from pipelines.experiments import structured_lenet5_report as rep


def test_counting_estimates_on_hand_examples():
    X = np.array([[1.0, -2.0],
                  [-0.5, 3.0],
                  [2.0, 0.5],
                  [-1.5, -1.0]])
    # coordinate ranges: 1 + 2 + 0.5 + 1.5 = 5 and 2 + 3 + 0.5 + 1 = 6.5
    assert sl.subset_sum_range(X) == pytest.approx(6.5)
    assert sl.box_floor(X) == pytest.approx(6.5 * 2 ** (-4 / 2) / 2)
    # first moment: 2^m prod_j 2 eps phi_j(z_j) = 1, checked by plugging the answer back in
    z = np.array([0.3, -0.2])
    eps = sl.density_floor(X, z)
    mu, var = X.sum(0) / 2, (X ** 2).sum(0) / 4
    phi = np.exp(-(z - mu) ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)
    assert 2 ** 4 * np.prod(2 * eps * phi) == pytest.approx(1.0)
    # more candidates of the same kind: the estimate falls
    rng = np.random.default_rng(0)
    small, big = rng.standard_normal((20, 4)), rng.standard_normal((80, 4))
    assert sl.density_floor(big, np.zeros(4)) < sl.density_floor(small, np.zeros(4))


def test_conv_macs_of_lenet5():
    from models.lenet5 import LeNet5

    cost = sl.conv_macs(LeNet5(seed=0).features, (1, 28, 28))
    assert cost["macs"] == 28 * 28 * 6 * 1 * 25 + 14 * 14 * 16 * 6 * 25
    assert cost["macs_nonzero"] == cost["macs"]  # Kaiming-uniform weights: no zeros
    assert cost["largest_activation"] == 6 * 28 * 28


def test_latency_skips_what_is_too_large():
    from torch import nn

    lat = sl.measure_latency(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 8, 8), threads=(1,), batches=(1, 4), repeats=3,
                             budget=0.01, max_call=5.0, largest_activation=2 * 36)
    assert lat["latency_b1_t1_ms"] > 0 and lat["latency_b4_t1_ms"] > 0 and lat["latency_notes"] == ""
    lat = sl.measure_latency(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 8, 8), threads=(1,), batches=(1,), repeats=3,
                             budget=0.01, max_call=5.0, largest_activation=sl.MAX_ACTIVATION_BYTES)
    assert math.isnan(lat["latency_b1_t1_ms"]) and "not run" in lat["latency_notes"]


def test_config_validates_and_is_registered():
    assert "structured-lenet5" in experiments.experiment_names()
    mod = experiments.get_experiment("structured-lenet5")
    assert mod is sl and sl.Config().key() == sl.Config().key()
    assert sl.Config(ns=[64, 16, 16]).ns == (16, 64)
    for bad in ({"ns": (0,)}, {"solvers": ("nope",)}, {"iclr_match": ("weights",)}, {"time_limit": 0},
                {"iclr_match": ("kept",), "iclr_ns": ()}, {"domain": "any"}):
        with pytest.raises(ValueError):
            sl.Config(**bad)


def test_report_never_imports_the_experiment():
    tree = ast.parse(Path(rep.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any("structured_lenet5" in n and "report" not in n for n in names)


def test_tiny_run_end_to_end(tmp_path):
    from models.lenet5 import LeNet5

    model = LeNet5(seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand((24, 1, 28, 28), generator=gen)
    labels = torch.randint(0, 10, (24,), generator=gen)
    config = sl.Config(datasets=("mnist",), ns=(2, 4), pair_ns=(2,), pair_time_limit=0.05,
                       solvers=("auto", "heuristic"), time_limit=0.2,
                       iclr_ns=(1, 2), iclr_time_limit=0.02, iclr_exact_max=30, empirical_images=8, restarts=1, steps=2,
                       stitch_images=2, latency_threads=(1,), latency_batches=(1, 2), latency_repeats=3,
                       latency_budget=0.01)
    out = tmp_path / "run"
    summary = sl.run(config, out=out, progress=False, command="test", n_jobs=1, store=tmp_path / "store.sqlite",
                     targets={"mnist": (model, model.features)}, data={"mnist": (images, labels)})
    rows = summary["results"]
    kinds = [r["construction"] for r in rows]
    assert kinds[0] == "target" and kinds.count("structured") == 2 and "iclr" in kinds
    assert kinds.count("structured-pair") == 1
    for r in rows:
        assert r["per_image_rel"] <= r["adversarial_rel"] * (1 + 1e-9) + 1e-15 or r["construction"] == "target"
        if r["construction"] != "target":
            assert r["ordered"] and r["stitch"] < 1e-9
            assert r["kept_parameters"] <= r["random_parameters"]
            assert r["latency_b1_t1_ms"] > 0
    for r in rows:
        if r["construction"] == "iclr":
            assert 0 <= r["unreachable"] <= r["instances"]
            assert not (r["max_residual_reachable"] > r["max_residual"])
    # every structured n has its random-parameter match in the ICLR rows
    for n in (2, 4):
        assert rep.matched(rows, "mnist", "random", n) is not None
        assert rep.matched(rows, "mnist", "kept", n) is not None
    assert rep.matched(rows, "mnist", "kept", 2, "structured-pair") is not None
    # 7 MRSS per structured n (conv1: 1 input channel, dim 150; conv2: 6 input channels, dim 400); the pair
    # variant: 6 + 96 MRSS of dimension 25
    inst = [r for r in summary["instances"] if r["construction"] == "structured"]
    assert len(inst) == 2 * 7 and {r["dim"] for r in inst} == {150, 400}
    pair = [r for r in summary["instances"] if r["construction"] == "structured-pair"]
    assert len(pair) == 6 + 96 and {r["dim"] for r in pair} <= {25} and {r["output"] for r in pair} == set(range(16))
    inst = summary["instances"]
    for r in inst:
        assert r["residual"] <= r["empty"] + 1e-12  # never worse than the empty subset
        assert r["floor_density"] <= r["floor_box"] * (1 + 1e-9) or r["m"] < 8
    for name in ("results.csv", "instances.csv", "summary.json", "report.md", "config.json", "runs.jsonl",
                 "structured_lenet5_errors.png", "structured_lenet5_errors.pdf", "structured_lenet5_cost.png",
                 "structured_lenet5_floor.png", "structured_lenet5_accuracy.pdf"):
        assert (out / name).exists(), name
    with open(out / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    text = (out / "report.md").read_text()
    assert "Counting floor vs solvers" in text and "limited by" in text and "structured per channel pair" in text
    saved = json.loads((out / "summary.json").read_text())
    assert saved["config_key"] == config.key()
    # the report is rebuilt from summary.json alone
    (out / "report.md").unlink()
    sl.rewrite_report(out)
    assert (out / "report.md").read_text().startswith("# Structured")
    # a rerun of the same config is a store hit and skip_finished returns the recorded summary
    again = sl.run(config, out=out, progress=False, n_jobs=1, store=tmp_path / "store.sqlite", skip_finished=True,
                   targets={"mnist": (model, model.features)}, data={"mnist": (images, labels)})
    assert again["config_key"] == config.key() and len(again["results"]) == len(rows)
