"""The rfss construction (arXiv 2410.14754): dense layers by fixed-size subsets (exactly k of n per target entry),
conv part by ICLR 2022 or by the structured construction (NeurIPS 2023, Theorem 3); uniform density, effective form, compact form, files, refusals."""
import numpy as np
import pytest
import torch
from torch import nn

import milp
from models.random_cnn import ConstructionError
from models.random_dense import PrunedRandomNet
from pipelines.constructions import REGISTRY, construct, load_pruned
from pipelines.constructions.dense_rfss import RfssConstruction
from pipelines.constructions.iclr import IclrConstruction
from pipelines.constructions.structured import StructuredConstruction
from pipelines.verify import verify


def dense_target(seed=0, scale=0.4, sizes=(6, 5, 3)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    t = nn.Sequential(*layers[:-1]).double()
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(scale / p.abs().max().clamp_min(1e-12))
    return t


def lenet_like(seed=0):
    torch.manual_seed(seed)
    t = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 6),
                      nn.ReLU(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(0.5)
    return t


def images(count=12, seed=0):
    return torch.rand(count, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def vectors(count=12, m=6, seed=0):
    return torch.rand(count, m, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_every_dense_block_has_exactly_k_ones_per_target_entry(k):
    n = 8
    c, info = construct(dense_target(), n, "rfss", solver="exact", seed=2, k=k)
    assert info["statuses"].get("optimal") == info["instances"]
    for b, lin in zip(c.network.blocks(), c.linears()):
        M = b.V.weight_mask
        m_in = lin.in_features
        groups = M[:, :m_in * n].reshape(lin.out_features, m_in, n).sum(-1)
        assert torch.all(groups == k)
        assert torch.all(M[:, m_in * n:].sum(1) == k)  # bias groups
        assert b.density() == pytest.approx(k / n, abs=0) and b.density() == k / n
    for d in c.densities():
        assert d["mask_density"] == k / n
    counts = c.network.parameter_counts()
    assert all(layer["kept_per_target_weight"] == k for layer in counts["dense_layers"])


@pytest.mark.parametrize("k", [None, 2, 6])
@pytest.mark.parametrize("which", ["dense", "conv+dense"])
def test_exact_masks_pruned_equals_effective_and_compact(which, k):
    t, X = (dense_target(), vectors()) if which == "dense" else (lenet_like(), images())
    c, info = construct(t, 8, "rfss", solver="exact", seed=3, k=k)
    g = c.network
    with torch.no_grad():
        eff = c.effective()(X)
        torch.testing.assert_close(g(X), eff, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g.compact()(X), g(X), rtol=1e-12, atol=1e-12)
    # the effective dense weights are the subset sums of the solved instances
    W = c.linears()[0].weight.detach()
    L, _ = c.effective_weights()[len(c.effective_weights()) - len(c.linears())]
    dense_res = info["residuals"][-sum(lin.weight.numel() + lin.bias.numel() for lin in c.linears()):]
    assert (W - L).abs().max().item() <= dense_res.max() + 1e-12
    s = verify(t, g, X, restarts=2, steps=15, certificate=c.certify())["summary"]
    assert s["ordered"] and s["empirical_abs"] <= s["certified_abs"]


def test_subproblems_are_the_products_of_the_block_with_cardinality_k():
    t = dense_target()
    c = RfssConstruction(t, 7, seed=4, k=3)
    subs = c.subproblems()
    lin0, lin1 = c.linears()
    assert len(subs) == sum(p.numel() for p in t.parameters())
    b = c.network.blocks()[0]
    V, u, beta = b.V.weight_orig.detach().numpy(), b.U.weight.detach().numpy(), b.U.bias.detach().numpy()
    assert np.all(u >= 0) and np.all(beta >= 0) and V.min() < 0 <= V.max() <= 1
    sp = subs[2 * 6 + 4]  # row-major: entry (2, 4)
    assert sp.kind == "weight" and sp.entry == (2, 4) and sp.instance.cardinality == 3
    np.testing.assert_array_equal(sp.units, np.arange(4 * 7, 5 * 7))
    np.testing.assert_array_equal(sp.instance.candidates.reshape(-1), V[2, 28:35] * u[4])
    assert sp.target == lin0.weight[2, 4].item()
    bias = subs[lin0.weight.numel() + 1]
    assert bias.kind == "bias" and bias.entry == (1,)
    np.testing.assert_array_equal(bias.instance.candidates.reshape(-1), V[1, 6 * 7:] * beta)


def test_k_none_is_plain_rss_and_the_conv_part_is_the_iclr_construction():
    t = lenet_like(1)
    rss, _ = construct(t, 9, "rfss", solver="exact", seed=5)
    subs = rss.subproblems()
    assert all(sp.instance.cardinality is None for sp in subs if sp.instance is not None)
    # dense masks are the exact RSS optima of the same candidates
    for sp in subs[-20:]:
        best = milp.solve(milp.Instance(sp.instance.candidates.reshape(-1), sp.target), solver="exact")
        chosen = sp.units[best.mask.astype(bool)]
        row = rss.network.blocks()[sp.layer - rss.conv_blocks()].V.weight_mask[sp.entry[0], sp.units]
        assert torch.equal(row.nonzero().flatten(), torch.as_tensor(np.sort(chosen - sp.units[0])))
    # conv part: exactly the ICLR construction of the conv layers (same random values, same masks)
    iclr, _ = construct(nn.Sequential(*list(t)[:3]), 9, "iclr", solver="exact", seed=5)
    for a, b in zip(rss.network.conv.state_dict().items(), iclr.network.state_dict().items()):
        assert a[0] == b[0] and torch.equal(a[1], b[1]), a[0]


@pytest.mark.parametrize("k", [0, -1, 9, 2.5, True, "3", [2]])
def test_bad_k_is_refused_with_one_clear_line(k):
    with pytest.raises(ConstructionError, match=r"^k: .*1 <= k <= n = 8") as exc:
        RfssConstruction(dense_target(), 8, k=k)
    assert "\n" not in str(exc.value)


def test_integral_float_k_is_accepted():
    assert RfssConstruction(dense_target(), 8, k=4.0).k == 4


@pytest.mark.parametrize("bad,match", [
    (nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Conv2d(1, 1, 1)), "after the dense head"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(8, 2)), "Flatten"),
    (nn.Sequential(nn.Flatten(start_dim=0), nn.Linear(4, 2)), "start_dim"),
    (nn.Sequential(nn.Linear(4, 3), nn.Tanh()), "Tanh"),
    (nn.Linear(4, 3), "nn.Sequential"),
])
def test_unsupported_targets_are_refused(bad, match):
    with pytest.raises(ConstructionError, match=match):
        RfssConstruction(bad, 4)


def test_unknown_conv_part_is_refused_clearly():
    with pytest.raises(ConstructionError, match="^conv: .*iclr or structured, got 'other'$"):
        RfssConstruction(lenet_like(), 4, conv="other")


def test_files_round_trip_and_bad_files_are_refused(tmp_path):
    t = lenet_like(2)
    c, _ = construct(t, 6, "rfss", solver="exact", seed=1, k=2, scale="auto")
    c.network.save(tmp_path / "p.pt", extra={"k": 2})
    h = load_pruned(tmp_path / "p.pt")
    assert isinstance(h, PrunedRandomNet) and h.k == 2 and h.extra == {"k": 2}
    X = images(4)
    with torch.no_grad():
        assert torch.equal(h(X), c.network(X))
    again = RfssConstruction.attach(t, h)
    assert again.certify()["abs"] == c.certify()["abs"] and again.lambdas == c.lambdas
    with pytest.raises(ConstructionError, match="layers do not match"):
        RfssConstruction.attach(nn.Sequential(*list(lenet_like())[:3], nn.Flatten(), nn.Linear(32, 3)), h)
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    for key, value, match in [("head.1.V.weight_mask", 0.5, "0 and 1"), ("head.1.U.weight", -1.0, "non-negative"),
                              ("head.3.V.weight_orig", float("nan"), "finite")]:
        bad = {**blob, "state_dict": dict(blob["state_dict"])}
        tensor = bad["state_dict"][key].clone()
        tensor.view(-1)[0] = value
        bad["state_dict"][key] = tensor
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(ConstructionError, match=match):
            load_pruned(tmp_path / "bad.pt")
    bad = {**blob, "dense": blob["dense"].replace('"n": 6', '"n": 600')}
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ConstructionError, match="shape"):
        load_pruned(tmp_path / "bad.pt")


