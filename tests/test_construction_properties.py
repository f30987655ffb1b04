"""Property test over randomly generated targets with many layer options: every construction either
refuses a target with one line naming the layer and the option, or reproduces it exactly (the pruned
network has the target's output shape and equals its effective network)."""
import numpy as np
import pytest
import torch
from torch import nn

from models.random_cnn import ConstructionError
from pipelines.constructions import REGISTRY, construct


def random_target(rng: np.random.Generator):
    layers, c, size = [], int(rng.integers(1, 3)), 9
    c0 = c
    for i in range(int(rng.integers(1, 3))):
        if i:
            layers.append(nn.ReLU())
            if rng.random() < 0.6:
                k = int(rng.integers(1, 3))
                layers.append(nn.MaxPool2d(k, stride=int(rng.integers(1, 3)), padding=int(rng.integers(0, k // 2 + 1)),
                                           dilation=int(rng.choice([1, 1, 1, 2])), ceil_mode=bool(rng.random() < 0.2)))
        c1 = int(rng.integers(1, 3))
        layers.append(nn.Conv2d(c, c1, int(rng.integers(1, 4)), stride=int(rng.integers(1, 3)),
                                padding=int(rng.integers(0, 2)), dilation=int(rng.choice([1, 1, 1, 2])),
                                bias=bool(rng.random() < 0.7)))
        c = c1
    net = nn.Sequential(*layers).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.3, 0.3, tuple(p.shape))))
    return net, c0, size


def option_issue(net) -> str | None:
    """The option a construction cannot reproduce (both refuse these), or None."""
    for m in net:
        if isinstance(m, nn.Conv2d) and m.dilation != (1, 1):
            return "dilation"
        if isinstance(m, nn.MaxPool2d) and (m.dilation not in (1, (1, 1)) or m.ceil_mode):
            return "dilation" if m.dilation not in (1, (1, 1)) else "ceil_mode"
    return None


@pytest.mark.parametrize("construction", sorted(REGISTRY))
def test_random_targets_are_refused_or_reproduced_exactly(construction):
    rng = np.random.default_rng(12345)
    reproduced = refused = 0
    for trial in range(25):
        net, c0, size = random_target(rng)
        X = torch.from_numpy(rng.uniform(0, 1, (4, c0, size, size)))
        try:
            with torch.no_grad():
                fx = net(X)
        except RuntimeError:
            continue  # the target itself cannot run on this input size
        issue = option_issue(net)
        try:
            c, _ = construct(net, 4, construction, solver="exact", seed=trial)
        except ConstructionError as exc:
            msg = str(exc)
            assert "\n" not in msg and "target[" in msg, msg
            if issue is not None:
                assert issue in msg, (issue, msg)
            refused += 1
            continue
        assert issue is None, f"{construction} accepted a target it cannot reproduce ({issue}): {net}"
        with torch.no_grad():
            gx, ex = c.network(X), c.effective()(X)
        assert gx.shape == fx.shape, (net, gx.shape, fx.shape)
        torch.testing.assert_close(gx, ex, rtol=1e-12, atol=1e-12)
        reproduced += 1
    assert reproduced >= 5 and refused >= 3, (reproduced, refused)
