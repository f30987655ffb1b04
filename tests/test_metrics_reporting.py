"""pipelines.metrics on hand-made examples and pipelines.reporting's writes, figures and counts."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from pipelines import metrics, reporting


# ----------------------------------------------------------------------------- metrics
def test_output_errors_both_normalisations_by_hand():
    # image 0: error 0.3 on max 3 -> 0.1; image 1: error 0.4 on max 1 -> 0.4 (the per-image max);
    # global: largest error 0.4 / largest activation 3
    f = torch.tensor([[3.0, -1.0, 0.0], [1.0, 0.5, -0.5]], dtype=torch.float64)
    g = torch.tensor([[2.7, -1.0, 0.1], [1.0, 0.9, -0.5]], dtype=torch.float64)
    m = metrics.output_errors(f, g)
    assert m["per_image"] == pytest.approx(0.4)
    assert m["global"] == pytest.approx(0.4 / 3.0)
    assert m["max_abs"] == pytest.approx(0.4)


def test_output_errors_of_all_zero_images():
    f = torch.zeros((2, 3), dtype=torch.float64)
    assert metrics.output_errors(f, f.clone()) == {"per_image": 0.0, "global": math.inf, "max_abs": 0.0}
    g = f.clone()
    g[1, 2] = 1e-3
    assert metrics.output_errors(f, g)["per_image"] == math.inf


def test_relative_error_conventions():
    assert metrics.relative_error(1.0, 4.0) == 0.25
    assert metrics.relative_error(0.0, 0.0) == 0.0 and metrics.relative_error(1e-9, 0.0) == math.inf
    err = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    top = torch.tensor([4.0, 0.0, 0.0], dtype=torch.float64)
    assert metrics.relative_errors(err, top).tolist() == [0.25, 0.0, math.inf]


def test_max_rel_weight_error_by_hand():
    params = [("w", np.array([[1.0, -2.0]])), ("b", np.array([4.0]))]
    approx = [("w", np.array([[1.1, -2.0]])), ("b", np.array([3.0]))]
    worst, per = metrics.max_rel_weight_error(params, approx)
    assert per == pytest.approx({"w": 0.05, "b": 0.25}) and worst == pytest.approx(0.25)


def test_accuracy_with_features_replaces_the_conv_part():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Identity()
            self.classifier = nn.Flatten()

        def forward(self, x):
            return self.classifier(self.features(x))

    images = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[2.0, 1.0]], [[0.0, 3.0]]])
    labels = torch.tensor([0, 1, 0, 0])
    net = Net()
    assert metrics.accuracy(net, images, labels) == 75.0
    assert metrics.accuracy_with_features(net, net.features, images, labels) == 75.0
    swap = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))  # swaps the two columns
    with torch.no_grad():
        swap[1].weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert metrics.accuracy_with_features(net, swap, images, labels, batch_size=3) == 25.0


# ----------------------------------------------------------------------------- reporting
def _no_temp_files(folder):
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_writes_replace_content_and_leave_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    reporting.atomic_write_text(path, "old")
    reporting.atomic_write_text(path, "new")
    assert path.read_text() == "new" and _no_temp_files(path.parent)
    reporting.atomic_write_json(tmp_path / "a.json", {"x": [1, 2], "y": float("inf")})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2], "y": float("inf")}
    reporting.atomic_write_csv(tmp_path / "a.csv", [{"a": 1, "b": 2.5, "c": "x"}], ["a", "b"], extrasaction="ignore")
    assert (tmp_path / "a.csv").read_bytes() == b"a,b\r\n1,2.5\r\n"  # csv line ends, as before
    assert _no_temp_files(tmp_path)


def test_a_failed_write_keeps_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "a.json"
    reporting.atomic_write_text(path, "keep")
    with pytest.raises(TypeError):
        reporting.atomic_write_json(path, {"x": object()})
    with pytest.raises(ValueError):
        reporting.atomic_write_csv(path, [{"a": 1, "z": 2}], ["a"])  # extra key with extrasaction="raise"
    assert path.read_text() == "keep" and _no_temp_files(tmp_path)


def test_save_figure_writes_png_and_pdf_and_closes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    paths = reporting.save_figure(fig, tmp_path, "fig", dpi=50)
    assert [p.name for p in paths] == ["fig.png", "fig.pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    assert not plt.fignum_exists(fig.number) and _no_temp_files(tmp_path)


def test_status_counts():
    import milp

    sols = [milp.solve(milp.Instance([0.5, 0.25], z), "exact") for z in (0.25, 0.75)]
    assert reporting.status_counts(sols) == {"optimal": 2}
    assert reporting.status_counts(["a", "b", "a"]) == {"a": 2, "b": 1}
    assert reporting.status_counts([]) == {}


def test_machine_info_and_command_line():
    info = reporting.machine_info()
    assert info["cpu_count"] >= 1 and info["python"].count(".") == 2 and "numpy" in info["versions"]
    line = reporting.machine_line()
    assert f"{info['cpu_count']} cores, Python {info['python']}, load at end " in line
    assert reporting.command_line(["reproduce", "iclr-lenet5", "--ns", "5, 10"]) == \
        "slth reproduce iclr-lenet5 --ns '5, 10'"
    assert reporting.command_line([], prog="python x.py") == "python x.py"
