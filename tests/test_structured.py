"""The NeurIPS 2023 structured construction (Theorem 3, Lemmas 11-12): random network, Eq. 21 mask, MRSS
filter removal, input domains, biases, compact export, certificate. Tiny targets (c0, c1 <= 2, d <= 2)
and exact MRSS enumeration."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import milp
from models.random_cnn import ConstructionError, PrunedRandomCNN
from models.structured_cnn import SignSplitConv2d, StructuredRandomCNN
from pipelines.constructions import REGISTRY, construct
from pipelines.constructions.iclr import IclrConstruction
from pipelines.constructions.structured import (StructuredConstruction, block_domains, certified_split,
                                                solve)
from pipelines.verify import certified, verify

N = 12  # channels per half-block: about 6 candidates per instance, exact enumeration in milliseconds

TARGETS = {
    "one-conv": lambda: nn.Sequential(nn.Conv2d(1, 2, 2, padding=1)),
    "conv-relu-pool-conv": lambda: nn.Sequential(nn.Conv2d(2, 2, 2, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                                 nn.Conv2d(2, 1, 2, bias=False)),
    "conv-conv": lambda: nn.Sequential(nn.Conv2d(2, 2, 2, stride=2), nn.Conv2d(2, 1, 1)),  # 2nd input is signed
}


def make(name, seed=0, std=1.0):
    torch.manual_seed(seed)
    t = TARGETS[name]().double()
    with torch.no_grad():
        for p in t.parameters():
            p.normal_(0.0, std)
    return t


def inputs(t, signed, count=12, size=6, seed=0):
    c0 = next(m for m in t if isinstance(m, nn.Conv2d)).in_channels
    X = torch.rand(count, c0, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return 2 * X - 1 if signed else X


def built(name, domain="auto", n=N, seed=1, k=None, scale="none", target_seed=0):
    t = make(name, target_seed)
    c = StructuredConstruction(t, n, seed=seed, domain=domain, k=k, scale=scale)
    info = solve(c, solver="exact", seed=seed)
    return t, c, info


def convs(t):
    return [m for m in t if isinstance(m, nn.Conv2d)]


class ToSigned(nn.Module):
    """x -> 2x - 1: maps [0, 1] onto [-1, 1], so verify's [0, 1] searches cover the signed domain."""

    def forward(self, x):
        return 2 * x - 1


# ------------------------------------------------------------------------- random network and Eq. 21
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_random_network_is_theorem_3s_seeded_normal_and_frozen(name):
    t = make(name)
    c = StructuredConstruction(t, 4, seed=3, domain="signed")
    for bi, (b, K) in enumerate(zip(c.network.blocks(), convs(t))):
        c0, c1 = K.in_channels, K.out_channels
        assert b.V.weight_orig.shape == (2 * c0 * 4, c0, 1, 1) and b.V.bias is None
        assert b.U.weight_orig.shape == (c1, 2 * c0 * 4, *K.kernel_size)
        assert (b.U.stride, b.U.padding) == (K.stride, K.padding)
        rng = np.random.default_rng([3, bi, 2023])  # V first, then U
        np.testing.assert_array_equal(b.V.weight_orig.numpy(), rng.standard_normal(b.V.weight_orig.shape))
        np.testing.assert_array_equal(b.U.weight_orig.numpy(), rng.standard_normal(b.U.weight_orig.shape))
        if K.bias is not None:  # the target's bias, carried by U (not random)
            assert torch.equal(b.U.bias, K.bias.detach())
    assert not any(p.requires_grad for p in c.network.parameters())
    again = StructuredConstruction(t, 4, seed=3, domain="signed").network.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in c.network.state_dict().items())
    other = StructuredConstruction(t, 4, seed=4, domain="signed").network.blocks()[0]
    assert not torch.equal(other.V.weight_orig, c.network.blocks()[0].V.weight_orig)


def definition_2(c0, n):
    """Definition 2 with 2n, 1-indexed as in the paper: S[k, t] = 1 iff ceil(k / 2n) = t (PyTorch layout of V)."""
    return torch.tensor([[1.0 if math.ceil(k / (2 * n)) == t else 0.0 for t in range(1, c0 + 1)]
                         for k in range(1, 2 * n * c0 + 1)], dtype=torch.float64)


