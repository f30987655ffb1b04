"""Constructions: the ICLR 2022 one in detail (Lemma 2 / Theorem 1), and a conformance suite run over
every registered construction (stitched = effective, save/load round trip, 0/1 masks, scaling)."""
import numpy as np
import pytest
import torch
from torch import nn

import milp
from models.masks import MaskError, set_mask
from models.random_cnn import ConstructionError, PrunedRandomCNN
from pipelines.constructions import REGISTRY, construct, get_construction, load_pruned, scaled_target
from pipelines.constructions.iclr import IclrConstruction
from pipelines.verify import certified, verify

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


def inputs(t, count=16, size=8, seed=0):
    c0 = next(m for m in t if isinstance(m, nn.Conv2d)).in_channels
    return torch.rand(count, c0, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------- the ICLR construction
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_structure_follows_lemma_2(name):
    t, n = make(name), 6
    g = IclrConstruction(t, n, seed=1).network
    for b, K in zip(g.blocks(), [m for m in t if isinstance(m, nn.Conv2d)]):
        c1 = K.out_channels
        assert b.U.weight.shape == (c1 * n, K.in_channels, *K.kernel_size)
        assert b.V.weight.shape == (c1, c1 * n, 1, 1) and b.V.bias is None
        T = b.V.weight_mask[:, :, 0, 0]
        assert torch.equal(T, torch.kron(torch.eye(c1, dtype=T.dtype), torch.ones(1, n, dtype=T.dtype)))
        assert b.U.weight_orig.abs().max() <= 1 and b.U.weight_orig.min() < 0  # Unif[-1, 1], unpruned
        assert "weight_orig" in dict(b.U.named_parameters()) and "weight_mask" in dict(b.U.named_buffers())
        assert not any(p.requires_grad for p in g.parameters())  # random weights are frozen


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_exact_masks_give_the_effective_kernel_network_and_the_three_numbers_are_ordered(name):
    t = make(name)
    c, info = construct(t, 12, solver="exact", seed=3)
    g = c.network
    for b in g.blocks():  # S prunes every negative entry of U
        assert torch.all(b.U.weight_orig[b.U.weight_mask > 0] >= 0)
    X = inputs(t)
    with torch.no_grad():
        independent = c.effective()(X)
        assert torch.allclose(g(X), independent, rtol=1e-12, atol=1e-12)
        assert torch.allclose(g.compact()(X), independent, rtol=1e-12, atol=1e-12)
    L, _ = c.effective_weights()[0]
    K = t[0].weight.detach()
    assert (K - L).abs().max().item() <= info["residuals"].max() + 1e-12
    s = verify(t, g, X, restarts=3, steps=20, certificate=c.certify())["summary"]
    assert s["empirical_abs"] <= s["adversarial_abs"] + 1e-15 <= s["certified_abs"] + 1e-15, s
    assert s["ordered"]


def test_certified_bound_holds_on_random_targets_and_adversarial_inputs():
    for seed in range(3):
        t = make("conv-relu-pool-conv", seed=seed, scale=1.0)
        c, _ = construct(t, 5, solver="exact", seed=seed)  # small n: large errors, a stress test of the bound
        r = verify(t, c.network, inputs(t, 16, 6, seed), restarts=4, steps=40, seed=seed, certificate=c.certify())
        assert 0 < r["adversarial"]["abs"] <= r["certified"]["abs"], r["summary"]


def test_subproblems_use_the_products_of_the_paper():
    t = make("one-conv")
    c = IclrConstruction(t, 8, seed=2)
    subs = c.subproblems()
    assert len(subs) == t[0].weight.numel() + t[0].bias.numel()
    assert [s.kind for s in subs].count("bias") == t[0].bias.numel()
    b = c.network.blocks()[0]
    sp = subs[5]
    l, k, i, j = sp.entry
    U, V = b.U.weight_orig.detach().numpy(), b.V.weight_orig.detach().numpy()[:, :, 0, 0]
    assert sp.kind == "weight" and sp.layer == 0
    assert np.all((sp.units >= l * 8) & (sp.units < (l + 1) * 8)) and np.all(U[sp.units, k, i, j] >= 0)
    np.testing.assert_array_equal(sp.instance.candidates.reshape(-1), V[l, sp.units] * U[sp.units, k, i, j])
    assert sp.target == t[0].weight[l, k, i, j].item()


def test_save_load_and_counts(tmp_path):
    t = make("conv-relu-pool-conv")
    c, _ = construct(t, 8, solver="exact", scale="auto")
    g = c.network
    g.save(tmp_path / "g.pt", extra={"n": 8})
    h = PrunedRandomCNN.load(tmp_path / "g.pt")
    assert h.scales == g.scales and h.construction == "iclr"
    X = inputs(t, 4)
    with torch.no_grad():
        assert torch.equal(h(X), g(X))
    again = IclrConstruction.attach(t, h)
    assert again.certify()["abs"] == c.certify()["abs"]
    counts = g.parameter_counts()
    assert counts["random"] == sum(b.U.weight_orig.numel() + b.U.bias_orig.numel() + b.V.weight_orig.numel()
                                   for b in g.blocks())
    assert 0 < counts["kept"] < counts["random"]
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConstructionError, match="bad.pt"):
        PrunedRandomCNN.load(tmp_path / "bad.pt")
    with pytest.raises(ConstructionError, match="layers do not match"):
        IclrConstruction.attach(make("three-convs-k5-k1"), h)