def test_auto_scale_puts_every_entry_within_k_subset_reach():
    t = dense_target(scale=3.0)
    c = RfssConstruction(t, 6, seed=1, k=2, scale="auto")
    assert all(lam > 1 for lam in c.dense_lambdas)
    for sp in c.subproblems():
        s = np.sort(sp.instance.candidates.reshape(-1))
        # the rule scales only down: |z| within the reach on its own side (the other bound no lambda >= 1 moves)
        assert (sp.target <= s[-2:].sum() + 1e-12) if sp.target > 0 else (sp.target >= s[:2].sum() - 1e-12)
    c2, _ = construct(t, 6, "rfss", solver="exact", seed=1, k=2, scale="auto")
    X = vectors(8)
    with torch.no_grad():
        torch.testing.assert_close(c2.network(X), c2.effective()(X), rtol=1e-12, atol=1e-12)
    r = verify(t, c2.network, X, restarts=3, steps=20, certificate=c2.certify())
    assert r["summary"]["ordered"]


def test_certificate_holds_against_the_attack_on_random_dense_targets():
    for seed in range(3):
        t = dense_target(seed, scale=1.0)
        c, _ = construct(t, 4, "rfss", solver="exact", seed=seed, k=2)  # small n: large errors
        r = verify(t, c.network, vectors(8, seed=seed), restarts=3, steps=15, seed=seed, certificate=c.certify())
        assert 0 < r["adversarial"]["abs"] <= r["certified"]["abs"], r["summary"]


