import json

import numpy as np
import pytest

import milp
from milp import Instance, InstanceError


def test_shapes_and_family():
    assert Instance([0.1, 0.2], 0.3).family == "rss"
    assert Instance([0.1, 0.2], 0.3, cardinality=1).family == "rfss"
    inst = Instance(np.ones((4, 3)), np.zeros(3))
    assert (inst.n, inst.d, inst.family) == (4, 3, "mrss")


@pytest.mark.parametrize("cands,target,k,field", [
    ([0.1, np.nan], 0.2, None, "candidates"),
    ([0.1, np.inf], 0.2, None, "candidates"),
    ([0.1, 0.2], np.nan, None, "target"),
    ([], 0.2, None, "empty"),
    (np.ones((3, 2)), 0.5, None, "target has 1 entries"),
    ([0.1, 0.2], [0.1, 0.2], None, "target has 2 entries"),
    (np.ones((2, 2, 2)), 0.0, None, "candidates must have shape"),
    ([0.1, 0.2], 0.2, 3, "cardinality k=3"),
    ([0.1, 0.2], 0.2, -1, "cardinality k=-1"),
    ([0.1, 0.2], 0.2, 1.5, "cardinality must be an integer"),
])
def test_bad_input_names_the_field(cands, target, k, field):
    with pytest.raises(InstanceError, match=field):
        Instance(cands, target, k)


def test_residual_is_exact_float64():
    inst = Instance([1e16, 1.0, -1e16], 1.0)
    assert inst.residual([1, 0, 1]) == 1.0  # naive left-to-right summation would give 2 or 0
    with pytest.raises(InstanceError):
        inst.residual([1, 0])
    with pytest.raises(InstanceError):
        inst.residual([0.5, 0, 1])


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_load_roundtrip_is_bit_exact(tmp_path, rng, suffix):
    inst = Instance(rng.uniform(-1, 1, (7, 3)), rng.uniform(-1, 1, 3), cardinality=2)
    back = Instance.load(inst.save(tmp_path / f"i{suffix}"))
    assert back == inst and back.content_hash() == inst.content_hash()
    scalar = Instance(rng.uniform(-1, 1, 5), 0.25)
    assert Instance.load(scalar.save(tmp_path / f"s{suffix}")) == scalar


def test_load_refuses_garbage_and_pickles(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"candidates": [1]}))
    with pytest.raises(InstanceError, match="slth-instance"):
        Instance.load(bad)
    pickled = tmp_path / "p.npz"
    np.savez(pickled, candidates=np.array([object()], dtype=object), target=np.array(0.0))
    with pytest.raises(InstanceError):
        Instance.load(pickled)
    with pytest.raises(FileNotFoundError):
        Instance.load(tmp_path / "missing.npz")
    with pytest.raises(InstanceError, match=".npz or .json"):
        Instance([1.0], 0.0).save(tmp_path / "x.txt")


def test_solve_argument_errors():
    inst = Instance([0.5, 0.25], 0.3)
    with pytest.raises(ValueError, match="time_limit"):
        milp.solve(inst, "exact", time_limit=-1)
    with pytest.raises(ValueError, match="time_limit"):
        milp.solve(inst, "exact", time_limit=float("nan"))
    with pytest.raises(ValueError, match="seed"):
        milp.solve(inst, "exact", seed=-3)
    with pytest.raises(milp.SolverNotAvailable, match="unknown solver 'nope'"):
        milp.solve(inst, "nope")
    with pytest.raises(TypeError, match="milp.Instance"):
        milp.solve([0.5, 0.25], "exact")


def test_uninstalled_solver_is_named(monkeypatch):
    from milp.backends import REGISTRY

    monkeypatch.setattr(REGISTRY["highs"], "REQUIRED_MODULES", ("surely_not_a_module_xyz",))
    with pytest.raises(milp.SolverNotAvailable, match="surely_not_a_module_xyz"):
        milp.solve(Instance([0.5], 0.5), "highs")