@pytest.mark.parametrize("bad,match", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)), "Flatten"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(8, 2)), "Linear"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)), "negative inputs"),
    (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), "groups"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2)), "dilation"),
    (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), "padding_mode"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2, stride=3, dilation=2)), "dilation"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)), "ceil_mode"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh()), "Tanh"),
    (nn.Conv2d(1, 2, 3), "nn.Sequential"),
])
def test_unsupported_targets_and_options_are_refused_clearly(bad, match):
    with pytest.raises(ConstructionError, match=match):
        IclrConstruction(bad, 4)


def test_bad_n_scale_and_nan_weights_are_refused():
    t = make("one-conv")
    with pytest.raises(ConstructionError, match="n:"):
        IclrConstruction(t, 0)
    for bad in ("big", -1.0, 0, float("inf")):
        with pytest.raises(ConstructionError, match="--scale"):
            IclrConstruction(t, 4, scale=bad)
    with torch.no_grad():
        t[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ConstructionError, match="NaN"):
        IclrConstruction(t, 4)


def test_certified_bound_of_one_layer_by_hand():
    t = make("one-conv")
    c = IclrConstruction(t, 4)  # unpruned S: a poor approximation, large numbers
    L, cb = c.effective_weights()[0]
    K, b = t[0].weight.detach(), t[0].bias.detach()
    by_hand = max(float((K[l] - L[l]).abs().sum() + (b[l] - cb[l]).abs()) for l in range(K.shape[0]))
    assert c.certify()["abs"] == pytest.approx(by_hand, rel=1e-8)
    assert certified(c.layers, c.effective_weights())["abs"] == c.certify()["abs"]


# ------------------------------------------------------------------------- target scaling
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_scaled_target_times_lambda_is_the_target(name):
    t = make(name, scale=2.0)
    lambdas = [1.7, 3.0, 0.5][:sum(isinstance(m, nn.Conv2d) for m in t)]
    X = inputs(t)
    with torch.no_grad():
        torch.testing.assert_close(scaled_target(t, lambdas)(X) * float(np.prod(lambdas)), t(X), rtol=1e-12, atol=1e-12)


def test_auto_scale_brings_every_entry_into_reach_and_the_certificate_accounts_for_it():
    t = make("conv-relu-pool-conv", scale=3.0)  # entries far outside reach at n = 6
    none = IclrConstruction(t, 6, seed=1)
    auto = IclrConstruction(t, 6, seed=1, scale="auto")
    assert none.lambdas == [1.0, 1.0] and all(lam > 1 for lam in auto.lambdas)
    for sp in auto.subproblems():
        if sp.instance is None or sp.target == 0:
            continue
        cand = sp.instance.candidates.reshape(-1)
        lo, hi = cand[cand < 0].sum(), cand[cand > 0].sum()
        if (sp.target > 0 and hi > 0) or (sp.target < 0 and lo < 0):
            assert lo - 1e-12 <= sp.target <= hi + 1e-12
    c, _ = construct(t, 6, solver="exact", seed=1, scale="auto")
    X = inputs(t, 8, 8, 1)
    with torch.no_grad():
        torch.testing.assert_close(c.network(X), c.effective()(X), rtol=1e-12, atol=1e-12)
    r = verify(t, c.network, X, restarts=3, steps=30, certificate=c.certify())
    assert r["summary"]["ordered"] and r["certified"]["lambdas"] == c.lambdas
    small = make("conv-relu-pool-conv", scale=0.05)  # everything reachable: auto never scales up
    assert IclrConstruction(small, 30, seed=1, scale="auto").lambdas == [1.0, 1.0]


