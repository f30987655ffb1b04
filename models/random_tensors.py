"""The one place random weights come from: uniform, normal and NSN tensors, seeded.

- ``uniform``: entries Unif[-1, 1] (ICLR 2022, Section 4.3: "each entry ... uniformly from [-1, 1]").
- ``normal``: entries N(0, 1) (NeurIPS 2023, Theorem 3: U, V with standard normal entries).
- ``nsn``: normally-scaled normal vectors (NeurIPS 2023, Definition 4): row i is Z_i * (Z_i1, ..., Z_id)
  with Z_i, Z_ij i.i.d. N(0, 1) -- the distribution of U[:, k] * V[t0, k] in the proof of Lemma 12.

Every function takes a :class:`numpy.random.Generator` (seeded by the caller, e.g.
``np.random.default_rng([seed, block, tag])``) and returns float64 numpy arrays, so the same seed gives
the same tensor on every machine. numpy only: ``milp``-side benchmarks and ``models`` share it.
"""
from __future__ import annotations

import numpy as np

DISTRIBUTIONS = ("uniform", "normal")


class DistributionError(ValueError):
    """Unknown distribution name; the message lists the choices."""


def random_tensor(shape, rng: np.random.Generator, dist: str = "uniform") -> np.ndarray:
    """A float64 tensor of ``shape`` with i.i.d. entries of ``dist`` (``uniform`` = Unif[-1, 1], ``normal`` = N(0, 1))."""
    if dist == "uniform":
        return rng.uniform(-1.0, 1.0, size=tuple(shape))
    if dist == "normal":
        return rng.standard_normal(size=tuple(shape))
    raise DistributionError(f"dist: unknown distribution {dist!r}; choose one of {', '.join(DISTRIBUTIONS)}")


def nsn(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """n NSN vectors of dimension d (NeurIPS 2023, Definition 4): X[i, j] = Z_i * Z_ij, Z standard normal.

    Draw order (Z_i first, then the n x d matrix) is fixed: committed benchmark instances depend on it."""
    return rng.standard_normal((n, 1)) * rng.standard_normal((n, d))
