"""slth-milp's solver core: subset-sum instances (RSS, RFSS, MRSS), one MILP encoding, real solver
backends, an exact reference and a batch engine. Imports numpy and solvers, never torch."""
from .api import solve
from .batch import load_instances, solve_many
from .backends import SolverNotAvailable, UnsupportedInstance, available_solvers
from .encoding import Encoding
from .instance import Instance, InstanceError
from .solution import Solution, Status
from .store import SolutionStore, StoreError

__version__ = "0.1.0"

__all__ = ["Instance", "InstanceError", "Solution", "Status", "Encoding", "solve", "available_solvers",
           "SolverNotAvailable", "UnsupportedInstance", "solve_many", "load_instances", "SolutionStore", "StoreError",
           "__version__"]
