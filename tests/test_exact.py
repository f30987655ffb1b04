import itertools

import numpy as np
import pytest

import milp
from milp.backends.exact import MAX_N_SCALAR


def brute_force(inst):
    best = np.inf
    for bits in itertools.product((0, 1), repeat=inst.n):
        if inst.cardinality is not None and sum(bits) != inst.cardinality:
            continue
        z = inst.target - np.asarray(bits) @ inst.candidates
        best = min(best, float(np.abs(z).max()))
    return best


def brute_force_fast(x, z, k=None):
    n = x.size
    bits = ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    sums = bits @ x
    err = np.abs(z - sums)
    if k is not None:
        err = np.where(bits.sum(1) == k, err, np.inf)
    return float(err.min())


@pytest.mark.parametrize("trial", range(40))
def test_exact_equals_brute_force_d1(trial):
    rng = np.random.default_rng(trial)
    n = int(rng.integers(1, 17))
    k = None if trial % 2 == 0 else int(rng.integers(0, n + 1))
    x = rng.uniform(-1, 1, n)
    z = float(rng.uniform(-1, 1) * (1 if trial % 3 else 4))  # sometimes out of reach
    inst = milp.Instance(x, z, k)
    sol = milp.solve(inst, "exact")
    assert sol.status == milp.Status.OPTIMAL
    assert inst.feasible(sol.mask)
    assert sol.error == inst.residual(sol.mask)
    assert sol.error == pytest.approx(brute_force_fast(x, z, k), abs=1e-13)


@pytest.mark.parametrize("k", [None, 3])
def test_exact_multidimensional_equals_brute_force(rng, k):
    inst = milp.Instance(rng.uniform(-1, 1, (9, 3)), rng.uniform(-0.5, 0.5, 3), k)
    sol = milp.solve(inst, "exact")
    assert sol.error == pytest.approx(brute_force(inst), abs=1e-13)


def test_exact_n30_is_tiny(rng):
    inst = milp.Instance(rng.uniform(-1, 1, 30), rng.uniform(-1, 1))
    sol = milp.solve(inst, "exact")
    assert sol.error < 1e-6  # Lueker: the optimum is exponentially small in n


def test_exact_refuses_beyond_its_n(rng):
    inst = milp.Instance(rng.uniform(-1, 1, MAX_N_SCALAR + 1), 0.1)
    with pytest.raises(milp.UnsupportedInstance, match=f"up to n = {MAX_N_SCALAR}"):
        milp.solve(inst, "exact")


def test_auto_uses_exact_when_it_fits(rng):
    sol = milp.solve(milp.Instance(rng.uniform(-1, 1, 20), 0.3), "auto")
    assert sol.solver == "auto:exact" and sol.status == milp.Status.OPTIMAL
