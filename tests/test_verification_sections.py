"""The verification section (the four numbers empirical <= adversarial <= exact <= certified) of every construction's
report: iclr-construction, structured-random, rfss-density, each on tiny tickets it builds itself (issue 15)."""
import math

import pytest
import torch
from torch import nn

from pipelines.experiments.four_numbers import ordered, previous_summary, run_record, section


def chain_ok(r) -> bool:
    chain = [r["empirical_abs"], r["adversarial_abs"]] + ([r["exact_lower"], r["exact_upper"]] if r["exact_run"] else [])
    chain.append(r["certified_abs"])
    return all(a <= b * (1 + 1e-12) for a, b in zip(chain, chain[1:]))


def check_section(text: str, rows) -> None:
    assert "## Verification: empirical <= adversarial <= exact <= certified" in text
    assert "`ordered`: True" in text and "Verification stage: `cmd`" in text
    assert all(chain_ok(r) and r["ordered"] for r in rows) and ordered(rows)
    assert all(math.isfinite(r["certified_interval"]) and r["interval_unavailable"] == "" for r in rows)


def images(count=40, seed=0):
    return torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_structured_random_verification_section_is_produced_and_ordered():
    from pipelines.experiments import structured_random as sr
    from pipelines.experiments.structured_random_report import verification_lines

    cfg = sr.Config(verify_targets=("conv1x1", "conv1x1-relu-conv1x1"), verify_ns=(8,), verify_points=200,
                    verify_attack_time=5, verify_attack_rounds=1)
    rows = sr.verification(cfg, progress=False)
    assert [(r["target"], r["n"], r["domain"]) for r in rows] == [("conv1x1", 8, "[-1, 1]"),
                                                                  ("conv1x1-relu-conv1x1", 8, "[-1, 1]")]
    assert all(r["exact_run"] and r["exact_closed"] for r in rows)  # tiny MILPs: the sup itself
    text = "\n".join(verification_lines({"verification": rows, "config": cfg.to_dict(),
                                         "verification_run": run_record("cmd", 1.0)}))
    check_section(text, rows)
    # a row out of order is reported as such, not hidden
    bad = [{**rows[0], "certified_abs": rows[0]["adversarial_abs"] / 2}]
    assert not ordered(bad) and "`ordered`: False" in "\n".join(section(bad, "t", ["t"], "w", {}))


def test_iclr_construction_verification_section_on_a_small_lenet5(monkeypatch, tmp_path):
    from models.lenet5 import LeNet5
    from pipelines.experiments import iclr_construction as ic
    from pipelines.experiments.iclr_construction_report import verification_lines

    model, X = LeNet5(seed=7), images()
    monkeypatch.setattr("pipelines.targets.load_target", lambda spec, **kw: (model, model.features))
    monkeypatch.setattr("pipelines.data.load_dataset", lambda ds, split, root=None: (X, torch.zeros(len(X))))
    cfg = ic.Config(datasets=("mnist",), ns=(2,), solver="exact", empirical_images=40, restarts=2, steps=5,
                    verify_ns=(2,), verify_attack_time=3, verify_attack_rounds=1, verify_time_limit=5,
                    verify_milp_total=5)
    rows = ic.verification(cfg, tmp_path / "store.sqlite", n_jobs=1, progress=False)
    assert [(r["dataset"], r["n"], r["input_shape"]) for r in rows] == [("mnist", 2, "1x28x28")]
    assert rows[0]["exact_run"] and rows[0]["milp_classes"] >= 1  # a bracket: 5 s do not close a 784-input MILP
    text = "\n".join(verification_lines({"verification": rows, "config": cfg.to_dict(),
                                         "verification_run": run_record("cmd", 1.0)}))
    check_section(text, rows)


def test_verification_only_needs_a_run_of_the_same_config(tmp_path):
    import json

    from pipelines.experiments import iclr_construction as ic

    with pytest.raises(ValueError, match="no readable .*summary.json"):
        previous_summary(tmp_path, ic.Config())
    (tmp_path / "summary.json").write_text(json.dumps({"experiment": "iclr-construction",
                                                       "config": {**ic.Config().to_dict(), "ns": [7]}}))
    with pytest.raises(ValueError, match="fields differing: ns"):
        previous_summary(tmp_path, ic.Config())
    # the verify_* fields may differ: they only change the verification section
    assert previous_summary(tmp_path, ic.Config(ns=(7,), verify_ns=(7,)))["experiment"] == "iclr-construction"


class TinyLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(nn.Conv2d(1, 2, 5, stride=5), nn.ReLU(), nn.MaxPool2d(2))  # 2 x 2 x 2
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
        with torch.no_grad():
            for p in self.parameters():
                p.mul_(0.5)


def test_rfss_density_verification_section_on_a_small_conv_dense_net(monkeypatch, tmp_path):
    from pipelines.experiments import rfss_density as rd
    from pipelines.experiments.rfss_density_report import verification_lines

    model, X = TinyLeNet(), images()
    monkeypatch.setattr("pipelines.targets.ensure_trained_lenet5", lambda *a, **k: None)
    monkeypatch.setattr("pipelines.targets.get_trained_lenet5", lambda *a, **k: (model, None))
    monkeypatch.setattr("pipelines.data.load_dataset", lambda ds, split, root=None: (X, torch.zeros(len(X))))
    cfg = rd.Config(datasets=("mnist",), n=4, ks=(2,), verify_ks=(2,), whole=((4, 2),), n_conv=3, whole_images=40,
                    verify_attack_time=3, verify_attack_rounds=1)
    rows = rd.verification(cfg, tmp_path / "store.sqlite", n_jobs=1, progress=False)
    assert [(r["ticket"], r["n"], r["k"]) for r in rows] == [("head", 4, 2), ("whole", 4, 2)]
    assert all(not r["exact_run"] and "Flatten is not handled" in r["exact_not_run"] for r in rows)
    assert all(r["certified_interval"] <= r["certified_appendix_b"] * (1 + 1e-9) for r in rows)
    text = "\n".join(verification_lines({"verification": rows, "config": cfg.to_dict(),
                                         "verification_run": run_record("cmd", 1.0)}))
    check_section(text, rows)
    assert "| whole n = 4, k = 2 | 1x28x28 in [0, 1] |" in text and "not run" in text
