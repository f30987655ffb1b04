"""The one MILP encoding handed to every MILP backend (ICLR 2022 Sec. 3; NeurIPS 2023 Thm. 5).

Variables: binary a_1..a_n, continuous t >= 0. Objective: minimise t. Rows, for every coordinate j:

    up_j:  sum_i X_ij a_i - t <= z_j          (i.e.  z_j - sum_i a_i X_ij >= -t)
    lo_j:  sum_i X_ij a_i + t >= z_j          (i.e.  z_j - sum_i a_i X_ij <=  t)
    card:  sum_i a_i = k                      (only with a cardinality)

so t >= ||z - sum_i a_i X_i||_inf. ``scale`` multiplies X, z and hence t, to express residuals in
units of the precision wanted (solver tolerances are absolute); objectives are divided back by it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .instance import Instance


@dataclass(frozen=True)
class Encoding:
    instance: Instance
    scale: float = 1.0

    @property
    def X(self) -> np.ndarray:
        return self.instance.candidates * self.scale

    @property
    def z(self) -> np.ndarray:
        return self.instance.target * self.scale

    @property
    def t_upper(self) -> float:
        """A valid upper bound on t at the optimum (scaled units): the empty set's residual when it
        is feasible, else the largest residual any subset can have."""
        inst = self.instance
        if inst.cardinality in (None, 0):
            return float(np.abs(self.z).max())
        return float((np.abs(self.X).sum(axis=0) + np.abs(self.z)).max())

    def rows(self):
        """Yield (name, coefficients over a (length n), coefficient of t, sense, rhs); sense in
        {'L', 'G', 'E'}."""
        X, z = self.X, self.z
        for j in range(self.instance.d):
            yield f"up_{j}", X[:, j], -1.0, "L", float(z[j])
            yield f"lo_{j}", X[:, j], 1.0, "G", float(z[j])
        if self.instance.cardinality is not None:
            yield "card", np.ones(self.instance.n), 0.0, "E", float(self.instance.cardinality)

    # --------------------------------------------------------------- export
    def write(self, path) -> Path:
        """Write the model as free MPS (``.mps``) or CPLEX LP (``.lp``) chosen by suffix."""
        path = Path(path)
        if path.suffix.lower() == ".mps":
            path.write_text(self.to_mps())
        elif path.suffix.lower() == ".lp":
            path.write_text(self.to_lp())
        else:
            raise ValueError(f"model file name must end in .mps or .lp, got '{path.name}'")
        return path

    def to_mps(self) -> str:
        n = self.instance.n
        rows = list(self.rows())
        out = ["NAME          SLTH_SUBSET_SUM", "ROWS", " N  obj"]
        out += [f" {sense}  {name}" for name, _, _, sense, _ in rows]
        out.append("COLUMNS")
        out.append("    MARKER                 'MARKER'                 'INTORG'")
        for i in range(n):
            for name, coefs, _, _, _ in rows:
                if coefs[i] != 0.0:
                    out.append(f"    a_{i}  {name}  {float(coefs[i])!r}")
        out.append("    MARKER                 'MARKER'                 'INTEND'")
        out.append("    t  obj  1.0")
        for name, _, ct, _, _ in rows:
            if ct != 0.0:
                out.append(f"    t  {name}  {float(ct)!r}")
        out.append("RHS")
        out += [f"    rhs  {name}  {float(rhs)!r}" for name, _, _, _, rhs in rows if rhs != 0.0]
        out.append("BOUNDS")
        out += [f" BV bnd  a_{i}" for i in range(n)]
        out.append(f" UP bnd  t  {float(self.t_upper)!r}")
        out.append("ENDATA")
        return "\n".join(out) + "\n"

    def to_lp(self) -> str:
        n = self.instance.n
        ops = {"L": "<=", "G": ">=", "E": "="}
        out = ["\\ slth-milp subset-sum model", "Minimize", " obj: t", "Subject To"]
        for name, coefs, ct, sense, rhs in self.rows():
            terms = " ".join(f"{c:+.17g} a_{i}" for i, c in enumerate(coefs) if c != 0.0)
            if ct:
                terms += f" {ct:+.17g} t"
            out.append(f" {name}: {terms} {ops[sense]} {float(rhs)!r}")
        out += ["Bounds", f" 0 <= t <= {float(self.t_upper)!r}", "Binaries", " " + " ".join(f"a_{i}" for i in range(n)), "End"]
        return "\n".join(out) + "\n"
