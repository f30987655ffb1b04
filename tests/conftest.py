import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_rss(rng, n, k=None, d=None):
    import milp

    if d is None:
        return milp.Instance(rng.uniform(-1, 1, n), rng.uniform(-1, 1), k)
    return milp.Instance(rng.uniform(-1, 1, (n, d)), rng.uniform(-0.5, 0.5, d), k)
