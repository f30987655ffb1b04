import json
import subprocess
import sys

import numpy as np
import pytest

import milp
from milp.bounds import lp_lower_bound
from pipelines.cli import main


def test_solve_json_prints_one_parseable_solution(tmp_path, capsys):
    inst = milp.Instance(np.random.default_rng(0).uniform(-1, 1, 14), 0.2)
    path = inst.save(tmp_path / "i.npz")
    assert main(["solve", str(path), "--solver", "exact", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "optimal" and out["error"] == inst.residual(np.array(out["mask"]))


def test_solve_highs_json_stays_clean_in_a_fresh_process(tmp_path):
    """highspy prints a banner on first use; --json output must still be exactly one JSON line."""
    path = milp.Instance([0.5, 0.25, -0.3], 0.2).save(tmp_path / "i.json")
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "solve", str(path), "--solver", "highs",
                          "--json"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["solver"] == "highs"


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    path = milp.Instance([0.5], 0.2).save(tmp_path / "i.json")
    assert main(["solve", str(path), "--solver", "nope"]) == 2
    assert "unknown solver 'nope'" in capsys.readouterr().err
    assert main(["solve", str(tmp_path / "missing.npz")]) == 2
    assert "not found" in capsys.readouterr().err


def test_export_writes_mps(tmp_path):
    path = milp.Instance([0.5, 0.25], 0.2, cardinality=1).save(tmp_path / "i.json")
    assert main(["export", str(path), "--out", str(tmp_path / "m.mps")]) == 0
    assert "INTORG" in (tmp_path / "m.mps").read_text()


def test_solve_prints_the_proven_lower_bound_and_the_labelled_floor(tmp_path, capsys):
    rng = np.random.default_rng(1)
    inst = milp.Instance(rng.normal(size=(30, 40)), rng.uniform(-1, 1, 40))  # n < d: the LP proves a bound
    path = inst.save(tmp_path / "i.npz")
    assert main(["solve", str(path), "--solver", "heuristic", "--time-limit", "0.5"]) == 0
    lines = {line.split()[0] + (" " + line.split()[1] if line.startswith("lower") else ""): line
             for line in capsys.readouterr().out.splitlines()}
    lb = float(lines["lower bd"].split()[2])
    assert lb > 0 and lb == pytest.approx(lp_lower_bound(inst), rel=1e-6) and "LP duality" in lines["lower bd"]
    assert "counting estimate, NOT a bound" in lines["floor"]
    assert main(["solve", str(path), "--solver", "heuristic", "--time-limit", "0.5", "--no-bounds", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lower_bound"] is None  # the heuristic proves nothing itself


def test_batch_bounds_records_each_instances_lower_bound(tmp_path, capsys):
    rng = np.random.default_rng(2)
    milp.Instance(rng.normal(size=(10, 3)), rng.uniform(-1, 1, 3)).save(tmp_path / "a.npz")
    assert main(["batch", str(tmp_path), "--solver", "heuristic", "--time-limit", "0.5", "--bounds", "--quiet"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["lower_bound_source"] == "exact" and row["lower_bound"] <= row["error"] and row["floor"] > 0
