"""Experiment identity (frozen configs whose content hash is their key) and the experiment registry."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import experiments
from pipelines.experiments import base
from pipelines.experiments.bench import Config as BenchConfig
from pipelines.experiments.iclr_lenet5 import Config as IclrConfig

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Toy(base.ExperimentConfig):
    NAME = "toy"
    sizes: tuple = (1, 2)
    rate: float = 0.5
    label: str = "a"


def test_equal_configs_have_equal_keys_and_tuples_hash_like_lists():
    assert Toy().key() == Toy().key() == Toy(sizes=[1, 2]).key()
    assert Toy(sizes=[1, 2]).sizes == (1, 2)  # lists are stored as tuples: hashable, one spelling
    assert hash(Toy(sizes=[1, 2])) == hash(Toy())
    assert len(Toy().key()) == 16 and int(Toy().key(), 16) >= 0


def test_any_field_or_the_name_changes_the_key():
    keys = {Toy().key(), Toy(sizes=(1, 3)).key(), Toy(rate=0.25).key(), Toy(label="b").key()}
    assert len(keys) == 4

    @dataclasses.dataclass(frozen=True)
    class Other(Toy):
        NAME = "other"

    assert Other().key() != Toy().key() and Other().to_dict() == Toy().to_dict()


def test_key_is_stable_across_processes():
    code = ("from pipelines.experiments.iclr_lenet5 import Config; from pipelines.experiments.bench import Config as B; "
            "print(Config(ns=(5, 20)).key(), B(suites=('rss',)).key())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out == [IclrConfig(ns=(5, 20)).key(), BenchConfig(suites=("rss",)).key()]


def test_configs_are_frozen_and_describe_themselves():
    c = IclrConfig(datasets=["MNIST"], ns=[5, 20])
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.seed = 1
    assert c.datasets == ("mnist",) and c.ns == (5, 20)  # normalised, so equal configs are equal
    assert c.key() == IclrConfig(datasets=("mnist",), ns=(5, 20)).key()
    line = c.describe()
    assert line.startswith(f"iclr-lenet5 [{c.key()}]") and "ns=5,20" in line
    assert IclrConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown config field"):
        IclrConfig.from_dict({**c.to_dict(), "n_jobs": 2})


def test_configs_validate_their_fields():
    with pytest.raises(ValueError, match="dataset"):
        IclrConfig(datasets=("cifar10",))
    with pytest.raises(ValueError, match="ns"):
        IclrConfig(ns=(0,))
    with pytest.raises(ValueError, match="time_limit"):
        IclrConfig(time_limit=-1)
    with pytest.raises(ValueError, match="--suite"):
        BenchConfig(suites=("nope",))
    assert BenchConfig(suites=("all",)) == BenchConfig()  # "all" is every suite
    assert IclrConfig(time_limit=1).key() == IclrConfig(time_limit=1.0).key()


def test_config_record_and_finished_summary(tmp_path):
    c = Toy()
    base.write_config(tmp_path, c)
    rec = json.loads((tmp_path / "config.json").read_text())
    assert rec == {"experiment": "toy", "config_key": c.key(), "config": {"sizes": [1, 2], "rate": 0.5, "label": "a"}}
    assert base.finished_summary(tmp_path, c) is None  # no summary yet
    (tmp_path / "summary.json").write_text(json.dumps({"results": [], **base.config_record(c)}))
    assert base.finished_summary(tmp_path, c)["config_key"] == c.key()
    assert base.finished_summary(tmp_path, Toy(rate=0.1)) is None
    (tmp_path / "summary.json").write_text("{damaged")
    assert base.finished_summary(tmp_path, c) is None


def test_registry_lists_names_and_loads_modules_lazily():
    names = experiments.experiment_names()
    assert {"iclr-lenet5", "bench"} <= set(names)
    for name in ("iclr-lenet5", "bench"):
        module = experiments.get_experiment(name)
        assert module.NAME == name and module.Config.NAME == name
        assert isinstance(module.DESCRIPTION, str) and "\n" not in module.DESCRIPTION
        assert callable(module.run) and callable(module.rewrite_report)
        assert issubclass(module.Config, base.ExperimentConfig)


def test_unknown_experiment_names_the_choices():
    with pytest.raises(ValueError, match="unknown experiment 'nope'") as exc:
        experiments.get_experiment("nope")
    for name in experiments.experiment_names():
        assert name in str(exc.value)


def test_a_registered_experiment_without_its_module_fails_cleanly(monkeypatch):
    monkeypatch.setitem(experiments.EXPERIMENTS, "ghost", "pipelines.experiments.no_such_module")
    assert "ghost" not in experiments.experiment_names()
    with pytest.raises(ValueError, match="ghost.*missing"):
        experiments.get_experiment("ghost")


def test_run_skips_a_finished_run_of_the_same_config(tmp_path, monkeypatch):
    from pipelines.experiments import bench

    monkeypatch.setattr(bench, "RSS_NS", (6,))
    config = bench.Config(suites=("rss",), solvers=("exact",), time_limit=1.0, repeats=1)
    out = tmp_path / "bench"
    first = bench.run(config, out=out, store=tmp_path / "s.sqlite", progress=False)
    assert first["config_key"] == config.key() and (out / "config.json").is_file()
    monkeypatch.setattr(bench, "build_suite", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran again")))
    again = bench.run(config, out=out, store=tmp_path / "s.sqlite", progress=False, skip_finished=True)
    assert again["headline"] == json.loads(json.dumps(first["headline"]))
    with pytest.raises(AssertionError, match="ran again"):  # another config is not finished
        bench.run(dataclasses.replace(config, seed=1), out=out, progress=False, skip_finished=True)