def equation_21(V, n):
    """Eq. 21, 1-indexed: keep V[t, k] > 0 for k in [(2t-2)n+1, (2t-1)n], V[t, k] < 0 for k in [(2t-1)n+1, 2tn]."""
    hidden, c0 = V.shape
    S = torch.zeros(hidden, c0, dtype=torch.float64)
    for t in range(1, c0 + 1):
        for k in range(1, hidden + 1):
            v = float(V[k - 1, t - 1])
            if (2 * t - 2) * n + 1 <= k <= (2 * t - 1) * n and v > 0:
                S[k - 1, t - 1] = 1
            elif (2 * t - 1) * n + 1 <= k <= 2 * t * n and v < 0:
                S[k - 1, t - 1] = 1
    return S


@pytest.mark.parametrize("domain", ["signed", "auto"])
def test_V_mask_before_filter_removal_is_equation_21_inside_definition_2(domain):
    t = make("conv-relu-pool-conv")
    c = StructuredConstruction(t, 5, seed=2, domain=domain)
    for b in c.network.blocks():
        V, S = b.V.weight_orig[:, :, 0, 0], b.V.weight_mask[:, :, 0, 0]
        D2 = definition_2(b.c0, 5)
        assert torch.equal(b.blocked_mask()[:, :, 0, 0], D2)
        assert torch.equal(S, equation_21(V, 5))
        assert torch.all(S <= D2) and torch.all(S.sum(1) <= 1)  # one possible entry per filter
        # U keeps exactly the input channels of the surviving filters
        alive = S.sum(1) > 0
        assert torch.all(b.U.weight_mask[:, alive] == 1) and torch.all(b.U.weight_mask[:, ~alive] == 0)


def test_lemma_11_relu_of_the_blocked_layer_is_V_plus_X_plus_plus_V_minus_X_minus():
    t = make("conv-relu-pool-conv")
    c = StructuredConstruction(t, 6, seed=0, domain="signed")
    b = c.network.blocks()[0]
    X = inputs(t, signed=True)
    Vt = b.masked("V")
    with torch.no_grad():
        lhs = torch.relu(b.V(X))
        rhs = (nn.functional.conv2d(X.clamp(min=0), Vt.clamp(min=0))
               + nn.functional.conv2d((-X).clamp(min=0), (-Vt).clamp(min=0)))
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-15)


# ------------------------------------------------------------------------- MRSS instances (Lemma 12)
@pytest.mark.parametrize("domain", ["signed", "auto"])
def test_subproblems_are_the_mrss_instances_of_lemma_12(domain):
    t = make("conv-conv")
    c = StructuredConstruction(t, 6, seed=1, domain=domain, scale=1.5)
    subs = c.subproblems()
    kinds = [(sp.layer, sp.kind) for sp in subs]
    for bi, (K, dom) in enumerate(zip(convs(t), c.domains)):
        assert kinds.count((bi, "filter+")) == K.in_channels
        assert kinds.count((bi, "filter-")) == (K.in_channels if dom == "signed" else 0)
    assert c.domains == (["signed", "signed"] if domain == "signed" else ["nonnegative", "signed"])
    for sp in subs:
        b, K = c.network.blocks()[sp.layer], convs(t)[sp.layer]
        (t0,) = sp.entry
        pos, neg = b.half_blocks(t0)
        U, V = b.U.weight_orig.numpy(), b.V.weight_orig.numpy()[:, :, 0, 0]
        half, sign = (pos, 1.0) if sp.kind == "filter+" else (neg, -1.0)
        assert set(sp.units) == {k for k in half if sign * V[k, t0] > 0}
        rows = np.stack([(U[:, k] * sign * V[k, t0]).reshape(-1) for k in sp.units])
        np.testing.assert_array_equal(sp.instance.candidates, rows)
        assert sp.instance.d == K.out_channels * K.kernel_size[0] * K.kernel_size[1]
        np.testing.assert_array_equal(sp.target, sign * K.weight[:, t0].detach().numpy().reshape(-1) / 1.5)
        assert sp.instance.cardinality is None and isinstance(sp.instance, milp.Instance)