def test_registered():
    assert REGISTRY["rfss"] is RfssConstruction
    assert RfssConstruction.check_target(nn.Sequential(nn.Conv2d(1, 1, 1)))[1] == []
    assert isinstance(IclrConstruction.LAYERS.allowed, dict)


def signed_target(seed=0):
    torch.manual_seed(seed)
    t = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()  # layer 1: signed inputs
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(0.3 / p.abs().max())
    return t


@pytest.mark.parametrize("k", [None, 5])
def test_signed_inputs_get_both_halves_exactly(k):
    t = signed_target()
    n = 12
    c, info = construct(t, n, "rfss", solver="exact", seed=1, k=k, scale="auto")  # every entry within reach
    assert info["residuals"].max() < 0.05
    flags = [b.signed for b in c.network.blocks()]
    assert flags == [False, True, False]
    b = c.network.blocks()[1]
    assert b.U.weight_neg is not None and bool((b.U.weight_neg >= 0).all()) and b.U.hidden == 2 * 4 * n + n
    subs = c.subproblems()
    neg = [sp for sp in subs if sp.kind == "weight-"]
    assert len(neg) == 4 * 3 and len(subs) == sum(p.numel() for p in t.parameters()) + len(neg)
    sp = neg[5]  # entry (1, 1): target -W, candidates of the negative half
    j, i = sp.entry
    assert sp.target == -t[1].weight[j, i].item() / c.dense_lambdas[1]
    V, w = b.V.weight_orig.detach().numpy(), b.U.weight_neg.detach().numpy()
    np.testing.assert_array_equal(sp.instance.candidates.reshape(-1), V[j, (4 + i) * n:(5 + i) * n] * w[i])
    if k is not None:
        groups = b.V.weight_mask[:, :2 * 4 * n].reshape(3, 8, n).sum(-1)
        assert torch.all(groups == k) and b.density() == k / n
    X = vectors(16, 5)
    with torch.no_grad():
        g = c.network(X)
        torch.testing.assert_close(g, c.effective()(X), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c.network.compact()(X), g, rtol=1e-12, atol=1e-12)
        if k is None:  # (with k, auto-scaling amplifies the scaled residuals by Lambda: looser)
            assert (g - t(X)).abs().max() < 0.1
    r = verify(t, c.network, X, restarts=4, steps=30, certificate=c.certify())
    assert r["summary"]["ordered"] and r["adversarial"]["abs"] <= r["certified"]["abs"]


def test_signed_certificate_holds_with_large_errors(tmp_path):
    for seed in range(3):
        t = signed_target(seed)
        c, _ = construct(t, 3, "rfss", solver="exact", seed=seed, k=1)  # tiny n: large errors
        r = verify(t, c.network, vectors(8, 5, seed), restarts=3, steps=15, seed=seed, certificate=c.certify())
        assert 0 < r["adversarial"]["abs"] <= r["certified"]["abs"], r["summary"]
    c.network.save(tmp_path / "s.pt")
    h = load_pruned(tmp_path / "s.pt")
    assert RfssConstruction.attach(t, h).certify()["abs"] == c.certify()["abs"]


