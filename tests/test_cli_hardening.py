"""Malformed inputs and out-of-range flags: one line naming the file/flag and the field, exit code 2,
and no work done before the refusal (pruned-network files, numeric flags, output paths, verify on
another architecture or an unregistered construction)."""
import json
import math
import resource
import time

import numpy as np
import pytest
import torch
from torch import nn

import milp
from models.lenet5 import LeNet5
from models.random_cnn import FORMAT, ConstructionError, PrunedRandomCNN
from pipelines.cli import main
from pipelines.constructions import construct

FAST = ["--solver", "exact", "--n-jobs", "1", "--quiet"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLTH_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture()
def lenet_file(tmp_path):
    path = tmp_path / "lenet5.pt"
    torch.save(LeNet5(seed=7).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tiny():
    """A pruned network for a one-conv target (Conv2d(1, 2, 3)), n = 2: built once, in milliseconds."""
    torch.manual_seed(0)
    t = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)).double()
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(0.4)
    c, _ = construct(t, 2, solver="exact")
    return c.network


def blob_of(g: PrunedRandomCNN, extra=None) -> dict:
    return {"format": FORMAT, "n": g.n, "spec": json.dumps(g.layers_spec), "construction": g.construction,
            "scales": json.dumps(g.scales), "extra": json.dumps(extra or {}),
            "state_dict": {k: v.clone() for k, v in g.state_dict().items()}}


def one_error_line(capsys) -> str:
    """The one error line (argparse prints its usage lines before it; our own errors are that line alone)."""
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert "Traceback" not in err and lines and ": error: " in lines[-1], err
    assert sum(": error: " in line for line in lines) == 1, err
    return lines[-1]


def refused(capsys, argv, *needles):
    assert main([str(a) for a in argv]) == 2
    err = one_error_line(capsys)
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# ------------------------------------------------------------------ pruned-network files
def _load_error(tmp_path, blob, name="p.pt") -> str:
    path = tmp_path / name
    torch.save(blob, path)
    with pytest.raises(ConstructionError) as info:
        PrunedRandomCNN.load(path)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and msg.startswith(f"{path}: "), msg
    return msg


def test_a_good_file_round_trips(tmp_path, tiny):
    torch.save(blob_of(tiny), tmp_path / "ok.pt")
    h = PrunedRandomCNN.load(tmp_path / "ok.pt")
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(h(x), tiny(x))


def test_format_1_files_still_load(tmp_path, tiny):
    blob = blob_of(tiny)
    blob["format"] = "slth-pruned-random-cnn/1"
    del blob["scales"], blob["construction"], blob["state_dict"]["output_scale.value"]
    torch.save(blob, tmp_path / "v1.pt")
    h = PrunedRandomCNN.load(tmp_path / "v1.pt")
    assert h.construction == "iclr" and h.scales == [1.0]


@pytest.mark.parametrize("change,field", [
    (lambda b: b.pop("spec"), "spec: missing"),
    (lambda b: b.pop("state_dict"), "state_dict: missing"),
    (lambda b: b.update(surprise=1), "surprise: unknown key"),
    (lambda b: b.update(spec="[{"), "spec: not valid JSON"),
    (lambda b: b.update(spec=json.dumps({"type": "conv"})), "spec: expected a non-empty list"),
    (lambda b: b.update(spec=json.dumps([{"type": "conv", "block": {"index": 0, "c0": 1}}])), "spec[0].block"),
    (lambda b: b.update(spec=json.dumps([{"type": "tanh"}])), "spec[0].type"),
    (lambda b: b.update(spec=json.dumps([{"type": "relu"}])), "spec: no convolution"),
    (lambda b: b.update(n=0), "n: expected an integer"),
    (lambda b: b.update(n="2"), "n: expected an integer"),
    (lambda b: b.update(scales="[NaN]"), "scales[0]"),
    (lambda b: b.update(scales="[1.0, 2.0]"), "scales: expected null or a list of 1"),
    (lambda b: b.update(construction=3), "construction: expected a construction name"),
    (lambda b: b.update(extra="[]"), "extra: expected a JSON object"),
    (lambda b: b.update(state_dict=[1, 2]), "state_dict: expected a dict"),
])
def test_wrong_keys_and_fields_are_one_line_naming_the_field(tmp_path, tiny, change, field):
    blob = blob_of(tiny)
    change(blob)
    assert field in _load_error(tmp_path, blob)