def test_fixed_subset_size_goes_through_the_cardinality_row():
    t, c, info = built("conv-relu-pool-conv", domain="signed", k=2)
    subs = c.subproblems()
    assert all(sp.instance.cardinality == min(2, sp.units.size) for sp in subs)
    for sp in subs:  # every (t0, half-block) keeps exactly min(k, candidates) filters
        S = c.network.blocks()[sp.layer].V.weight_mask[:, :, 0, 0]
        assert int(S[torch.as_tensor(sp.units, dtype=torch.long), sp.entry[0]].sum()) == min(2, sp.units.size)
    assert max(sp.units.size for sp in subs) > 2  # the row does constrain something
    with pytest.raises(ConstructionError, match="k:"):
        StructuredConstruction(t, 4, k=5)


# ------------------------------------------------------------------------- exactness of the pruned network
@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize("domain", ["signed", "auto"])
def test_pruned_network_equals_its_effective_network_and_its_compact_export(name, domain):
    t, c, info = built(name, domain)
    X = inputs(t, signed=domain == "signed")
    with torch.no_grad():
        g = c.network(X)
        torch.testing.assert_close(g, c.effective()(X), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c.network.compact()(X), g, rtol=1e-12, atol=1e-12)
    assert min(c.network.parameter_counts()["kept_channels"]) > 0  # no block's subsets are all empty
    # every instance's residual is exactly the max-norm error of its half of the effective kernel
    subs = c.subproblems()
    kernels = c.effective_kernels()
    for sp, res in zip(subs, info["residuals"]):
        K = convs(t)[sp.layer].weight.detach()
        Lp, Lm, _ = kernels[sp.layer]
        (t0,) = sp.entry
        err = (K[:, t0] - Lp[:, t0]) if sp.kind == "filter+" else (-K[:, t0] - Lm[:, t0])
        assert err.abs().max().item() == pytest.approx(res, rel=1e-9, abs=1e-12)
    if any(isinstance(m, SignSplitConv2d) for m in c.effective()):
        assert "signed" in c.domains


def test_filter_removal_keeps_exactly_the_selected_filters_and_their_U_channels():
    t, c, info = built("conv-relu-pool-conv", "signed")
    subs = c.subproblems()
    kept = {bi: set() for bi in range(len(c.network.blocks()))}
    sols = milp.solve_many([sp.instance for sp in subs], solver="exact", progress=False)
    for sp, s in zip(subs, sols):
        kept[sp.layer] |= {int(k) for k in sp.units[s.mask.astype(bool)]}
    compact = [m for m in c.network.compact() if isinstance(m, nn.Conv2d)]
    for bi, b in enumerate(c.network.blocks()):
        S = b.V.weight_mask[:, :, 0, 0]
        assert torch.all(S <= equation_21(b.V.weight_orig[:, :, 0, 0], N))
        assert set(torch.nonzero(S.sum(1)).flatten().tolist()) == kept[bi]
        alive = S.sum(1) > 0
        assert torch.all(b.U.weight_mask[:, alive] == 1) and torch.all(b.U.weight_mask[:, ~alive] == 0)
        Vc = compact[2 * bi].weight[:, :, 0, 0]
        assert Vc.shape[0] == len(kept[bi]) == c.network.parameter_counts()["kept_channels"][bi]
        # Remark 13: per input channel, kept positive filters then kept negative filters, one entry each
        owner = Vc.abs().argmax(1)
        assert torch.all((Vc != 0).sum(1) == 1) and torch.all(owner[1:] >= owner[:-1])
        for t0 in range(b.c0):
            signs = torch.sign(Vc[owner == t0, t0])
            assert torch.all(signs[1:] <= signs[:-1])
    counts = c.network.parameter_counts()
    assert counts["random"] == sum(b.V.weight_orig.numel() + b.U.weight_orig.numel() for b in c.network.blocks())
    assert counts["kept"] == sum(len(kept[bi]) * (1 + b.U.out_channels * b.U.kernel_size[0] * b.U.kernel_size[1])
                                 for bi, b in enumerate(c.network.blocks()))


