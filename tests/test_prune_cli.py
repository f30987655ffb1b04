"""`slth prune` / `slth verify` end to end on an untrained LeNet5 state_dict (no data set needed)."""
import json

import pytest
import torch

from models.lenet5 import LeNet5
from models.random_cnn import PrunedRandomCNN
from pipelines.cli import main
from pipelines.verify import effective_network


@pytest.fixture()
def target_file(tmp_path):
    path = tmp_path / "lenet5.pt"
    torch.save(LeNet5(seed=7).state_dict(), path)
    return path


def test_prune_then_verify_a_lenet5_state_dict(tmp_path, target_file, capsys, monkeypatch):
    monkeypatch.setenv("SLTH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "pruned.pt"
    assert main(["prune", "--construction", "iclr", "--target", str(target_file), "--n", "4", "--solver", "exact",
                 "--n-jobs", "1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "2572 RSS instances" in printed and "saved to" in printed
    g = PrunedRandomCNN.load(out)
    assert g.n == 4 and g.extra["target"] == str(target_file)
    counts = g.parameter_counts()
    assert counts["random"] == 2864 * 4  # LeNet5 conv part: (25*1*6 + 6 + 6*6) + (25*6*16 + 16 + 16*16) per n
    assert 0 < counts["kept"] < counts["random"]
    # the saved masks reproduce the effective-kernel network
    f = LeNet5(seed=None)
    f.load_state_dict(torch.load(target_file, weights_only=True))
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(g.double()(x), effective_network(f.features.double(), g)(x), rtol=0, atol=1e-12)

    assert main(["verify", str(out), "--dataset", "none", "--restarts", "2", "--steps", "3", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < s["adversarial_abs"] <= s["certified_abs"] and s["ordered"] is True


def test_prune_refuses_bad_targets_and_constructions(tmp_path, target_file, capsys):
    assert main(["prune", "--target", str(tmp_path / "missing.pt"), "--n", "3", "--out", str(tmp_path / "x.pt")]) != 0
    assert "--target" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(3)}, bad)
    assert main(["prune", "--target", str(bad), "--n", "3", "--out", str(tmp_path / "x.pt")]) != 0
    assert "state_dict" in capsys.readouterr().err
    assert main(["prune", "--construction", "nope", "--target", str(target_file), "--n", "3",
                 "--out", str(tmp_path / "x.pt")]) != 0
    assert "--construction" in capsys.readouterr().err


def test_reproduce_iclr_construction_refuses_options_it_does_not_take(capsys):
    assert main(["reproduce", "iclr-construction", "--epochs", "3"]) != 0
    assert "--epochs" in capsys.readouterr().err
    assert main(["reproduce", "iclr-construction", "--solver", "auto,cpsat"]) != 0
    assert "--solver" in capsys.readouterr().err
    assert main(["reproduce", "iclr-nothing"]) != 0
    assert "iclr-construction" in capsys.readouterr().err
