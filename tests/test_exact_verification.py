"""Verification that cannot lie (issue 15): the exact sup by MILP against brute force, the interval
certificate above the exact sup (and below the Appendix B one), the attack near the exact sup, the general
MILP layer against enumeration, and the refusals."""
import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from milp import general
from pipelines.constructions import construct
from pipelines.exact_sup import exact_sup
from pipelines.verify import adversarial, certified_intervals, network_ops, verify


def built(layers, n, seed=0, construction="iclr", **kw):
    torch.manual_seed(seed)
    t = nn.Sequential(*layers).double()
    c, _ = construct(t, n, construction=construction, solver="exact", seed=seed, **kw)
    return t, c


def vertices(shape):
    d = int(np.prod(shape))
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=d)), dtype=torch.float64).view(-1, *shape)


def sup_on(t, g, X):
    with torch.no_grad():
        return float((t(X) - g(X)).abs().amax())


# ------------------------------------------------------------------ the general MILP layer
@pytest.mark.parametrize("solver", general.available())
def test_general_milp_solves_a_small_integer_program_exactly(solver):
    rng = np.random.default_rng(3)
    w, v = rng.integers(1, 9, 8).astype(float), rng.integers(1, 9, 8).astype(float)
    m = general.Model()
    xs = [m.var(0, 1, integer=True) for _ in range(8)]
    y = m.var(0, 2)  # a continuous variable in the objective too
    m.row(xs + [y], np.append(w, 3.0), hi=13.5)
    m.maximize(xs + [y], np.append(v, 1.0))
    brute = max(float(np.dot(v, s)) + min(2.0, max(0.0, (13.5 - np.dot(w, s)) / 3.0))
                for s in itertools.product([0, 1], repeat=8) if np.dot(w, s) <= 13.5)
    r = general.solve(m, solver, time_limit=20)
    assert r.status == "optimal"
    x = np.round(r.x[:8])
    value = float(np.dot(v, x)) + r.x[8]
    assert np.dot(w, x) + 3 * r.x[8] <= 13.5 + 1e-6 and value == pytest.approx(brute, abs=1e-6)
    assert r.dual >= brute - 1e-6


# ------------------------------------------------------------------ exact sup against brute force
def test_exact_sup_equals_vertex_enumeration_on_a_one_layer_target():
    """f - g is linear for one conv: its sup over the box is attained at a vertex (all 2^9 enumerated)."""
    t, c = built([nn.Conv2d(1, 2, 2, padding=1)], 4)
    g, shape = c.effective(), (1, 3, 3)
    brute = sup_on(t, c.network, vertices(shape))
    ex = exact_sup(t, g, shape, time_limit=20)
    assert ex["closed"] and ex["lower"] == pytest.approx(brute, rel=1e-9, abs=1e-12)
    assert ex["lower"] <= ex["upper"] <= brute * (1 + 1e-5) + 1e-9
    X = ex["argmax"]["X"].unsqueeze(0)
    assert sup_on(t, c.network, X) == pytest.approx(ex["lower"], rel=1e-12)  # attained by the pruned network itself
    assert certified_intervals(t, g, shape)["abs"] >= brute


def test_exact_sup_of_relu_and_pooling_bounds_every_sample_and_two_solvers_agree():
    t, c = built([nn.Conv2d(1, 2, 2), nn.ReLU(), nn.MaxPool2d(2, stride=1)], 4, seed=1)
    g, shape = c.effective(), (1, 3, 3)
    ex = exact_sup(t, g, shape, time_limit=20)
    assert ex["closed"]
    X = torch.cat([vertices(shape), torch.rand(20000, *shape, dtype=torch.float64,
                                              generator=torch.Generator().manual_seed(0))])
    sampled = sup_on(t, c.network, X)
    assert sampled <= ex["upper"] and ex["lower"] >= sampled - 1e-12  # the MILP found at least the best sample
    if "scip" in general.available():
        other = exact_sup(t, g, shape, solver="scip", time_limit=20, prune=False)
        assert other["lower"] == pytest.approx(ex["lower"], rel=1e-6, abs=1e-9)
    cert = certified_intervals(t, g, shape)["abs"]
    assert ex["upper"] <= cert <= c.certify()["abs"] * (1 + 1e-9)