# ------------------------------------------------------------------------- input domains
@pytest.mark.parametrize("name", ["one-conv", "conv-relu-pool-conv"])
def test_nonnegative_domain_network_equals_the_signed_one_on_nonnegative_inputs(name):
    _, signed, _ = built(name, "signed")
    _, nonneg, _ = built(name, "nonnegative")
    assert nonneg.domains == ["nonnegative"] * len(nonneg.domains)
    for a, b in zip(signed.network.blocks(), nonneg.network.blocks()):
        Sa, Sb = a.V.weight_mask[:, :, 0, 0], b.V.weight_mask[:, :, 0, 0]
        for t0 in range(a.c0):
            pos, neg = a.half_blocks(t0)
            assert torch.equal(Sa[pos.start:pos.stop], Sb[pos.start:pos.stop])  # same positive-half selections
            assert Sb[neg.start:neg.stop].sum() == 0  # X- = 0: the negative half-block is removed
    more = signed.network.parameter_counts()["kept"] - nonneg.network.parameter_counts()["kept"]
    assert more >= 0 and (more > 0 or name == "one-conv")  # one-conv: the best negative subsets are empty
    X = inputs(signed.target, signed=False)
    with torch.no_grad():
        torch.testing.assert_close(nonneg.network(X), signed.network(X), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(nonneg.network.compact()(X), signed.network.compact()(X), rtol=1e-12, atol=1e-12)
    if more:  # on signed inputs only the signed network's negative half-blocks act (x- != 0)
        Xs = inputs(signed.target, signed=True)
        with torch.no_grad():
            assert not torch.allclose(nonneg.network(Xs), signed.network(Xs))


def test_block_domains_follow_the_declared_domain():
    assert block_domains(list(make("conv-relu-pool-conv")), "auto") == ["nonnegative", "nonnegative"]
    assert block_domains(list(make("conv-conv")), "auto") == ["nonnegative", "signed"]
    assert block_domains(list(make("conv-conv")), "signed") == ["signed", "signed"]
    with pytest.raises(ConstructionError, match="possibly negative"):
        StructuredConstruction(make("conv-conv"), 4, domain="nonnegative")
    with pytest.raises(ConstructionError, match="domain"):
        StructuredConstruction(make("one-conv"), 4, domain="positive")


# ------------------------------------------------------------------------- biases
@pytest.mark.parametrize("domain", ["nonnegative", "signed"])
def test_biases_are_carried_exactly_by_U(domain):
    t, c, _ = built("one-conv", domain, scale=2.0)  # the bias goes through b / Lambda and back
    Lp, Lm, cb = c.effective_kernels()[0]
    torch.testing.assert_close(cb, t[0].bias.detach(), rtol=1e-15, atol=0)
    # the target whose kernel is what the block computes (on x >= 0: L+) is reproduced bias included
    same = make("one-conv")
    with torch.no_grad():
        same[0].weight.copy_(Lp)
    X = inputs(t, signed=False)
    with torch.no_grad():
        torch.testing.assert_close(c.network(X), same(X), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c.network.compact()(X), same(X), rtol=1e-12, atol=1e-12)
    counts = c.network.parameter_counts()
    assert counts["target_bias"] == 2  # kept target parameters, apart from the random ones
    b = c.network.blocks()[0]
    assert counts["random"] == b.V.weight_orig.numel() + b.U.weight_orig.numel()
    t0, c0, _ = built("one-conv", domain)
    assert c0.certify()["layers"][0]["max_bias_error"] == 0.0  # unscaled: the bias is the target's, bit for bit


# ------------------------------------------------------------------------- certificate
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_certified_at_least_adversarial_at_least_empirical_on_nonnegative_inputs(name):
    t, c, _ = built(name, "auto")
    X = inputs(t, signed=False, count=16)
    r = verify(t, c.network, X, restarts=3, steps=25, certificate=c.certify())
    s = r["summary"]
    assert s["ordered"] and 0 < s["empirical_abs"] <= s["adversarial_abs"] * (1 + 1e-12) <= s["certified_abs"]
    assert r["certified"]["input_domain"] == [0.0, 1.0]
    if "signed" not in c.domains:  # then it is the project's certificate itself
        L = [(Lp, cb) for Lp, _, cb in c.effective_kernels()]
        assert c.certify()["abs"] == certified(c.layers, L)["abs"]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_certified_at_least_adversarial_at_least_empirical_on_signed_inputs(name):
    t, c, _ = built(name, "signed")
    cert = c.certify()
    assert cert["input_domain"] == [-1.0, 1.0]
    f, g = nn.Sequential(ToSigned(), t), nn.Sequential(ToSigned(), c.network)
    X = inputs(t, signed=False, count=16)  # mapped onto [-1, 1] by ToSigned
    s = verify(f, g, X, restarts=3, steps=25, certificate=cert)["summary"]
    assert s["ordered"] and 0 < s["empirical_abs"] <= s["adversarial_abs"] * (1 + 1e-12) <= s["certified_abs"]


def test_split_certificate_is_the_projects_certificate_without_negative_halves_and_matches_a_hand_bound():
    t, c, _ = built("conv-relu-pool-conv", "nonnegative")
    kernels = c.effective_kernels()
    assert all(Lm is None for _, Lm, _ in kernels)
    assert certified_split(c.layers, kernels)["abs"] == pytest.approx(
        certified(c.layers, [(Lp, cb) for Lp, _, cb in kernels])["abs"], rel=1e-12)
    t, c, _ = built("one-conv", "signed")
    Lp, Lm, cb = c.effective_kernels()[0]
    K, b = t[0].weight.detach(), t[0].bias.detach()
    by_hand = max(float(torch.maximum((K[l] - Lp[l]).abs(), (K[l] + Lm[l]).abs()).sum() + (b[l] - cb[l]).abs())
                  for l in range(K.shape[0]))
    assert c.certify()["abs"] == pytest.approx(by_hand, rel=1e-8)
    # the proof of Lemma 12 sums the two halves; the max is never larger
    paper = max(float((K[l] - Lp[l]).abs().sum() + (K[l] + Lm[l]).abs().sum()) for l in range(K.shape[0]))
    assert by_hand <= paper + 1e-15


def test_auto_scale_puts_every_coordinate_in_reach_and_keeps_the_network_exact():
    t, c, _ = built("conv-relu-pool-conv", "signed", scale="auto", n=6)
    assert all(lam >= 1 for lam in c.lambdas) and c.scaling_info["mode"] == "auto"
    for sp in c.subproblems():
        if sp.instance is None:
            continue
        C = sp.instance.candidates
        hi, lo = np.where(C > 0, C, 0).sum(0), np.where(C < 0, C, 0).sum(0)
        for z, h, l in zip(sp.target, hi, lo):
            if (z > 0 and h > 0) or (z < 0 and l < 0):
                assert l - 1e-12 <= z <= h + 1e-12
    X = inputs(t, signed=True)
    with torch.no_grad():
        torch.testing.assert_close(c.network(X), c.effective()(X), rtol=1e-12, atol=1e-12)
    assert float(c.network.output_scale.value) == pytest.approx(float(np.prod(c.lambdas)))


# ------------------------------------------------------------------------- batch engine, store, files
def test_registry_runner_batch_engine_and_store(tmp_path):
    assert REGISTRY["structured"] is StructuredConstruction
    t = make("conv-relu-pool-conv")
    store = tmp_path / "s.sqlite"
    c, info = construct(t, N, "structured", solver="exact", seed=2, store=store)
    assert c.domain == "auto" and c.dist == "uniform"  # construct() passes its own dist; domain/k: defaults
    n_inst = sum(sp.instance is not None for sp in c.subproblems())
    assert len(milp.SolutionStore(store)) == n_inst
    again, _ = construct(t, N, "structured", solver="exact", seed=2, store=store)  # answered by the store
    assert len(milp.SolutionStore(store)) == n_inst
    for a, b in zip(c.network.state_dict().values(), again.network.state_dict().values()):
        assert torch.equal(a, b)
    signed = StructuredConstruction(t, N, seed=2, domain="signed", k=3)
    solve(signed, solver="exact", store=store)  # options construct() does not pass, same engine and store
    assert len(milp.SolutionStore(store)) > n_inst


def test_save_load_attach_round_trip(tmp_path):
    t, c, _ = built("conv-conv", "auto", scale="auto")
    c.network.save(tmp_path / "g.pt", extra={"n": N})
    h = StructuredRandomCNN.load(tmp_path / "g.pt")
    assert (h.domain, h.domains, h.scales, h.extra) == (c.domain, c.domains, c.network.scales, {"n": N})
    X = inputs(t, signed=False)
    with torch.no_grad():
        assert torch.equal(h(X), c.network(X))
    again = StructuredConstruction.attach(t, h)
    assert again.certify()["abs"] == c.certify()["abs"]
    for name, buf in h.named_buffers():
        if name.endswith("_mask"):
            assert torch.all((buf == 0) | (buf == 1)), name
    with pytest.raises(ConstructionError, match="layers do not match"):
        StructuredConstruction.attach(make("conv-relu-pool-conv"), h)
    iclr = IclrConstruction(make("conv-relu-pool-conv"), 3).network
    with pytest.raises(ConstructionError, match="not 'structured'"):
        StructuredConstruction.attach(make("conv-relu-pool-conv"), iclr)
    iclr.save(tmp_path / "iclr.pt")
    with pytest.raises(ConstructionError, match="PrunedRandomCNN.load"):
        StructuredRandomCNN.load(tmp_path / "iclr.pt")
    with pytest.raises(ConstructionError, match="format"):  # and the other way round
        PrunedRandomCNN.load(tmp_path / "g.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConstructionError, match="bad.pt"):
        StructuredRandomCNN.load(tmp_path / "bad.pt")
    blob = torch.load(tmp_path / "g.pt", weights_only=True)
    blob["state_dict"]["net.0.V.weight_mask"] = blob["state_dict"]["net.0.V.weight_mask"] * 0.5
    torch.save(blob, tmp_path / "half.pt")
    with pytest.raises(ConstructionError, match="0 and 1"):
        StructuredRandomCNN.load(tmp_path / "half.pt")


@pytest.mark.parametrize("scale", ["none", "auto"])
def test_registry_conformance_with_the_networks_own_loader(scale, tmp_path):
    """tests/test_constructions.py::test_conformance for this construction, with the file read back by
    StructuredRandomCNN.load (that suite reads every construction's file with PrunedRandomCNN.load, the
    ICLR network's loader, which cannot hold this architecture)."""
    torch.manual_seed(0)
    t = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 3, padding=1)).double()
    c, info = construct(t, 6, "structured", solver="exact", seed=5, scale=scale)
    assert info["instances"] == len(c.subproblems())
    X = inputs(t, signed=False, count=16, size=8)
    with torch.no_grad():
        g = c.network(X)
        torch.testing.assert_close(g, c.effective()(X), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c.network.compact()(X), g, rtol=1e-12, atol=1e-12)
    c.network.save(tmp_path / "p.pt")
    loaded = StructuredRandomCNN.load(tmp_path / "p.pt")
    with torch.no_grad():
        assert torch.equal(loaded(X), g)
    assert StructuredConstruction.attach(t, loaded).certify()["abs"] == c.certify()["abs"]