def _spec_with(tiny, **block):
    spec = json.loads(json.dumps(tiny.layers_spec))
    spec[0]["block"].update(block)
    return json.dumps(spec)


def test_a_huge_channel_count_is_refused_fast_without_allocating(tmp_path, tiny):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    blob = blob_of(tiny)
    blob["spec"] = _spec_with(tiny, c1=10 ** 9)  # beyond any bound
    assert "spec[0].block.c1" in _load_error(tmp_path, blob, "a.pt")
    blob = blob_of(tiny)  # within the bounds, but the tensors present are tiny: 65536 * 2^20 hidden channels
    blob["spec"], blob["n"] = _spec_with(tiny, c1=65536), 2 ** 20
    msg = _load_error(tmp_path, blob, "b.pt")
    assert "net.0.U.weight_orig" in msg and "c1=65536" in msg and "shape" in msg
    assert time.perf_counter() - t0 < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing big allocated


def test_the_module_itself_refuses_a_network_larger_than_memory():
    spec = [{"type": "conv", "block": {"index": 0, "c0": 1, "c1": 65536, "kernel": [3, 3], "stride": [1, 1],
                                       "padding": [0, 0], "bias": True}}]
    t0 = time.perf_counter()
    with pytest.raises(ConstructionError, match="GiB"):
        PrunedRandomCNN(spec, 2 ** 20)
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("key,tensor,field", [
    ("net.0.U.weight_orig", torch.zeros(3, 1, 3, 3, dtype=torch.float64), "shape (3, 1, 3, 3)"),
    ("net.0.V.weight_mask", torch.ones(2, 4, 1, 1, dtype=torch.float64) * 0.5, "masks hold only 0 and 1"),
    ("net.0.U.weight_mask", torch.full((4, 1, 3, 3), 2.0, dtype=torch.float64), "masks hold only 0 and 1"),
    ("net.0.U.weight_orig", torch.full((4, 1, 3, 3), math.nan, dtype=torch.float64), "NaN"),
    ("net.0.U.bias_orig", torch.tensor([1.0, math.inf, 0.0, 0.0], dtype=torch.float64), "NaN or inf"),
    ("net.0.U.weight_orig", torch.zeros(4, 1, 3, 3, dtype=torch.int64), "dtype"),
    ("output_scale.value", torch.tensor(3.0, dtype=torch.float64), "product of the scales"),
    ("net.9.U.weight_orig", torch.zeros(1), "net.9.U.weight_orig"),
])
def test_bad_tensors_are_named(tmp_path, tiny, key, tensor, field):
    blob = blob_of(tiny)
    blob["state_dict"][key] = tensor
    msg = _load_error(tmp_path, blob)
    assert field in msg and key in msg, msg


def test_a_missing_tensor_is_named(tmp_path, tiny):
    blob = blob_of(tiny)
    del blob["state_dict"]["net.0.V.weight_mask"]
    assert "net.0.V.weight_mask" in _load_error(tmp_path, blob)


def test_verify_reports_a_damaged_file_in_one_line(tmp_path, tiny, capsys):
    blob = blob_of(tiny)
    blob["state_dict"]["net.0.U.weight_mask"] = torch.full((4, 1, 3, 3), 0.5, dtype=torch.float64)
    torch.save(blob, tmp_path / "bad.pt")
    refused(capsys, ["verify", tmp_path / "bad.pt", "--dataset", "none"], "bad.pt", "net.0.U.weight_mask")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    refused(capsys, ["verify", tmp_path / "junk.pt", "--dataset", "none"], "junk.pt")


# ------------------------------------------------------------------ verify: architecture and construction
def test_verify_against_another_architecture_names_the_mismatch(tmp_path, tiny, lenet_file, capsys):
    tiny.save(tmp_path / "tiny.pt", extra={"target": str(lenet_file)})
    refused(capsys, ["verify", tmp_path / "tiny.pt", "--dataset", "none", "--quiet"],
            "tiny.pt", "another architecture", "layer 0", "Conv2d(1, 2", "Conv2d(1, 6")
    refused(capsys, ["verify", tmp_path / "tiny.pt", "--target", lenet_file, "--dataset", "none", "--quiet"],
            "--target", "layer 0")


