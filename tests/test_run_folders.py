"""Run folders: a run never writes over another run's output unless asked, and reruns add their timing."""
import json
from dataclasses import dataclass

from pipelines.cli.args import stage_log
from pipelines.experiments.base import ExperimentConfig, past_runs, prepare_out, record_run


@dataclass(frozen=True)
class Cfg(ExperimentConfig):
    NAME = "toy"
    n: int = 1


def test_default_folder_is_named_by_experiment_and_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = prepare_out(Cfg(1)), prepare_out(Cfg(2))
    assert a == tmp_path.joinpath("slth-runs", "toy", Cfg(1).key()).relative_to(tmp_path) and a != b
    assert json.loads((a / "config.json").read_text())["config_key"] == Cfg(1).key()


def test_explicit_out_announces_replacing_another_runs_results(tmp_path, capsys):
    out = tmp_path / "committed"
    out.mkdir()
    (out / "results.csv").write_text("old")
    prepare_out(Cfg(1), out)
    assert "replacing the results of an unrecorded config" in capsys.readouterr().err
    prepare_out(Cfg(2), out)
    assert f"replacing the toy [{Cfg(1).key()}]" in capsys.readouterr().err
    prepare_out(Cfg(2), out)
    assert "updating" in capsys.readouterr().err


def test_reruns_append_their_timing(tmp_path):
    import time

    record_run(tmp_path, Cfg(1), "slth x", time.time() - 5, stages={"a": 5})
    record_run(tmp_path, Cfg(1), "slth x", time.time() - 1, stages={"a": 1})
    runs = past_runs(tmp_path)
    assert [r["stages"]["a"] for r in runs] == [5, 1] and runs[0]["wall_seconds"] >= 5
    assert runs[0]["machine"]["versions"]["numpy"]


def test_stage_log_writes_plain_lines_even_when_quiet(tmp_path, capsys):
    log = tmp_path / "run.log"
    with stage_log(log, quiet=True) as progress:
        assert progress
        print("[1/2] solving")
        print("[2/2] metrics")
    assert log.read_text() == "[1/2] solving\n[2/2] metrics\n" and capsys.readouterr().out == ""
