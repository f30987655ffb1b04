"""models.lenet5, models.training and the cache of pipelines.targets (tiny synthetic data only)."""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.lenet5 import CONV_PARAMETERS, LeNet5, conv_parameter_count
from models.training import (TrainConfig, evaluate_accuracy, load_trained, save_trained, train_lenet5)

ROOT = Path(__file__).resolve().parents[1]


def _synthetic(n, seed=0):
    """A learnable toy task: the label is the quadrant-ish position of a bright square."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.1
    for i, c in enumerate(y.tolist()):
        r, col = 2 + 5 * (c // 4), 2 + 6 * (c % 4)
        x[i, 0, r:r + 5, col:col + 5] = 1.0
    return x, y


def test_conv_part_has_2572_parameters():
    m = LeNet5(seed=0)
    assert conv_parameter_count(m) == CONV_PARAMETERS == 2572
    shapes = [tuple(p.shape) for p in m.features.parameters()]
    assert shapes == [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,)]
    assert [type(l).__name__ for l in m.features] == ["Conv2d", "ReLU", "MaxPool2d"] * 2
    assert sum(p.numel() for p in m.classifier.parameters()) == 784 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10


def test_shapes():
    m = LeNet5(seed=0).eval()
    x = torch.rand(5, 1, 28, 28)
    assert m.features(x).shape == (5, 16, 7, 7)
    assert m(x).shape == (5, 10)
    assert torch.equal(m(x), m.classifier(m.features(x)))


def test_seeded_init_kaiming_uniform_zero_bias():
    state = torch.get_rng_state()
    a, b, c = LeNet5(seed=3), LeNet5(seed=3), LeNet5(seed=4)
    assert torch.equal(state, torch.get_rng_state())  # construction does not touch the global RNG
    for (na, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb)
        if na.endswith("weight"):
            assert not torch.equal(pa, pc)
            fan_in = pa[0].numel()
            bound = math.sqrt(6.0 / fan_in)
            assert float(pa.abs().max()) <= bound and float(pa.abs().max()) > 0.8 * bound
        else:
            assert float(pa.abs().max()) == 0.0


def test_training_is_seeded_and_learns():
    train, test = _synthetic(400, 1), _synthetic(200, 2)
    m1, i1 = train_lenet5(train, test, epochs=2, seed=5, batch_size=32, progress=False, num_threads=1)
    m2, i2 = train_lenet5(train, test, epochs=2, seed=5, batch_size=32, progress=False, num_threads=1)
    for (k, v), w in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(v, w), k
    assert i1["test_accuracy"] == i2["test_accuracy"] > 50.0
    assert i1["cached"] is False and len(i1["history"]) == 2 and i1["num_threads"] == 1
    assert i1["test_accuracy"] == evaluate_accuracy(m1, *test)
    m3, _ = train_lenet5(train, None, epochs=1, seed=6, batch_size=32, progress=False)
    assert not torch.equal(m3.features[0].weight, m1.features[0].weight)
    assert not m1.training and m1.features[0].weight.is_contiguous()


def test_evaluate_accuracy_percent():
    m = LeNet5(seed=0)
    x = torch.rand(10, 784)  # flat images are accepted too
    pred = m(x.reshape(-1, 1, 28, 28)).argmax(1)
    assert evaluate_accuracy(m, x, pred) == 100.0
    assert evaluate_accuracy(m, x, (pred + 1) % 10) == 0.0
    with pytest.raises(ValueError, match="images"):
        evaluate_accuracy(m, torch.rand(3, 1, 32, 32), torch.zeros(3))


def test_config_key():
    a = TrainConfig("mnist", data_fingerprint="x")
    assert a.key() == TrainConfig("mnist", data_fingerprint="x").key()
    assert a.key() != TrainConfig("mnist", epochs=49, data_fingerprint="x").key()
    assert a.key() != TrainConfig("mnist", data_fingerprint="y").key()
    assert a.stem().startswith("lenet5-mnist-e50-s0-") and len(a.key()) == 64
    with pytest.raises(Exception):
        a.epochs = 3  # frozen


def test_cache_roundtrip_and_second_call_does_not_train(tmp_path, monkeypatch):
    from models import training
    from pipelines import targets

    monkeypatch.setenv("SLTH_CACHE_DIR", str(tmp_path))
    train, test = _synthetic(256, 1), _synthetic(64, 2)
    m1, i1 = targets.get_trained_lenet5("mnist", epochs=1, seed=0, progress=False, train=train, test=test)
    assert i1["cached"] is False
    pt = Path(i1["path"])
    assert pt.parent == tmp_path / "models" and pt.suffix == ".pt" and pt.with_suffix(".json").is_file()
    meta = json.loads(pt.with_suffix(".json").read_text())
    assert meta["config"]["epochs"] == 1 and meta["test_accuracy"] == i1["test_accuracy"]
    assert not [p for p in pt.parent.iterdir() if p.name.endswith(".tmp")]

    def no_training(*a, **k):
        raise AssertionError("the second call must load the cached model")

    monkeypatch.setattr(training, "train_lenet5", no_training)
    m2, i2 = targets.get_trained_lenet5("mnist", epochs=1, seed=0, progress=False, train=train, test=test)
    assert i2["cached"] is True and i2["test_accuracy"] == i1["test_accuracy"]
    for v, w in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(v, w)
    # other data under the same name is another model: it must train (and here, fail loudly)
    other = (train[0].flip(0), train[1].flip(0))
    with pytest.raises(AssertionError, match="second call"):
        targets.get_trained_lenet5("mnist", epochs=1, seed=0, progress=False, train=other, test=test)


def test_corrupt_cache_entry_is_ignored(tmp_path):
    train = _synthetic(64, 1)
    model, info = train_lenet5(train, train, epochs=1, progress=False)
    cfg = TrainConfig("mnist", epochs=1, data_fingerprint="abc")
    pt = save_trained(model, info, cfg, tmp_path)
    loaded, linfo = load_trained(cfg, tmp_path)
    assert linfo["cached"] is True and torch.equal(loaded.features[0].weight, model.features[0].weight)
    assert load_trained(TrainConfig("mnist", epochs=2, data_fingerprint="abc"), tmp_path) is None
    pt.write_bytes(pt.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="ignoring unreadable cached model"):
        assert load_trained(cfg, tmp_path) is None


def test_parallel_training_of_two_datasets(tmp_path, rng):
    """ensure_trained_lenet5 trains in two worker processes (tiny IDX data via --data-dir)."""
    from pipelines.data import write_idx
    from pipelines.targets import ensure_trained_lenet5

    for prefix, n in (("train", 64), ("t10k", 16)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))
    cache = tmp_path / "cache"
    infos = ensure_trained_lenet5(("mnist", "fashion-mnist"), epochs=1, data_dir=tmp_path, progress=False,
                                  parallel=True, cache_dir=cache)
    assert set(infos) == {"mnist", "fashion-mnist"}
    assert all(i["cached"] for i in infos.values())  # trained by the workers, loaded here
    assert len(list(cache.glob("*.pt"))) == 2


def test_models_package_imports_no_solver_and_no_pipelines():
    for path in (ROOT / "models").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in {"milp", "pipelines", "pulp", "ortools", "highspy", "gurobipy"}, \
                    f"{path.name} imports {name}"