def test_fixed_scale_is_applied_to_every_conv():
    c, _ = construct(make("conv-relu-pool-conv"), 6, solver="exact", scale=2.5)
    assert c.lambdas == [2.5, 2.5] and float(c.network.output_scale.value) == pytest.approx(6.25)


# ------------------------------------------------------------------------- masks
def test_masks_are_validated_as_0_1():
    conv = nn.Conv2d(1, 2, 3)
    with pytest.raises(MaskError, match="0 and 1"):
        set_mask(conv, "weight", torch.full_like(conv.weight, 0.5))
    with pytest.raises(MaskError, match="shape"):
        set_mask(conv, "weight", torch.ones(3))
    set_mask(conv, "weight", torch.zeros_like(conv.weight))
    set_mask(conv, "weight", torch.ones_like(conv.weight))  # replaces, does not multiply
    conv(torch.zeros(1, 1, 3, 3))  # the pre-hook recomputes weight = weight_orig * weight_mask
    assert torch.equal(conv.weight, conv.weight_orig)


# ------------------------------------------------------------------------- conformance: every construction
@pytest.mark.parametrize("construction", sorted(REGISTRY))
@pytest.mark.parametrize("scale", ["none", "auto"])
def test_conformance(construction, scale, tmp_path):
    cls = get_construction(construction)
    t = make("conv-relu-pool-conv", scale=1.0)
    c, info = construct(t, 6, construction, solver="exact", seed=5, scale=scale)
    assert info["instances"] == len(c.subproblems())
    for sp in c.subproblems():
        assert sp.instance is None or isinstance(sp.instance, milp.Instance)
    check_pruned_network(cls, t, c, inputs(t), tmp_path)
    with pytest.raises(ConstructionError, match="unknown construction"):
        get_construction("nope")



def check_pruned_network(cls, t, c, X, tmp_path):
    """What every construction's pruned network must satisfy: exact 0/1 masks; pruned = effective = compact on
    ``X`` (to 1e-12); a save/load round trip computing the same; the same certificate when re-attached."""
    for name, buf in c.network.named_buffers():
        if name.endswith("_mask"):
            assert torch.all((buf == 0) | (buf == 1)), name
    with torch.no_grad():
        g = c.network(X)
        torch.testing.assert_close(g, c.effective()(X), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c.network.compact()(X), g, rtol=1e-12, atol=1e-12)
    c.network.save(tmp_path / "p.pt")
    loaded = load_pruned(tmp_path / "p.pt")
    assert type(loaded) is type(c.network)
    with torch.no_grad():
        assert torch.equal(loaded(X), g)
    assert cls.attach(t, loaded).certify()["abs"] == c.certify()["abs"]

# ------------------------------------------------------------------------- conformance: constructions with dense layers
DENSE_TARGETS = {
    "dense": lambda: nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)),
    "conv-flatten-dense": lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                                nn.Linear(32, 5), nn.ReLU(), nn.Linear(5, 3)),
}


@pytest.mark.parametrize("construction", sorted(c for c, cls in REGISTRY.items() if nn.Linear in cls.LAYERS.allowed))
@pytest.mark.parametrize("target", sorted(DENSE_TARGETS))
@pytest.mark.parametrize("scale", ["none", "auto"])
def test_conformance_dense(construction, target, scale, tmp_path):
    torch.manual_seed(0)
    t = DENSE_TARGETS[target]().double()
    X = (torch.rand(8, 6, dtype=torch.float64) if target == "dense" else inputs(t, 8))
    c, info = construct(t, 6, construction, solver="exact", seed=5, scale=scale)
    assert info["instances"] == len(c.subproblems()) == sum(p.numel() for p in t.parameters())
    check_pruned_network(get_construction(construction), t, c, X, tmp_path)
