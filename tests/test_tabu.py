"""``tabu`` (issue 13): weighted-least-squares tabu search for MRSS; honest, seeded, time-limited."""
import time

import numpy as np
import pytest

import milp
from milp.backends import REGISTRY, SolveOptions, get_backend

pytestmark = pytest.mark.skipif(not REGISTRY["tabu"].available(), reason="numba not installed")


@pytest.fixture(scope="module", autouse=True)
def compiled():
    from milp.backends.tabu import warm_up

    warm_up()


def _nsn(rng, n, d):
    return rng.standard_normal((n, 1)) * rng.standard_normal((n, d))


@pytest.mark.parametrize("k", [None, 3])
def test_tiny_instances_against_exact_enumeration(k):
    tabu, exact = get_backend("tabu"), get_backend("exact")
    hits = 0
    for s in range(12):
        rng = np.random.default_rng(s)
        inst = milp.Instance(_nsn(rng, 12, 3), rng.uniform(-0.5, 0.5, 3), cardinality=k)
        sol = tabu.solve(inst, SolveOptions(seed=s, params={"moves": 3000}))
        opt = exact.solve(inst)
        assert sol.error == inst.residual(sol.mask) and inst.feasible(sol.mask)
        assert sol.error >= opt.error - 1e-12 and sol.status != milp.Status.OPTIMAL
        hits += sol.error <= opt.error * (1 + 1e-9)
    assert hits >= 9  # 3000 moves on 2^12 masks: the optimum is found almost always


def test_seeded_and_reproducible_with_a_move_budget():
    rng = np.random.default_rng(1)
    inst = milp.Instance(_nsn(rng, 300, 8), rng.uniform(-0.5, 0.5, 8))
    a, b, c = (get_backend("tabu").solve(inst, SolveOptions(seed=s, params={"moves": 4000})) for s in (3, 3, 4))
    assert np.array_equal(a.mask, b.mask) and a.error == b.error
    assert a.error == inst.residual(a.mask) and c.error == inst.residual(c.mask)


def test_beats_the_descent_of_heuristic_on_vectors():
    """The reason it exists: on NSN MRSS (dim 25, n = 400) tabu's residual is below heuristic's (measured:
    0.17 in 20000 moves, 0.06 s, against 0.33 in 0.7 s)."""
    rng = np.random.default_rng(2)
    inst = milp.Instance(_nsn(rng, 400, 25), rng.uniform(-0.5, 0.5, 25))
    t = get_backend("tabu").solve(inst, SolveOptions(seed=0, params={"moves": 20000}))
    h = get_backend("heuristic").solve(inst, SolveOptions(seed=0))
    assert t.error < h.error


def test_warm_start_is_never_lost_and_cardinality_kept():
    rng = np.random.default_rng(3)
    inst = milp.Instance(_nsn(rng, 200, 6), rng.uniform(-0.5, 0.5, 6), cardinality=14)
    warm = get_backend("heuristic").solve(inst, SolveOptions(seed=0)).mask
    sol = get_backend("tabu").solve(inst, SolveOptions(seed=0, warm_start=warm, params={"moves": 500}))
    assert sol.mask.sum() == 14 and sol.error <= inst.residual(warm)


def test_time_limit_is_a_limit_with_and_without_the_gram_matrix(monkeypatch):
    from milp.backends import tabu

    rng = np.random.default_rng(4)
    for n in (1500, 5000):  # 5000 > GRAM_MAX_N: O(n d) moves without the Gram matrix
        inst = milp.Instance(_nsn(rng, n, 25), rng.uniform(-0.5, 0.5, 25))
        t = time.perf_counter()
        sol = get_backend("tabu").solve(inst, SolveOptions(time_limit=0.4, seed=0))
        assert time.perf_counter() - t < 0.4 + 0.25
        assert sol.found and sol.error == inst.residual(sol.mask) and sol.status == milp.Status.TIME_LIMIT
    monkeypatch.setattr(tabu, "GRAM_MAX_N", 0)
    inst = milp.Instance(_nsn(rng, 300, 6), rng.uniform(-0.5, 0.5, 6))
    sol = get_backend("tabu").solve(inst, SolveOptions(seed=0, params={"moves": 3000}))
    assert sol.error == inst.residual(sol.mask) and sol.error < get_backend("heuristic").solve(inst).error * 1.5


def test_refuses_fixed_cardinality_beyond_the_gram_matrix():
    from milp.backends.tabu import GRAM_MAX_N

    inst = milp.Instance(np.ones((GRAM_MAX_N + 1, 2)), np.zeros(2), cardinality=2)
    ok, why = get_backend("tabu").accepts(inst)
    assert not ok and "Gram" in why


def test_threads_run_independent_searches_and_keep_the_best():
    rng = np.random.default_rng(6)
    inst = milp.Instance(_nsn(rng, 400, 12), rng.uniform(-0.5, 0.5, 12))
    one = get_backend("tabu").solve(inst, SolveOptions(seed=2, params={"moves": 5000}))
    two = get_backend("tabu").solve(inst, SolveOptions(seed=2, threads=2, params={"moves": 5000}))
    again = get_backend("tabu").solve(inst, SolveOptions(seed=2, threads=2, params={"moves": 5000}))
    assert two.error <= one.error and two.error == inst.residual(two.mask)  # the first search is the 1-thread one
    assert np.array_equal(two.mask, again.mask)  # seeded per thread: reproducible