def test_verify_against_a_named_target_of_another_architecture_trains_nothing(tmp_path, tiny, capsys, monkeypatch):
    import pipelines.targets

    def no_training(*a, **k):
        raise AssertionError("the target must not be loaded (or trained)")

    monkeypatch.setattr(pipelines.targets, "load_target", no_training)
    tiny.save(tmp_path / "tiny.pt", extra={"target": "lenet5-mnist"})
    refused(capsys, ["verify", tmp_path / "tiny.pt", "--dataset", "none"], "tiny.pt", "lenet5-mnist", "layer 0")


def test_verify_refuses_an_unregistered_construction(tmp_path, tiny, lenet_file, capsys):
    blob = blob_of(tiny, extra={"target": str(lenet_file)})
    blob["construction"] = "nope"
    torch.save(blob, tmp_path / "nope.pt")
    refused(capsys, ["verify", tmp_path / "nope.pt", "--dataset", "none"], "nope.pt", "construction", "'nope'")


def test_verify_refuses_a_target_of_the_wrong_type(tmp_path, tiny, capsys):
    tiny.save(tmp_path / "t.pt", extra={"target": 5})
    refused(capsys, ["verify", tmp_path / "t.pt", "--dataset", "none"], "t.pt", "extra.target")


@pytest.mark.parametrize("flag,value", [("--restarts", "0"), ("--restarts", "-1"), ("--steps", "-5"),
                                        ("--images", "0"), ("--restarts", "100000"), ("--seed", str(2 ** 31))])
def test_verify_range_checks_its_numbers(tmp_path, flag, value, capsys):
    refused(capsys, ["verify", tmp_path / "x.pt", flag, value], flag)


def test_verify_checks_the_data_dir(tmp_path, tiny, capsys):
    tiny.save(tmp_path / "t.pt")
    refused(capsys, ["verify", tmp_path / "t.pt", "--data-dir", tmp_path / "nodata"], "--data-dir")


# ------------------------------------------------------------------ solve / export / batch
@pytest.fixture()
def instance(tmp_path):
    return milp.Instance(np.random.default_rng(0).uniform(-1, 1, 6), 0.2).save(tmp_path / "i.json")


@pytest.mark.parametrize("flag,value", [
    ("--threads", "100000"), ("--threads", "0"), ("--threads", "257"), ("--seed", str(2 ** 31)), ("--seed", "-1"),
    ("--time-limit", "nan"), ("--time-limit", "inf"), ("--time-limit", "-1"), ("--time-limit", "0"),
    ("--time-limit", "1e308"),
])
def test_solve_range_checks_its_numbers(instance, flag, value, capsys):
    refused(capsys, ["solve", instance, "--solver", "cpsat", flag, value], flag)