@pytest.mark.parametrize("kwargs,match", [
    ({"n": 0}, "n:"), ({"dist": "nsn"}, "dist"), ({"k": 0}, "k:"), ({"k": 2.0}, "k:"), ({"seed": -1}, "seed"),
    ({"scale": "big"}, "--scale"), ({"domain": "both"}, "domain"),
])
def test_bad_options_are_refused(kwargs, match):
    args = {"n": 4, **kwargs}
    n = args.pop("n")
    with pytest.raises(ConstructionError, match=match):
        StructuredConstruction(make("one-conv"), n, **args)


@pytest.mark.parametrize("bad,match", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(8, 2)), "Linear"),
    (nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), "groups"),
    (nn.Sequential(nn.ReLU()), "no Conv2d"),
    (nn.Conv2d(1, 2, 3), "nn.Sequential"),
])
def test_unsupported_targets_are_refused(bad, match):
    with pytest.raises(ConstructionError, match=match):
        StructuredConstruction(bad, 4)


# ------------------------------------------------------------------------- blocks per (input, output) pair
def built_pair(name, domain="auto", n=N, seed=1, k=None, scale="none"):
    t = make(name)
    c = StructuredConstruction(t, n, seed=seed, domain=domain, k=k, scale=scale, blocks="pair")
    info = solve(c, solver="exact", seed=seed)
    return t, c, info