# ----------------------------------------------------------------------------- structured conv part
def conv_conv_target(seed=0):
    """Conv directly after conv (the second structured block is signed under domain auto), then a ReLU, pooling and
    a head whose first layer sees non-negative inputs; conv weights of size 1 so the MRSS keep something."""
    torch.manual_seed(seed)
    t = nn.Sequential(nn.Conv2d(1, 2, 2), nn.Conv2d(2, 2, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(18, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        for m in t:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_((1.0 if isinstance(m, nn.Conv2d) else 0.5) / m.weight.abs().max())
                m.bias.mul_(0.5)
    return t


@pytest.mark.parametrize("domain,n_conv", [("auto", 10), ("signed", 10), ("auto", 5)])
def test_structured_conv_part_composes_exactly(domain, n_conv):
    t, X = conv_conv_target(1), images(12, seed=2)
    c, info = construct(t, 6, "rfss", solver="exact", seed=4, k=2, conv="structured", n_conv=n_conv,
                        conv_domain=domain)
    assert info["statuses"].get("optimal") == info["instances"]
    assert isinstance(c.conv_part, StructuredConstruction) and c.iclr is None
    assert c.conv_part.domains == (["nonnegative", "signed"] if domain == "auto" else ["signed", "signed"])
    g = c.network
    # conv part: exactly the structured construction of the conv layers (same random values, same masks)
    alone, _ = construct(nn.Sequential(*list(t)[:4]), n_conv, "structured", solver="exact", seed=4, domain=domain)
    for a, b in zip(g.conv.state_dict().items(), alone.network.state_dict().items()):
        assert a[0] == b[0] and torch.equal(a[1], b[1]), a[0]
    assert g.parameter_counts()["conv_kept"] == alone.network.parameter_counts()["kept"] > 0
    for b in g.blocks():  # the head: still exactly k of n per target entry
        assert b.density() == 2 / 6
    with torch.no_grad():
        out = g(X)
        torch.testing.assert_close(out, c.effective()(X), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g.compact()(X), out, rtol=1e-12, atol=1e-12)
    # the certificate: conv layers as the structured construction certifies them, then the head
    cert = c.certify()
    for mine, theirs in zip(cert["layers"][:2], alone.certify()["layers"]):
        assert mine["error_bound"] == pytest.approx(theirs["error_bound"], rel=1e-12)
    assert cert["abs"] > cert["layers"][1]["error_bound"]
    r = verify(t, g, X, restarts=3, steps=20, certificate=cert)
    s = r["summary"]
    assert s["ordered"] and 0 < s["empirical_abs"] <= s["adversarial_abs"] <= s["certified_abs"]


def test_structured_conv_part_file_round_trip_and_checks(tmp_path):
    t = conv_conv_target(2)
    c, _ = construct(t, 5, "rfss", solver="exact", seed=1, k=3, conv="structured", n_conv=8, scale="auto")
    c.network.save(tmp_path / "s.pt", extra={"conv": "structured"})
    h = load_pruned(tmp_path / "s.pt")
    assert isinstance(h, PrunedRandomNet) and type(h.conv).__name__ == "StructuredRandomCNN"
    assert h.conv_spec["construction"] == "structured" and h.conv_spec["domains"] == ["nonnegative", "signed"]
    X = images(5)
    with torch.no_grad():
        assert torch.equal(h(X), c.network(X)) and torch.equal(h.compact()(X), c.network.compact()(X))
    again = RfssConstruction.attach(t, h)
    assert isinstance(again.conv_part, StructuredConstruction)
    assert again.certify()["abs"] == c.certify()["abs"] and again.lambdas == c.lambdas
    blob = torch.load(tmp_path / "s.pt", weights_only=True)
    for field, old, new, match in [("conv", '"blocks": "channel"', '"blocks": "diagonal"', "conv.blocks"),
                                   ("conv", '"signed"]', '"both"]', "conv.domains"),
                                   ("conv", '"construction": "structured"', '"construction": "lottery"',
                                    "conv.construction"),
                                   ("conv", '"n": 8', '"n": 9', "shape")]:
        assert old in blob[field], (old, blob[field])
        torch.save({**blob, field: blob[field].replace(old, new)}, tmp_path / "bad.pt")
        with pytest.raises(ConstructionError, match=match):
            load_pruned(tmp_path / "bad.pt")
    bad = {**blob, "state_dict": dict(blob["state_dict"])}
    key = next(k for k in bad["state_dict"] if k.startswith("conv.") and k.endswith("V.weight_mask"))
    mask = bad["state_dict"][key].clone()
    mask.view(-1)[0] = 0.5
    bad["state_dict"][key] = mask
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ConstructionError, match="0 and 1"):
        load_pruned(tmp_path / "bad.pt")
    with pytest.raises(ConstructionError, match="receives possibly negative inputs"):  # structured's own check
        RfssConstruction(t, 4, conv="structured", conv_domain="nonnegative")
