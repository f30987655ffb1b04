"""The ICLR 2022 construction (Lemma 2 / Theorem 1): random blocks, masks, stitching, verification."""
import numpy as np
import pytest
import torch
from torch import nn

import milp
from models.random_cnn import ConstructionError, PrunedRandomCNN, build_random, rss_problems
from pipelines.construct import construct
from pipelines.verify import certified, effective_network, verify

TARGETS = {
    "one-conv": lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)),
    "conv-relu-pool-conv": lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                 nn.Conv2d(3, 2, 3, padding=1)),
    "three-convs-k5-k1": lambda: nn.Sequential(nn.Conv2d(1, 3, 5, padding=2), nn.ReLU(), nn.Conv2d(3, 4, 1),
                                               nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 2, 3, padding=0, bias=False)),
}


def make(name, seed=0, scale=0.4):
    torch.manual_seed(seed)
    t = TARGETS[name]().double()
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(scale)
    return t


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_structure_follows_lemma_2(name):
    t, n = make(name), 6
    g = build_random(t, n, seed=1)
    for b, K in zip(g.blocks(), [m for m in t if isinstance(m, nn.Conv2d)]):
        c1 = K.out_channels
        assert b.U.weight.shape == (c1 * n, K.in_channels, *K.kernel_size)
        assert b.V.weight.shape == (c1, c1 * n, 1, 1) and b.V.bias is None
        T = b.V.weight_mask[:, :, 0, 0]
        assert torch.equal(T, torch.kron(torch.eye(c1, dtype=T.dtype), torch.ones(1, n, dtype=T.dtype)))
        assert b.U.weight_orig.abs().max() <= 1 and b.U.weight_orig.min() < 0  # Unif[-1, 1], unpruned
        assert "weight_orig" in dict(b.U.named_parameters()) and "weight_mask" in dict(b.U.named_buffers())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_exact_masks_give_the_effective_kernel_network_and_the_three_numbers_are_ordered(name):
    t = make(name)
    g, info = construct(t, 12, solver="exact", seed=3)
    S = [b.U.weight_mask for b in g.blocks()]
    for b, s in zip(g.blocks(), S):  # S prunes every negative entry of U
        assert torch.all(b.U.weight_orig[s > 0] >= 0)
    X = torch.rand(32, t[0].in_channels, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        independent = effective_network(t, g)(X)
        assert torch.allclose(g(X), independent, rtol=1e-12, atol=1e-12)
        assert torch.allclose(g.compact()(X), independent, rtol=1e-12, atol=1e-12)
    # the effective kernels are the RSS approximations: per entry error = the solved residual
    L, _ = g.effective()[0]
    K = t[0].weight.detach()
    assert (K - L).abs().max().item() <= info["residuals"].max() + 1e-12
    r = verify(t, g, X, restarts=3, steps=20)
    s = r["summary"]
    assert s["empirical_abs"] <= s["adversarial_abs"] + 1e-15 <= s["certified_abs"] + 1e-15, s
    assert s["ordered"]


def test_certified_bound_holds_on_random_targets_and_adversarial_inputs():
    for seed in range(3):
        t = make("conv-relu-pool-conv", seed=seed, scale=1.0)
        g, _ = construct(t, 5, solver="exact", seed=seed)  # small n: large errors, a stress test of the bound
        r = verify(t, g, torch.rand(16, 2, 6, 6, dtype=torch.float64), restarts=4, steps=40, seed=seed)
        assert r["adversarial"]["abs"] <= r["certified"]["abs"], r["summary"]
        assert r["adversarial"]["abs"] > 0


def test_rss_problems_use_the_products_of_the_paper():
    t = make("one-conv")
    g = build_random(t, 8, seed=2)
    insts, index = rss_problems(g, t)
    assert len(insts) == t[0].weight.numel() + t[0].bias.numel()
    b = g.blocks()[0]
    bi, kind, (l, k, i, j), ts, z = index[5]
    U, V = b.U.weight_orig.detach().numpy(), b.V.weight_orig.detach().numpy()[:, :, 0, 0]
    assert kind == "weight" and np.all((ts >= l * 8) & (ts < (l + 1) * 8)) and np.all(U[ts, k, i, j] >= 0)
    np.testing.assert_array_equal(insts[5][0], V[l, ts] * U[ts, k, i, j])
    assert insts[5][1] == z == t[0].weight[l, k, i, j].item()


def test_save_load_and_counts(tmp_path):
    t = make("conv-relu-pool-conv")
    g, _ = construct(t, 8, solver="exact")
    g.save(tmp_path / "g.pt", extra={"n": 8})
    h = PrunedRandomCNN.load(tmp_path / "g.pt")
    X = torch.rand(4, 2, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(h(X), g(X))
    c = g.parameter_counts()
    assert c["random"] == sum(b.U.weight_orig.numel() + b.U.bias_orig.numel() + b.V.weight_orig.numel()
                              for b in g.blocks())
    assert 0 < c["kept"] < c["random"]
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConstructionError, match="bad.pt"):
        PrunedRandomCNN.load(tmp_path / "bad.pt")


@pytest.mark.parametrize("bad,match", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)), "Flatten"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(8, 2)), "Linear"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)), "negative inputs"),
    (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), "groups"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh()), "Tanh"),
    (nn.Conv2d(1, 2, 3), "nn.Sequential"),
])
def test_unsupported_targets_are_refused_clearly(bad, match):
    with pytest.raises(ConstructionError, match=match):
        build_random(bad, 4)


def test_bad_n_and_nan_weights_are_refused():
    t = make("one-conv")
    with pytest.raises(ConstructionError, match="n:"):
        build_random(t, 0)
    with torch.no_grad():
        t[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ConstructionError, match="NaN"):
        build_random(t, 4)


def test_certified_bound_of_one_layer_by_hand():
    t = make("one-conv")
    g = build_random(t, 4)  # unpruned S: a poor approximation, large numbers
    L, c = g.effective()[0]
    K, b = t[0].weight.detach(), t[0].bias.detach()
    by_hand = max(float((K[l] - L[l]).abs().sum() + (b[l] - c[l]).abs()) for l in range(K.shape[0]))
    assert certified(t, g)["abs"] == pytest.approx(by_hand, rel=1e-8)