@pytest.mark.parametrize("domain", ["signed", "auto"])
def test_pair_blocks_are_grouped_and_their_instances_have_dimension_d_squared(domain):
    t = make("conv-relu-pool-conv")
    c = StructuredConstruction(t, 5, seed=2, domain=domain, blocks="pair")
    for b, K, dom in zip(c.network.blocks(), convs(t), c.domains):
        c0, c1 = K.in_channels, K.out_channels
        assert b.V.weight_orig.shape == (2 * c0 * c1 * 5, c0, 1, 1)
        assert b.U.groups == c1 and b.U.weight_orig.shape == (c1, 2 * c0 * 5, *K.kernel_size)
        S = b.V.weight_mask[:, :, 0, 0]
        assert torch.all(S <= b.blocked_mask()[:, :, 0, 0]) and torch.all(S.sum(1) <= 1)
        for tt, j in b.pairs():  # Eq. 21 inside every pair's 2n-block
            pos, neg = b.half_blocks(tt, j)
            assert torch.equal(S[pos.start:pos.stop, tt], (b.V.weight_orig[pos.start:pos.stop, tt, 0, 0] > 0).double())
            assert torch.equal(S[neg.start:neg.stop, tt], (b.V.weight_orig[neg.start:neg.stop, tt, 0, 0] < 0).double())
            assert set(b.output_of()[pos.start:neg.stop].tolist()) == {j}
    subs = c.subproblems()
    for sp in subs:
        K, b = convs(t)[sp.layer], c.network.blocks()[sp.layer]
        t0, j = sp.entry
        sign = 1.0 if sp.kind == "pair+" else -1.0
        np.testing.assert_array_equal(sp.target, sign * K.weight[j, t0].detach().numpy().reshape(-1))
        if sp.instance is None:  # no candidate of the right sign in this half-block
            assert sp.units.size == 0
            continue
        assert sp.instance.d == K.kernel_size[0] * K.kernel_size[1]
        V = b.V.weight_orig.numpy()[:, :, 0, 0]
        rows = np.stack([b.u_column(int(k)).numpy().reshape(-1) * sign * V[k, t0] for k in sp.units])
        np.testing.assert_array_equal(sp.instance.candidates, rows)
    per_block = [K.in_channels * K.out_channels * (2 if dom == "signed" else 1) for K, dom in zip(convs(t), c.domains)]
    assert len(subs) == sum(per_block)


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize("domain", ["signed", "auto"])
def test_pair_blocks_pruned_equals_effective_and_compact_and_residuals_are_per_entry(name, domain):
    t, c, info = built_pair(name, domain)
    X = inputs(t, signed=domain == "signed")
    with torch.no_grad():
        g = c.network(X)
        torch.testing.assert_close(g, c.effective()(X), rtol=1e-12, atol=1e-12)
        compact = c.network.compact()
        torch.testing.assert_close(compact(X), g, rtol=1e-12, atol=1e-12)
    assert all(m.groups == m.out_channels for m in compact if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    kernels = c.effective_kernels()
    for sp, res in zip(c.subproblems(), info["residuals"]):
        K = convs(t)[sp.layer].weight.detach()
        Lp, Lm, _ = kernels[sp.layer]
        t0, j = sp.entry
        err = (K[j, t0] - Lp[j, t0]) if sp.kind == "pair+" else (-K[j, t0] - Lm[j, t0])
        assert err.abs().max().item() == pytest.approx(res, rel=1e-9, abs=1e-12)
    cert = c.certify()["abs"]
    with torch.no_grad():
        assert cert >= float((t(X) - g).abs().max())


def test_pair_blocks_nonnegative_equals_signed_on_nonnegative_inputs_and_round_trip(tmp_path):
    t, a, _ = built_pair("conv-relu-pool-conv", "auto")
    _, s, _ = built_pair("conv-relu-pool-conv", "signed")
    X = inputs(t, signed=False)
    with torch.no_grad():
        torch.testing.assert_close(a.network(X), s.network(X), rtol=1e-12, atol=1e-12)
    counts = a.network.parameter_counts()
    assert counts["random"] == sum(b.V.weight_orig.numel() + b.U.weight_orig.numel() for b in a.network.blocks())
    assert 0 < counts["kept"] < counts["random"]
    a.network.save(tmp_path / "p.pt")
    h = StructuredRandomCNN.load(tmp_path / "p.pt")
    assert h.blocking == "pair"
    with torch.no_grad():
        assert torch.equal(h(X), a.network(X))
    again = StructuredConstruction.attach(t, h)
    assert again.blocks == "pair" and again.certify()["abs"] == a.certify()["abs"]
    with pytest.raises(ConstructionError, match="blocks"):
        StructuredConstruction(t, 4, blocks="triple")