# ------------------------------------------------------------------ the acceptance checks
SMALL = {
    "conv-relu-pool": ([lambda: nn.Conv2d(1, 3, 3), nn.ReLU, lambda: nn.MaxPool2d(2)], (1, 6, 6), 4),
    "strided-conv-relu-conv": ([lambda: nn.Conv2d(2, 3, 3, stride=2), nn.ReLU, lambda: nn.Conv2d(3, 2, 2)],
                               (2, 5, 5), 6),
    "three-convs-pool": ([lambda: nn.Conv2d(1, 3, 2, stride=2), nn.ReLU, lambda: nn.Conv2d(3, 3, 2), nn.ReLU,
                          lambda: nn.MaxPool2d(2), lambda: nn.Conv2d(3, 2, 1)], (1, 6, 6), 4),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_on_small_targets_adversarial_reaches_95_percent_of_the_exact_sup_and_certified_is_above(name):
    makers, shape, n = SMALL[name]
    t, c = built([m() for m in makers], n)
    r = verify(t, c.network, None, input_shape=shape, certificate=c.certify(), effective=c.effective(),
               exact=True, exact_time_limit=30, exact_total_time=60, attack_time=None, attack_rounds=2, restarts=4,
               steps=30)  # no time limit: the same attack on any machine
    s = r["summary"]
    assert s["exact_closed"], s
    assert s["adversarial_abs"] >= 0.95 * s["exact_upper"], s
    assert s["exact_lower"] <= s["exact_upper"] <= s["certified_abs"] <= s["certified_appendix_b"] * (1 + 1e-9)
    assert s["certified_interval"] <= 3 * s["exact_upper"], s  # the target ratio
    assert s["ordered"]


def test_the_attack_finds_the_sup_in_another_pooling_branch_where_single_flips_stall():
    """two-channel-padded, n = 4 of the verification experiment: f ends in a max-pool, and greedy vertex search
    from random vertices climbs the pooling branch that dominates first (0.5168, a local optimum for every
    single and pair flip), 18 flips away from the maximiser in another branch (0.5467). The attack's
    branch-forced searches (:func:`pipelines.verify.pool_branches`) reach it in one round."""
    from pipelines.experiments.verification import TARGETS, small_target

    t = small_target("two-channel-padded", 0)
    shape = TARGETS["two-channel-padded"][1]
    c, _ = construct(t, 4, "iclr", solver="exact", seed=0)
    r = verify(t, c.network, None, input_shape=shape, certificate=c.certify(), effective=c.effective(), exact=True,
               exact_time_limit=30, exact_total_time=60, attack_time=None, attack_rounds=1)
    s = r["summary"]
    assert s["exact_closed"] and s["ordered"], s
    assert s["adversarial_abs"] >= 0.95 * s["exact_upper"], s
    assert r["adversarial"]["branch_greedy"] == 1


def test_pool_branches_force_every_window_to_one_offset():
    net = nn.Sequential(nn.ReLU(), nn.MaxPool2d(2, stride=1, padding=1)).double()
    X = torch.rand(3, 2, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    from pipelines.verify import pool_branches

    br = pool_branches(net)
    assert len(br) == 4 and pool_branches(nn.Sequential(nn.ReLU())) == []
    with torch.no_grad():
        outs = torch.stack([b(X) for b in br])
        assert torch.equal(outs.amax(0), net(X))  # the max over the branches is the max-pool
        # offset (1, 1): the window's last entry, clamped into the input where the window overhangs the padding
        expect = X.clamp_min(0)[..., [0, 1, 2, 3, 3], :][..., [0, 1, 2, 3, 4, 4]]
        assert torch.equal(br[3](X), expect)


def test_interval_certificate_and_exact_sup_on_a_signed_structured_ticket():
    """Signed blocks (SignSplitConv2d: L+ on x+, L- on x-) on the domain [-1, 1]: the MILP splits g's inputs too."""
    t, c = built([nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Conv2d(2, 1, 2)], 6, construction="structured", domain="signed")
    lo, hi = c.input_domain()
    assert lo == -1.0
    g, shape = c.effective(), (1, 3, 3)
    assert any(op[2] is not None for op in network_ops(g))
    ex = exact_sup(t, g, shape, lo, hi, time_limit=30)
    X = lo + (hi - lo) * torch.rand(5000, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sampled = sup_on(t, c.network, torch.cat([X, lo + (hi - lo) * vertices(shape)]))
    assert ex["closed"] and sampled <= ex["upper"] and ex["lower"] >= sampled - 1e-12
    assert ex["upper"] <= certified_intervals(t, g, shape, lo, hi)["abs"] <= c.certify()["abs"] * (1 + 1e-9)


def test_the_attack_is_seeded_and_attains_what_it_reports():
    t, c = built([nn.Conv2d(2, 3, 3, stride=2), nn.ReLU(), nn.Conv2d(3, 2, 2)], 4, seed=2)
    f, g = t.eval(), c.effective()
    for p in list(f.parameters()) + list(g.parameters()):
        p.requires_grad_(False)
    a = adversarial(f, g, (2, 5, 5), seed=5, time_limit=None, max_rounds=1, steps=10, restarts=2)
    b = adversarial(f, g, (2, 5, 5), seed=5, time_limit=None, max_rounds=1, steps=10, restarts=2)
    assert a["abs"] == b["abs"] and torch.equal(a["X"], b["X"])
    X = a["X"].unsqueeze(0)
    assert X.min() >= 0 and X.max() <= 1
    assert sup_on(t, c.network, X) == pytest.approx(a["abs"], rel=1e-12)


# ------------------------------------------------------------------ refusals
def test_verify_refuses_a_certificate_below_an_attained_error():
    t, c = built([nn.Conv2d(1, 2, 3)], 4)
    with pytest.raises(RuntimeError, match="refusing to report"):
        verify(t, c.network, None, input_shape=(1, 5, 5), certificate={"abs": 1e-9}, attack_rounds=1)


def test_exact_needs_the_effective_network_and_handles_only_reproduced_layers():
    t, c = built([nn.Conv2d(1, 2, 3)], 4)
    with pytest.raises(ValueError, match="effective"):
        verify(t, c.network, None, input_shape=(1, 5, 5), exact=True, attack_rounds=1)
    with pytest.raises(ValueError, match="ceil_mode"):
        network_ops(nn.Sequential(nn.Conv2d(1, 1, 2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)))
    with pytest.raises(ValueError, match="AvgPool2d"):
        network_ops(nn.Sequential(nn.Conv2d(1, 1, 2), nn.AvgPool2d(2)))


def test_cli_verify_exact_reports_the_bound_pair_in_order(tmp_path, capsys, monkeypatch):
    from models.lenet5 import LeNet5
    from pipelines.cli import main

    monkeypatch.setenv("SLTH_CACHE_DIR", str(tmp_path / "cache"))
    target = tmp_path / "lenet5.pt"
    torch.save(LeNet5(seed=7).state_dict(), target)
    out = tmp_path / "pruned.pt"
    assert main(["prune", "--construction", "iclr", "--target", str(target), "--n", "2", "--solver", "exact",
                 "--n-jobs", "1", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    store = tmp_path / "milps.sqlite"
    args = ["verify", str(out), "--dataset", "none", "--restarts", "1", "--steps", "2", "--attack-rounds", "1",
            "--exact", "--exact-time-limit", "1", "--exact-total", "3", "--json", "--quiet", "--n-jobs", "2",
            "--store", str(store)]
    assert main(args) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["ordered"] and 0 < s["adversarial_abs"] <= s["exact_upper"] <= s["certified_abs"]
    assert s["exact_lower"] <= s["exact_upper"] and s["certified_interval"] <= s["certified_appendix_b"]
    from milp.store import ResultStore

    with ResultStore(store) as db:
        assert len(db) >= s["exact_milps"]  # every MILP that ran (--exact-total 3 may leave few) is kept for a rerun
    assert main(args) == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ordered"]


def test_cli_verify_store_needs_exact(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["verify", str(tmp_path / "x.pt"), "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--store" in err[0] and "--exact" in err[0]


# ------------------------------------------------------------------ interval certificate through Flatten / Linear
def conv_dense(seed, c1=2, hidden=4, out=3, side=4):
    torch.manual_seed(seed)
    t = nn.Sequential(nn.Conv2d(1, c1, 2), nn.ReLU(), nn.Flatten(), nn.Linear(c1 * (side - 1) ** 2, hidden), nn.ReLU(),
                      nn.Linear(hidden, out)).double()
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(0.6)
    return t


@pytest.mark.parametrize("seed,k", [(0, None), (1, 3), (2, 5)])
def test_interval_certificate_through_flatten_and_linear_is_above_the_attack_and_the_data(seed, k):
    """The rfss construction (conv part ICLR, dense blocks RFSS): the interval certificate now carries the whole
    network, and stays above what is attained."""
    t = conv_dense(seed)
    c, _ = construct(t, 6, "rfss", solver="exact", seed=seed, k=k)
    X = torch.rand(300, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    s = verify(t, c.network, X, certificate=c.certify(), effective=c.effective(), attack_time=None, attack_rounds=1,
               restarts=4, steps=20)["summary"]
    assert s["interval_unavailable"] == "" and np.isfinite(s["certified_interval"]), s
    assert s["empirical_abs"] <= s["adversarial_abs"] * (1 + 1e-12) <= s["certified_interval"], s
    assert s["certified_abs"] == min(s["certified_interval"], s["certified_appendix_b"]) and s["ordered"]


def test_interval_certificate_through_linear_bounds_the_vertex_sup_and_samples_of_a_tiny_pair():
    t = conv_dense(3, c1=2, hidden=3, out=2, side=3)  # inputs 1 x 3 x 3: all 512 vertices
    c, _ = construct(t, 4, "rfss", solver="exact", seed=3)
    g, shape = c.effective(), (1, 3, 3)
    assert [op[0] for op in network_ops(g, dense=True)] == ["conv", "relu", "flatten", "linear", "relu", "linear"]
    X = torch.rand(4000, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    brute = sup_on(t, c.network, torch.cat([vertices(shape), X]))
    cert = certified_intervals(t, g, shape)
    assert brute > 0 and brute <= cert["abs"] <= c.certify()["abs"] * (1 + 1e-9)
    assert cert["per_output"].shape == (2, 1, 1)
    with torch.no_grad():  # per output entry too
        per = (t(X) - c.network(X)).abs().amax(0)
    assert torch.all(per <= cert["per_output"].reshape(-1))


def test_interval_certificate_on_a_dense_only_target_and_its_refusals():
    """Linear -> Linear: the second one's inputs may be negative, so its block is signed (SignSplitLinear)."""
    torch.manual_seed(4)
    t = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    c, _ = construct(t, 6, "rfss", solver="exact", seed=4)
    assert [op[2] is not None for op in network_ops(c.effective(), dense=True) if op[0] == "linear"] == [False, True,
                                                                                                         False]
    cert = certified_intervals(t, c.effective(), (5,))
    X = torch.rand(3000, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert sup_on(t, c.network, X) <= cert["abs"] <= c.certify()["abs"] * (1 + 1e-9)
    with pytest.raises(ValueError, match="Flatten"):
        network_ops(nn.Sequential(nn.Conv2d(1, 1, 2), nn.Flatten(start_dim=2)), dense=True)
    with pytest.raises(ValueError, match="Linear is not handled"):  # exact_sup's ops: no dense layers
        network_ops(t)
    bad = nn.Sequential(nn.Conv2d(1, 1, 2), nn.Linear(2, 2)).double()  # a Linear on a 1 x 2 x 2 map, no Flatten
    with pytest.raises(ValueError, match="put an nn.Flatten"):
        certified_intervals(bad, bad, (1, 3, 3))
