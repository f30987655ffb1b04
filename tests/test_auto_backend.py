"""``auto`` is an ordinary registered backend; its store keys did not change when it became one."""
import numpy as np
import pytest

import milp
from milp.backends import MILP_SOLVERS, REGISTRY, SolveOptions, get_backend, revision
from milp.backends.auto import AutoBackend
from milp.batch import MAX_AUTO_CHUNK_FAST, MAX_AUTO_CHUNK_SLOW, auto_chunk_size
from milp.store import make_request, request_key

#: ``revision("auto")`` before auto was registered (printed from the old code): part of the keys of
#: existing stores, so it must never change (bumping another backend's REVISION changes it on purpose).
AUTO_REVISION = "auto:cbc1,cpsat2,exact1,gurobi1,heuristic1,highs1,scip1"
#: request_key(make_request("0" * 64, "auto", SolveOptions(time_limit=1.0, seed=3).key())) from the old code
AUTO_KEY = "84a64ca551fe3739b7384ea948ecf27c5d8dca17bac9a8dc4367d6c45812ab08"


def test_auto_is_registered_like_any_backend():
    assert REGISTRY["auto"] is AutoBackend
    assert isinstance(get_backend("auto"), AutoBackend)
    names = milp.available_solvers()
    assert names[0] == "auto"
    assert names == [n for n, cls in REGISTRY.items() if cls.available()]
    assert names.count("auto") == 1


def test_auto_store_keys_are_unchanged(monkeypatch):
    # adding a member to the portfolio (tabu, issue 13) changes auto's results, hence its keys, on
    # purpose; the format is unchanged: with the old members the old string and key come back
    assert revision("auto") == AUTO_REVISION[:-len("scip1")] + "scip1,tabu1"
    monkeypatch.delitem(REGISTRY, "tabu")
    assert revision("auto") == AUTO_REVISION
    request = make_request("0" * 64, "auto", SolveOptions(time_limit=1.0, seed=3).key())
    assert request["revision"] == AUTO_REVISION
    if milp.__version__ == "0.1.0":  # the version is part of every key
        assert request_key(request) == AUTO_KEY
    for name in ("exact", "heuristic", "cbc", "cpsat", "scip", "highs", "gurobi"):
        assert revision(name) == f"{name}{REGISTRY[name].REVISION}"


def test_auto_is_exact_where_it_fits(rng):
    inst = milp.Instance(rng.uniform(-1, 1, 16), 0.3)
    assert AutoBackend().accepts(inst) == (True, "")
    sol = milp.solve(inst, "auto")
    assert sol.solver == "auto:exact" and sol.status == milp.Status.OPTIMAL
    ref = milp.solve(inst, "exact")
    assert sol.error == ref.error and sol.seconds > 0
    # auto ignores warm starts, as before it was a backend (no check, no heuristic run)
    assert milp.solve(inst, "auto", warm_start=np.ones(3)).solver == "auto:exact"


def test_auto_runs_the_milp_portfolio_beyond_exact():
    milps = [n for n in MILP_SOLVERS if REGISTRY[n].available()]
    if not milps:
        pytest.skip("no MILP backend installed")
    rng = np.random.default_rng(4)
    X = np.round(rng.uniform(-1, 1, (24, 12)), 2)  # MRSS with n = 24 > exact's limit, n <= 2 d: MILP
    inst = milp.Instance(X, X[rng.random(24) < 0.5].sum(axis=0))  # a zero residual exists: quick proof
    assert AutoBackend().accepts(inst) == (True, "") and not REGISTRY["exact"]().accepts(inst)[0]
    sol = milp.solve(inst, "auto", time_limit=0.2)
    assert sol.solver == f"auto:{milps[0]}"
    assert sol.found and sol.error == inst.residual(sol.mask)


def test_chunk_sizes_follow_is_fast(rng):
    small = [milp.Instance(rng.uniform(-1, 1, 12), 0.1)]
    big = [milp.Instance(rng.uniform(-1, 1, (22, 5)), rng.uniform(-0.5, 0.5, 5))]  # 2^22 * 5 > auto's budget
    assert AutoBackend().is_fast(small[0]) and not AutoBackend().is_fast(big[0])
    for solver, insts, cap in [("auto", small, MAX_AUTO_CHUNK_FAST), ("auto", small + big, MAX_AUTO_CHUNK_SLOW),
                               ("auto", [], MAX_AUTO_CHUNK_FAST), ("exact", big, MAX_AUTO_CHUNK_FAST),
                               ("heuristic", big, MAX_AUTO_CHUNK_FAST), ("highs", small, MAX_AUTO_CHUNK_SLOW),
                               ("cpsat", [], MAX_AUTO_CHUNK_SLOW), ("nope", small, MAX_AUTO_CHUNK_SLOW)]:
        assert auto_chunk_size(10 ** 5, 2, solver, insts) == cap, solver


def test_auto_sends_free_mrss_with_many_candidates_to_tabu():
    from milp.backends.auto import TABU_DIM_FACTOR, auto_choice

    if not REGISTRY["tabu"].available():
        pytest.skip("numba not installed")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((200, 5))
    free, fixed = milp.Instance(X, rng.uniform(-0.5, 0.5, 5)), milp.Instance(X, np.zeros(5), cardinality=10)
    assert 200 > TABU_DIM_FACTOR * 5 and auto_choice(free) == "tabu" and auto_choice(fixed) == "portfolio"
    from milp.backends.tabu import warm_up

    warm_up()  # numba's compilation / cache load counts against the limit: done before timing
    sol = milp.solve(free, "auto", time_limit=0.5)
    assert sol.solver == "auto:tabu" and sol.found and sol.error == free.residual(sol.mask)
    assert sol.error <= milp.solve(free, "heuristic", time_limit=0.5).error * 1.5
