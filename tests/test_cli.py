import json
import subprocess
import sys

import numpy as np

import milp
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