def test_solve_takes_the_largest_thread_count(instance, capsys):
    assert main(["solve", str(instance), "--solver", "exact", "--threads", "256", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "optimal"


def test_export_checks_its_output_before_reading(tmp_path, instance, capsys):
    refused(capsys, ["export", instance, "--out", tmp_path / "missing" / "m.mps"], "--out", "does not exist")
    refused(capsys, ["export", instance, "--out", tmp_path / "m.txt"], "--out", ".mps or .lp")
    (tmp_path / "dir.mps").mkdir()
    refused(capsys, ["export", instance, "--out", tmp_path / "dir.mps"], "--out", "is a folder")
    refused(capsys, ["export", instance, "--out", instance / "m.mps"], "--out", "not a folder")
    refused(capsys, ["export", tmp_path / "nothing.json", "--out", tmp_path / "missing" / "m.mps"], "--out")


@pytest.fixture()
def no_solving(monkeypatch):
    import milp.batch

    def fail(*a, **k):
        raise AssertionError("nothing may be solved")

    monkeypatch.setattr(milp.batch, "solve_many", fail)


@pytest.mark.parametrize("flag,value", [("--chunk-size", "0"), ("--n-jobs", "0"), ("--n-jobs", "100000"),
                                        ("--n-jobs", "-2"), ("--time-limit", "-3"), ("--seed", str(2 ** 40))])
def test_batch_range_checks_its_numbers(instance, flag, value, capsys):
    refused(capsys, ["batch", instance, flag, value], flag)


def test_batch_checks_out_and_store_before_solving(tmp_path, instance, no_solving, capsys):
    refused(capsys, ["batch", instance, "--out", tmp_path / "missing" / "r.json"], "--out", "missing")
    refused(capsys, ["batch", instance, "--out", tmp_path], "--out", "is a folder")
    refused(capsys, ["batch", instance, "--store", instance / "s.sqlite"], "--store", "is a file")
    refused(capsys, ["batch", instance, "--store", tmp_path], "--store", "is a folder")
    assert not (tmp_path / "missing").exists()


# ------------------------------------------------------------------ prune
@pytest.mark.parametrize("flag,value", [("--n", "0"), ("--n", "10001"), ("--n-jobs", "0"), ("--seed", str(2 ** 31)),
                                        ("--time-limit", "nan")])
def test_prune_range_checks_its_numbers(tmp_path, lenet_file, flag, value, capsys):
    argv = ["prune", "--target", lenet_file, "--n", "2", "--out", tmp_path / "p.pt", flag, value]
    refused(capsys, argv, flag)


@pytest.mark.parametrize("out,needle", [("missing/x.pt", "does not exist"), (".", "is a folder"),
                                        ("lenet5.pt/x.pt", "not a folder")])
def test_prune_checks_out_before_any_work(tmp_path, lenet_file, out, needle, capsys, monkeypatch):
    import pipelines.constructions

    def fail(*a, **k):
        raise AssertionError("nothing may be pruned")

    monkeypatch.setattr(pipelines.constructions, "prune", fail)
    t0 = time.perf_counter()
    refused(capsys, ["prune", "--target", lenet_file, "--n", "2", "--out", tmp_path / out, *FAST], "--out", needle)
    assert time.perf_counter() - t0 < 5


def test_prune_still_works_and_verify_accepts_its_file(tmp_path, lenet_file, capsys):
    out = tmp_path / "ok.pt"
    assert main(["prune", "--target", str(lenet_file), "--n", "2", "--out", str(out), *FAST]) == 0
    assert main(["verify", str(out), "--dataset", "none", "--restarts", "1", "--steps", "1", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ordered"] is True


# ------------------------------------------------------------------ reproduce / bench
@pytest.fixture()
def no_experiment(monkeypatch):
    import pipelines.experiments.bench
    import pipelines.experiments.iclr_construction
    import pipelines.experiments.iclr_lenet5

    def fail(*a, **k):
        raise AssertionError("no experiment may run")

    for mod in (pipelines.experiments.iclr_construction, pipelines.experiments.iclr_lenet5):
        monkeypatch.setattr(mod, "run", fail)
    monkeypatch.setattr(pipelines.experiments.bench, "run_bench", fail)


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--epochs", "-3"), ("--ns", "0,5"), ("--ns", "5,100000"),
                                        ("--n-jobs", "0"), ("--time-limit", "inf"), ("--seed", "-1")])
def test_reproduce_range_checks_its_numbers(flag, value, no_experiment, capsys):
    refused(capsys, ["reproduce", "iclr-construction", flag, value], flag)


def test_reproduce_checks_its_paths_before_any_work(tmp_path, no_experiment, capsys):
    (tmp_path / "file").write_text("x")
    exp = ["reproduce", "iclr-construction", "--ns", "2", "--solver", "exact"]
    refused(capsys, [*exp, "--out", tmp_path / "file"], "--out", "existing file")
    refused(capsys, [*exp, "--out", tmp_path / "file" / "run"], "--out", "is a file")
    refused(capsys, [*exp, "--out", tmp_path / "run", "--log", tmp_path / "missing" / "log.txt"], "--log")
    refused(capsys, [*exp, "--out", tmp_path / "run", "--log", tmp_path], "--log", "is a folder")
    refused(capsys, [*exp, "--out", tmp_path / "run", "--store", tmp_path / "file" / "s.sqlite"], "--store")
    refused(capsys, [*exp, "--out", tmp_path / "run", "--data-dir", tmp_path / "nodata"], "--data-dir")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag,value", [("--repeats", "0"), ("--repeats", "100000"), ("--n-jobs", "0"),
                                        ("--time-limit", "0"), ("--seed", str(2 ** 31))])
def test_bench_range_checks_its_numbers(flag, value, no_experiment, capsys):
    refused(capsys, ["bench", flag, value], flag)


def test_bench_checks_its_paths_before_any_work(tmp_path, no_experiment, capsys):
    (tmp_path / "file").write_text("x")
    refused(capsys, ["bench", "--out", tmp_path / "file"], "--out", "existing file")
    refused(capsys, ["bench", "--out", tmp_path / "b", "--log", tmp_path / "missing" / "log"], "--log")
    refused(capsys, ["bench", "--out", tmp_path / "b", "--store", tmp_path / "file" / "s.sqlite"], "--store")
    assert not (tmp_path / "b").exists()
