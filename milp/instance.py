"""One instance type for the three subset-sum families.

- RSS (Lueker 1998; ICLR 2022 Sec. 3 and Appendix C): scalars x_1..x_n, target z,
  minimise |z - sum_i a_i x_i| over a in {0,1}^n.
- RFSS ("On the sparsity of the SLTH", fixed-size subset sum): the same with sum_i a_i = k.
- MRSS (NeurIPS 2023, Theorem 5): vectors X_i in R^d, target z in R^d,
  minimise ||z - sum_i a_i X_i||_inf, optionally with sum_i a_i = k.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class InstanceError(ValueError):
    """Invalid instance data; the message names the field and the fix."""


@dataclass(frozen=True, eq=False)
class Instance:
    """A subset-sum instance.

    Args:
        candidates: shape (n,) for RSS/RFSS or (n, d) for MRSS; finite reals.
        target: scalar (or shape (1,)) when candidates is 1-D; shape (d,) when candidates is (n, d).
        cardinality: ``None`` (free subset) or k with 0 <= k <= n (RFSS / fixed-size MRSS).
    """

    candidates: np.ndarray
    target: np.ndarray
    cardinality: int | None = None

    def __init__(self, candidates, target, cardinality=None):
        X = np.array(candidates, dtype=np.float64, copy=True)
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise InstanceError(
                f"candidates must have shape (n,) or (n, d), got shape {np.shape(candidates)}")
        n, d = X.shape
        if n == 0 or d == 0:
            raise InstanceError(f"candidates is empty (shape {np.shape(candidates)}); give at least one candidate")
        if not np.isfinite(X).all():
            bad = int(np.flatnonzero(~np.isfinite(X).any(axis=1))[0])
            raise InstanceError(f"candidates contains NaN or inf (first at row {bad}); pass finite values")
        z = np.array(target, dtype=np.float64, copy=True).reshape(-1)
        if z.size != d:
            raise InstanceError(
                f"target has {z.size} entries but candidates have dimension d={d}; "
                f"target must be a scalar for candidates of shape (n,), or shape (d,) for shape (n, d)")
        if not np.isfinite(z).all():
            raise InstanceError("target contains NaN or inf; pass a finite target")
        if cardinality is not None:
            if isinstance(cardinality, bool) or not float(cardinality).is_integer():
                raise InstanceError(f"cardinality must be an integer or None, got {cardinality!r}")
            cardinality = int(cardinality)
            if not 0 <= cardinality <= n:
                raise InstanceError(
                    f"cardinality k={cardinality} is outside 0..n={n}; choose 0 <= k <= number of candidates")
        X.setflags(write=False)
        z.setflags(write=False)
        object.__setattr__(self, "candidates", X)
        object.__setattr__(self, "target", z)
        object.__setattr__(self, "cardinality", cardinality)

    # ------------------------------------------------------------------ shape
    @property
    def n(self) -> int:
        return self.candidates.shape[0]

    @property
    def d(self) -> int:
        return self.candidates.shape[1]

    @property
    def family(self) -> str:
        """``"rss"``, ``"rfss"`` or ``"mrss"``."""
        if self.d > 1:
            return "mrss"
        return "rss" if self.cardinality is None else "rfss"

    # ---------------------------------------------------------------- residual
    def residual(self, mask) -> float:
        """True residual ``||z - sum_i mask_i X_i||_inf`` in float64 for a 0/1 mask.

        Uses ``math.fsum`` per coordinate so the value does not depend on summation order.
        """
        a = np.asarray(mask)
        if a.shape != (self.n,):
            raise InstanceError(f"mask must have shape ({self.n},), got {a.shape}")
        if not np.isin(a, (0, 1)).all():
            raise InstanceError("mask must contain only 0/1 values")
        chosen = self.candidates[a.astype(bool)]
        return max(abs(math.fsum([self.target[j], *(-chosen[:, j])])) for j in range(self.d))

    def feasible(self, mask) -> bool:
        """Whether ``mask`` satisfies the cardinality row (always true without one)."""
        return self.cardinality is None or int(np.asarray(mask).sum()) == self.cardinality

    # -------------------------------------------------------------- identity
    def content_hash(self) -> str:
        """sha256 of the exact float64 bytes of candidates, target and cardinality."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.candidates).tobytes())
        h.update(np.ascontiguousarray(self.target).tobytes())
        h.update(repr((self.candidates.shape, self.cardinality)).encode())
        return h.hexdigest()

    def __eq__(self, other) -> bool:
        return (isinstance(other, Instance) and self.cardinality == other.cardinality
                and np.array_equal(self.candidates, other.candidates)
                and np.array_equal(self.target, other.target))

    def __hash__(self) -> int:
        return hash(self.content_hash())

    def __repr__(self) -> str:
        k = "" if self.cardinality is None else f", k={self.cardinality}"
        return f"Instance({self.family}, n={self.n}, d={self.d}{k})"

    # ------------------------------------------------------------------- I/O
    def to_dict(self) -> dict:
        return {"format": "slth-instance/1", "candidates": self.candidates.tolist(),
                "target": self.target.tolist(), "cardinality": self.cardinality}

    @classmethod
    def from_dict(cls, data: dict) -> "Instance":
        if not isinstance(data, dict) or data.get("format") != "slth-instance/1":
            raise InstanceError("not an slth instance: expected a JSON object with format 'slth-instance/1'")
        for key in ("candidates", "target"):
            if key not in data:
                raise InstanceError(f"instance file lacks the field '{key}'")
        return cls(data["candidates"], data["target"], data.get("cardinality"))

    def save(self, path) -> Path:
        """Save to ``.npz`` (exact bytes) or ``.json`` (repr-exact floats), chosen by suffix."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        if path.suffix == ".json":
            tmp.write_text(json.dumps(self.to_dict()))
        elif path.suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez(fh, candidates=self.candidates, target=self.target,
                         cardinality=np.int64(-1 if self.cardinality is None else self.cardinality),
                         format=np.array("slth-instance/1"))
        else:
            raise InstanceError(f"instance file name must end in .npz or .json, got '{path.name}'")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path) -> "Instance":
        """Load an instance saved by :meth:`save`. Files are data: no pickle is ever loaded."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"instance file not found: {path}")
        try:
            if path.suffix == ".json":
                return cls.from_dict(json.loads(path.read_text()))
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as f:
                    if "candidates" not in f or "target" not in f:
                        raise InstanceError(f"{path}: npz lacks 'candidates' or 'target' arrays")
                    k = int(f["cardinality"]) if "cardinality" in f else -1
                    return cls(f["candidates"], f["target"], None if k < 0 else k)
        except InstanceError:
            raise
        except (ValueError, OSError, KeyError) as exc:
            raise InstanceError(f"{path}: cannot read instance ({exc})") from exc
        raise InstanceError(f"instance file name must end in .npz or .json, got '{path.name}'")
