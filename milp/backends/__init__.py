"""Registry: a solver name on the command line -> its backend class. One file and one line per solver."""
from __future__ import annotations

from .auto import AutoBackend
from .base import Backend, SolveOptions, SolverNotAvailable, UnsupportedInstance
from .cbc import CbcBackend
from .cpsat import CpSatBackend
from .exact import ExactBackend
from .gurobi import GurobiBackend
from .heuristic import HeuristicBackend
from .highs import HighsBackend
from .scip import ScipBackend
from .tabu import TabuBackend

REGISTRY: dict[str, type[Backend]] = {
    cls.name: cls for cls in (AutoBackend, ExactBackend, HeuristicBackend, CbcBackend, CpSatBackend,
                              ScipBackend, HighsBackend, GurobiBackend, TabuBackend)
}
#: MILP backends (the ones that take the MILP encoding), in the order ``auto`` prefers them.
MILP_SOLVERS = ("highs", "cpsat", "scip", "cbc", "gurobi")


def available_solvers() -> list[str]:
    """Names of the solvers usable here, in registry order (``auto`` first)."""
    return [name for name, cls in REGISTRY.items() if cls.available()]


def get_backend(name: str) -> Backend:
    """The backend registered under ``name``; a clear error for unknown or uninstalled solvers."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise SolverNotAvailable(
            f"unknown solver {name!r}; choose one of: {', '.join(REGISTRY)}")
    cls = REGISTRY[name]
    if not cls.available():
        raise SolverNotAvailable(
            f"solver '{name}' needs the Python module(s) {', '.join(cls.REQUIRED_MODULES)}, which are not "
            f"installed; install them (e.g. pip install {' '.join(cls.REQUIRED_MODULES)}) or pick another "
            f"of: {', '.join(available_solvers())}")
    return cls()


__all__ = ["Backend", "SolveOptions", "SolverNotAvailable", "UnsupportedInstance", "REGISTRY",
           "MILP_SOLVERS", "available_solvers", "get_backend"]


def revision(name: str) -> str:
    """What store keys record of a solver's code: its class's ``store_revision()`` (its REVISION; for
    ``auto``, every other backend's). Part of every store key: do not change the format."""
    return REGISTRY[name].store_revision() if name in REGISTRY else name
