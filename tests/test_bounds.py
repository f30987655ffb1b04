"""milp.bounds: the LP-duality lower bound never exceeds the exact optimum (free and fixed-size subsets),
any weights give a valid bound, and the counting estimates behave as documented."""
import numpy as np
import pytest

import milp
from milp.bounds import box_floor, density_floor, dual_bound, lp_lower_bound, subset_sum_range


def tiny(seed):
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(2, 13)), int(rng.integers(1, 30))
    X = rng.normal(size=(n, d)) * np.abs(rng.normal(size=(n, 1)))
    z = rng.uniform(-1, 1, d) * rng.uniform(0.1, 3)
    k = None if seed % 3 else int(rng.integers(0, n + 1))
    return milp.Instance(X, z, cardinality=k), rng


@pytest.mark.parametrize("seed", range(24))
def test_lower_bounds_never_exceed_the_exact_optimum(seed):
    inst, rng = tiny(seed)
    opt = milp.solve(inst, solver="exact").error
    lb = lp_lower_bound(inst)
    assert 0.0 <= lb <= opt * (1 + 1e-9) + 1e-12
    for _ in range(5):  # any weights give a valid bound
        assert dual_bound(inst, rng.normal(size=inst.d)) <= opt * (1 + 1e-9) + 1e-12


def test_the_bound_proves_something_below_the_dimension_and_nothing_far_above_it():
    rng = np.random.default_rng(7)
    X, z = rng.normal(size=(6, 40)), rng.uniform(-1, 1, 40)
    inst = milp.Instance(X, z)
    lb, opt = lp_lower_bound(inst), milp.solve(inst, solver="exact").error
    assert 0.5 * opt < lb <= opt  # n << d: the LP cannot fit z, the bound is close to the optimum
    wide = milp.Instance(rng.normal(size=(200, 4)), rng.uniform(-0.5, 0.5, 4))
    assert lp_lower_bound(wide) == pytest.approx(0.0, abs=1e-9)  # n >> d: the LP hits z exactly


def test_counting_estimates():
    rng = np.random.default_rng(0)
    X, z = rng.normal(size=(40, 5)), rng.normal(size=5) * 0.1
    assert subset_sum_range(X) == pytest.approx(np.abs(X).sum(axis=0).max())
    assert box_floor(X) == pytest.approx(subset_sum_range(X) * 2 ** (-40 / 5) / 2)
    more = np.vstack([X, rng.normal(size=(40, 5))])
    assert density_floor(more, z) < density_floor(X, z)  # more candidates, smaller estimate
