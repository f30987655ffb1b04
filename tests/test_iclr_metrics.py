"""The ICLR LeNet5 metrics on tiny networks whose answers are known by hand."""
import numpy as np
import pytest
import torch
from torch import nn

import milp
from pipelines import metrics as M
from pipelines.experiments import iclr_lenet5 as E


def test_figure3_metric_by_hand():
    params = [("w", np.array([[1.0, -2.0]])), ("b", np.array([4.0]))]
    approx = [("w", np.array([[1.1, -2.0]])), ("b", np.array([3.0]))]
    worst, per = M.max_rel_weight_error(params, approx)
    assert per["w"] == pytest.approx(0.1 / 2.0) and per["b"] == pytest.approx(1.0 / 4.0)
    assert worst == pytest.approx(0.25)


def test_figure4_metrics_by_hand_differ_between_paper_and_code():
    f = torch.tensor([[1.0, 2.0], [10.0, 0.0]], dtype=torch.float64)
    g = torch.tensor([[1.0, 2.2], [10.0, 0.5]], dtype=torch.float64)
    m = M.output_errors(f, g)
    assert m["per_image"] == pytest.approx(0.1)      # image 1: 0.2 / 2
    assert m["global"] == pytest.approx(0.05)        # 0.5 / 10
    assert m["max_abs"] == pytest.approx(0.5)


def test_conv_outputs_of_a_one_weight_network_by_hand():
    net = nn.Sequential(nn.Conv2d(1, 1, 1))
    approx = [("0.weight", np.full((1, 1, 1, 1), 2.5)), ("0.bias", np.array([1.0]))]
    with torch.no_grad():
        net[0].weight.fill_(2.0)
        net[0].bias.fill_(1.0)
    images = np.zeros((2, 1, 3, 3), dtype=np.float32)
    images[0, 0, 1, 1] = 1.0   # f max = 3, error 0.5
    images[1, 0, 0, 0] = 0.5   # f max = 2, error 0.25

    class Wrap(nn.Module):
        def __init__(self, features):
            super().__init__()
            self.features = features

    target = E.substituted_model(Wrap(net), E.conv_parameters(net), dtype=torch.float64)
    approx_net = E.substituted_model(Wrap(net), approx, dtype=torch.float64)
    m = M.output_errors(M.conv_outputs(target.features, images), M.conv_outputs(approx_net.features, images))
    assert m["per_image"] == pytest.approx(0.5 / 3.0)
    assert m["global"] == pytest.approx(0.5 / 3.0)
    assert m["max_abs"] == pytest.approx(0.5)


def test_instances_masks_and_substitution_roundtrip():
    params = [("w", np.array([[0.3, -0.2], [0.05, 0.6]])), ("b", np.array([0.1]))]
    instances, X, flat = E.build_instances(params, n=12, seed=0)
    assert len(instances) == 5 and X.shape == (5, 12)
    assert np.array_equal(flat, [0.3, -0.2, 0.05, 0.6, 0.1])
    masks = np.stack([milp.solve(i, "exact").mask for i in instances])
    approx = E.approximate(params, masks, X)
    assert [q.shape for _, q in approx] == [p.shape for _, p in params]
    resid = np.abs(np.concatenate([q.reshape(-1) for _, q in approx]) - flat)
    expected = [inst.residual(m) for inst, m in zip(instances, masks)]
    assert np.allclose(resid, expected, rtol=0, atol=1e-15)
    # samples are fresh per (seed, n) and reproducible
    assert np.array_equal(E.sample_candidates(0, 12, 5), X)
    assert not np.array_equal(E.sample_candidates(1, 12, 5), X)


def test_accuracy_by_hand():
    class Sign(nn.Module):
        def forward(self, x):
            s = x.flatten(1).sum(1)
            return torch.stack([-s, s], dim=1)

    images = np.array([[1.0], [-1.0], [2.0], [-3.0]], dtype=np.float32)
    labels = np.array([1, 0, 0, 0])
    assert M.accuracy(Sign(), images, labels) == pytest.approx(75.0)


def test_residual_comparison_against_exact_by_hand():
    from pipelines.experiments.iclr_lenet5_report import residual_comparison

    ref = np.array([1e-3, 2e-3, 0.0, 4e-3])
    res = np.array([1e-3, 5e-3, 0.0, 6e-3])  # ratios 1, 2.5, 1 (0/0 floored), 1.5
    c = residual_comparison(res, ref)
    assert c["count"] == 4 and c["worse_than_exact"] == 2
    assert c["share_equal"] == 0.5 and c["share_within_2x"] == 0.75
    assert c["max_ratio"] == pytest.approx(2.5) and c["median_ratio"] == pytest.approx(1.25)
    # an exact optimum of zero is only matched by zero
    assert residual_comparison(np.array([1e-9]), np.array([0.0]))["share_within_2x"] == 0.0


