"""`slth prune` / `slth verify` end to end on an untrained LeNet5 state_dict (no data set needed)."""
import json

import pytest
import torch

from models.lenet5 import LeNet5
from models.random_cnn import PrunedRandomCNN
from pipelines.cli import main
from pipelines.constructions import get_construction


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
    assert "2572 subset-sum instances" in printed and "saved to" in printed
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
        effective = get_construction(g.construction).attach(f.features.double(), g).effective()
        torch.testing.assert_close(g.double()(x), effective(x), rtol=0, atol=1e-12)

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


def test_reproduce_refuses_options_an_experiment_does_not_take(capsys):
    assert main(["reproduce", "iclr-construction", "--recompute-metrics"]) == 2
    assert "--recompute-metrics" in capsys.readouterr().err
    assert main(["reproduce", "iclr-construction", "--solver", "auto,cpsat"]) == 2
    assert "--solver" in capsys.readouterr().err
    assert main(["reproduce", "iclr-construction", "--scale", "big"]) == 2
    assert "--scale" in capsys.readouterr().err
    assert main(["reproduce", "iclr-lenet5", "--scale", "auto"]) == 2
    assert "--scale" in capsys.readouterr().err


def test_prune_with_auto_scale_saves_the_lambdas_and_verify_accounts_for_them(tmp_path, target_file, capsys,
                                                                              monkeypatch):
    monkeypatch.setenv("SLTH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "scaled.pt"
    assert main(["prune", "--target", str(target_file), "--n", "3", "--scale", "auto", "--solver", "exact",
                 "--n-jobs", "1", "--out", str(out), "--quiet"]) == 0
    assert "lambdas" in capsys.readouterr().out
    g = PrunedRandomCNN.load(out)
    assert len(g.scales) == 2 and all(s >= 1 for s in g.scales) and g.extra["scale"] == "auto"
    assert main(["verify", str(out), "--dataset", "none", "--restarts", "2", "--steps", "3", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["ordered"] is True and s["adversarial_abs"] <= s["certified_abs"]


def test_prune_checks_the_output_folder_before_solving(tmp_path, target_file, capsys):
    assert main(["prune", "--target", str(target_file), "--n", "3", "--out", str(tmp_path / "no" / "x.pt")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["reproduce", "iclr-nothing"]) != 0
    assert "iclr-construction" in capsys.readouterr().err


def test_prune_structured_with_domain_and_k_then_verify(tmp_path, target_file, capsys, monkeypatch):
    monkeypatch.setenv("SLTH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "structured.pt"
    assert main(["prune", "--construction", "structured", "--target", str(target_file), "--n", "6", "--k", "2",
                 "--domain", "signed", "--solver", "exact", "--n-jobs", "1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "(structured)" in printed and "14 subset-sum instances" in printed  # 1 + 6 input channels, two halves
    assert "domain signed: 0 of 2 blocks see non-negative inputs" in printed and "14 MRSS instances instead of 14" in printed
    from pipelines.constructions import load_pruned

    g = load_pruned(out)
    assert g.construction == "structured" and g.extra["options"] == {"domain": "signed", "k": 2}
    assert main(["verify", str(out), "--dataset", "none", "--restarts", "2", "--steps", "3", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["ordered"] is True and s["adversarial_abs"] <= s["certified_abs"]
    assert main(["prune", "--target", str(target_file), "--n", "3", "--k", "2", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--k" in capsys.readouterr().err


def test_prune_rfss_flags_are_checked_before_any_work(tmp_path, target_file, capsys):
    out = str(tmp_path / "x.pt")
    assert main(["prune", "--construction", "rfss", "--target", str(target_file), "--n", "4", "--k", "5",
                 "--out", out, "--quiet"]) == 2
    assert "--k: the subset size must satisfy 1 <= k <= n = 4, got 5" in capsys.readouterr().err
    assert main(["prune", "--construction", "rfss", "--target", str(target_file), "--n", "4", "--k", "0",
                 "--out", out]) == 2
    assert "--k" in capsys.readouterr().err
    assert main(["prune", "--construction", "iclr", "--target", str(target_file), "--n", "4", "--conv", "structured",
                 "--out", out]) == 2
    assert "--conv: only the rfss construction takes it" in capsys.readouterr().err
    assert main(["prune", "--construction", "iclr", "--target", str(target_file), "--n", "4", "--n-conv", "3",
                 "--out", out]) == 2
    assert "--n-conv: only the rfss construction takes it" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_prune_structured_pair_blocks_then_verify(tmp_path, target_file, capsys, monkeypatch):
    monkeypatch.setenv("SLTH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "pair.pt"
    assert main(["prune", "--construction", "structured", "--blocks", "pair", "--target", str(target_file),
                 "--n", "3", "--solver", "exact", "--n-jobs", "1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "domain auto: 2 of 2 blocks see non-negative inputs" in printed
    assert "102 MRSS instances instead of 204" in printed  # 1 x 6 + 6 x 16 pairs, positive half-blocks only
    from pipelines.constructions import load_pruned

    g = load_pruned(out)
    assert g.blocking == "pair" and g.extra["options"] == {"blocks": "pair"}
    assert g.extra["dist"] == "normal"  # Theorem 3's, the structured construction's own default
    assert main(["verify", str(out), "--dataset", "none", "--restarts", "2", "--steps", "3", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["ordered"] is True and s["adversarial_abs"] <= s["certified_abs"]
    assert main(["prune", "--target", str(target_file), "--n", "3", "--blocks", "pair", "--out",
                 str(tmp_path / "x.pt")]) == 2
    assert "--blocks" in capsys.readouterr().err


@pytest.mark.parametrize("conv", ["iclr", "structured"])
def test_prune_rfss_whole_network_then_verify(tmp_path, capsys, monkeypatch, conv):
    """The CLI path of a whole network (conv part ICLR + dense head RFSS) end to end with real solves, on a small
    LeNet-shaped model (the trained LeNet5 has 107,786 instances: too slow for a unit test)."""
    from torch import nn

    import pipelines.targets

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.features = nn.Sequential(nn.Conv2d(1, 2, 5, stride=4), nn.ReLU(), nn.MaxPool2d(2))
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(18, 4), nn.ReLU(), nn.Linear(4, 3))
            with torch.no_grad():
                for p in self.parameters():
                    p.mul_(0.5)

    tiny = Tiny()
    monkeypatch.setattr(pipelines.targets, "load_target", lambda spec, **kw: (tiny, tiny.features))
    monkeypatch.setenv("SLTH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "whole.pt"
    assert main(["prune", "--construction", "rfss", "--target", "tiny", "--n", "6", "--k", "2", "--n-conv", "5",
                 "--conv", conv, "--solver", "exact", "--n-jobs", "1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    # instances: one per dense weight/bias; conv part: one per conv entry (iclr) or one MRSS per input channel
    # (structured, domain auto: the single conv sees [0, 1] inputs, positive half-block only)
    conv_instances = sum(p.numel() for p in tiny.features.parameters()) if conv == "iclr" else 1
    instances = sum(p.numel() for p in tiny.classifier.parameters()) + conv_instances
    assert "(rfss)" in printed and f"{instances} subset-sum instances" in printed
    assert "dense 1: 0.3333, dense 2: 0.3333" in printed  # exactly k/n = 2/6 per dense block
    from pipelines.constructions import load_pruned

    g = load_pruned(out)
    assert g.k == 2 and g.n == 6 and g.conv_spec["n"] == 5 and g.conv_spec["construction"] == conv
    assert g.extra["options"] == {"k": 2, "n_conv": 5, "conv": conv}
    assert type(g.conv).__name__ == ("PrunedRandomCNN" if conv == "iclr" else "StructuredRandomCNN")
    assert main(["verify", str(out), "--dataset", "none", "--restarts", "2", "--steps", "3", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["ordered"] is True and 0 < s["adversarial_abs"] <= s["certified_abs"]
