"""Subset-sum enumeration helpers shared by the exact solver and the heuristic (numpy only)."""
from __future__ import annotations

import numpy as np


def subset_sums(x: np.ndarray) -> np.ndarray:
    """All 2^m subset sums of ``x`` (shape (m,) or (m, d)), indexed by bitmask.

    Entry ``b`` is ``sum_{j : bit j of b is set} x[j]``: built by doubling, so the index of a sum
    *is* the subset that produced it.
    """
    x = np.asarray(x, dtype=np.float64)
    shape = (1,) + x.shape[1:]
    sums = np.zeros(shape)
    for xi in x:
        sums = np.concatenate([sums, sums + xi])
    return sums


def popcounts(m: int) -> np.ndarray:
    """Number of set bits of every integer 0 .. 2^m - 1."""
    counts = np.zeros(1, dtype=np.int8)
    for _ in range(m):
        counts = np.concatenate([counts, counts + 1])
    return counts


def bits_to_mask(bits: int, m: int) -> np.ndarray:
    """The 0/1 vector of length ``m`` of an integer bitmask."""
    return ((int(bits) >> np.arange(m)) & 1).astype(np.uint8)