def test_sweep_point_metrics_are_cached_by_content_and_damage_is_recomputed(tmp_path, monkeypatch):
    from models.lenet5 import LeNet5

    rng = np.random.default_rng(0)
    model = LeNet5(seed=3)
    data = {"train": (rng.random((6, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 6)),
            "test": (rng.random((4, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 4))}
    params = E.conv_parameters(model.features)
    cache = tmp_path / "metrics"
    args = (model, params, data, 3, "exact", 0, None, 1, None, False, "mnist")
    first = E.run_sweep_point(*args, metrics_cache=cache)
    assert len(list(cache.glob("*.json"))) == 1 and first.max_rel_output_error_train > 0

    real = E.conv_outputs
    monkeypatch.setattr(E, "conv_outputs", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = E.run_sweep_point(*args, metrics_cache=cache)  # same model, masks and data: from the cache
    assert (again.max_rel_output_error_train, again.max_rel_output_error_test, again.test_accuracy) == \
           (first.max_rel_output_error_train, first.max_rel_output_error_test, first.test_accuracy)
    with pytest.raises(AssertionError, match="recomputed"):
        E.run_sweep_point(*args, metrics_cache=cache, reuse_metrics=False)
    with pytest.raises(AssertionError, match="recomputed"):  # other data: another key
        other = {"train": (data["train"][0] * 0.5, data["train"][1]), "test": data["test"]}
        E.run_sweep_point(model, params, other, 3, "exact", 0, None, 1, None, False, "mnist", metrics_cache=cache)

    monkeypatch.setattr(E, "conv_outputs", real)
    entry = next(cache.glob("*.json"))
    entry.write_text("{not json")
    fixed = E.run_sweep_point(*args, metrics_cache=cache)  # damaged entry: recomputed, rewritten
    assert fixed.max_rel_output_error_train == first.max_rel_output_error_train
    assert entry.read_text().startswith("{\"key\"")


def test_figure3_metric_of_an_all_zero_tensor():
    params = [("w", np.array([1.0, -2.0])), ("b", np.zeros(2))]
    assert M.max_rel_weight_error(params, [("w", params[0][1]), ("b", np.zeros(2))]) == (0.0, {"w": 0.0, "b": 0.0})
    assert M.max_rel_weight_error(params, [("w", params[0][1]), ("b", np.array([0.0, 1e-3]))])[0] == float("inf")


def test_a_tiny_run_writes_everything_and_its_report_can_be_redrawn(tmp_path, monkeypatch, rng):
    """The whole experiment on 64 random IDX images, 1 epoch, n = 3 (exact solver), in a private cache."""
    from pipelines.data import write_idx

    monkeypatch.setenv("SLTH_CACHE_DIR", str(tmp_path / "cache"))
    data_dir = tmp_path / "idx"
    data_dir.mkdir()
    for prefix, n in (("train", 64), ("t10k", 32)):
        write_idx(data_dir / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(data_dir / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    config = E.Config(datasets=("mnist",), ns=(3,), solvers=("exact",), epochs=1)
    out = tmp_path / "out"
    s = E.run(config, out=out, n_jobs=1, data_dir=data_dir, progress=False, command="slth reproduce iclr-lenet5")
    for name in ("results.csv", "residuals.npz", "figure3_weight_error.png", "figure4_output_error.pdf",
                 "summary.json", "report.md", "config.json"):
        assert (out / name).is_file(), name
    assert s["config_key"] == config.key() and s["settings"]["ns"] == [3]
    row = s["results"][0]
    assert row["statuses"] == {"optimal": 2572} and 0 < row["max_rel_weight_error"] < float("inf")
    assert len(list((tmp_path / "cache" / "stores" / "iclr-metrics").glob("*.json"))) == 1
    csv_before = (out / "results.csv").read_text()
    (out / "report.md").unlink()
    E.rewrite_report(out)
    assert (out / "report.md").read_text().startswith("# ICLR 2022 LeNet5 experiment")
    assert (out / "results.csv").read_text() == csv_before
    # the keyword wrapper of earlier callers runs the same config: same numbers, from the caches
    again = E.run_experiment(datasets=["mnist"], ns=[3], solvers=["exact"], epochs=1, out=out, n_jobs=1,
                             data_dir=data_dir, progress=False)
    keys = ("max_rel_weight_error", "max_rel_output_error_train", "global_rel_output_error_test", "test_accuracy")
    assert [again["results"][0][k] for k in keys] == [row[k] for k in keys]
    assert again["timing"]["datasets"]["mnist"]["model_was_cached"] is True
