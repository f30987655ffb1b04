"""Malformed instance files and values: one validation path, one-line InstanceError naming file and field."""
import io
import json
import zipfile

import numpy as np
import pytest

from milp import Instance, InstanceError
from milp.instance import MAX_ENTRIES, validate


def _error(path) -> str:
    with pytest.raises(InstanceError) as info:
        Instance.load(path)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg


def _npz(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def _json(path, **fields):
    path.write_text(json.dumps({"format": "slth-instance/1", **fields}))
    return path


# ------------------------------------------------------------------------- damaged npz files
@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_npz_is_one_line_naming_the_file(tmp_path, keep):
    raw = Instance(np.arange(50.0), 3.0, 4).save(tmp_path / "ok.npz").read_bytes()
    bad = tmp_path / "cut.npz"
    bad.write_bytes(raw[:int(len(raw) * keep)])
    msg = _error(bad)
    assert "file: not a valid .npz archive" in msg and "truncated or corrupt" in msg


def test_damaged_member_names_the_field(tmp_path):
    raw = bytearray(Instance(np.arange(50.0), 3.0).save(tmp_path / "ok.npz").read_bytes())
    start = raw.index(b"candidates.npy") + len("candidates.npy") + 200  # inside the candidates data
    raw[start:start + 8] = b"\xff" * 8
    bad = tmp_path / "crc.npz"
    bad.write_bytes(bytes(raw))
    msg = _error(bad)
    assert msg.startswith(f"{bad}: candidates: cannot be read (BadZipFile")


def test_pickled_object_arrays_are_refused(tmp_path):
    path = _npz(tmp_path / "p.npz", candidates=np.array([object(), 1.0], dtype=object), target=np.array(0.0))
    assert "candidates: holds pickled Python objects" in _error(path)


def test_declared_sizes_are_checked_before_allocating(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10 ** 12, 3)})
    huge = tmp_path / "huge.npz"
    with zipfile.ZipFile(huge, "w") as zf:
        zf.writestr("candidates.npy", header.getvalue() + b"\0" * 64)
        zf.writestr("target.npy", b"")
    assert f"candidates: declares shape (1000000000000, 3) (3000000000000 entries), more than the {MAX_ENTRIES}" \
        in _error(huge)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (1000,)})
    short = tmp_path / "short.npz"
    with zipfile.ZipFile(short, "w") as zf:
        zf.writestr("candidates.npy", header.getvalue() + b"\0" * 64)
    assert "candidates: declares shape (1000,) of float64 (8000 bytes) but its archive member holds" in _error(short)


def test_missing_arrays_and_foreign_format(tmp_path):
    assert "target: missing from the .npz" in _error(_npz(tmp_path / "a.npz", candidates=np.ones(3)))
    path = _npz(tmp_path / "b.npz", candidates=np.ones(3), target=np.array(1.0), format=np.array("other/2"))
    assert "format: 'other/2', expected 'slth-instance/1'" in _error(path)
    path = _npz(tmp_path / "c.npz", candidates=np.ones(3), target=np.array(1.0), cardinality=np.array([1, 2]))
    assert "cardinality: must be a single integer (shape ()), got shape (2,)" in _error(path)


# ------------------------------------------------------------------------ one rule, three formats
def _as_npz(tmp_path, cands, target, k):
    arrays = {"candidates": np.asarray(cands), "target": np.asarray(target)}
    if k is not None:
        arrays["cardinality"] = np.asarray(k)
    return Instance.load(_npz(tmp_path / "i.npz", **arrays))


def _as_json(tmp_path, cands, target, k):
    return Instance.load(_json(tmp_path / "i.json", candidates=cands, target=target, cardinality=k))


def _in_memory(tmp_path, cands, target, k):
    return Instance(cands, target, k)


FORMATS = {"npz": _as_npz, "json": _as_json, "memory": _in_memory}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("k,expected", [
    (2.5, "cardinality: the cardinality must be an integer or None, got"),
    (-0.5, "cardinality: the cardinality must be an integer or None, got"),
    (2.0, "cardinality: the cardinality must be an integer or None, got"),
    (True, "cardinality: the cardinality must be an integer or None, got"),
    (-5, "cardinality: the cardinality k=-5 is outside 0..n=3"),
    (4, "cardinality: the cardinality k=4 is outside 0..n=3"),
])
def test_cardinality_rule_is_the_same_everywhere(tmp_path, fmt, k, expected):
    with pytest.raises(InstanceError) as info:
        FORMATS[fmt](tmp_path, [0.5, 0.25, 0.125], 0.3, k)
    assert expected in str(info.value)
    if fmt != "memory":
        assert str(info.value).startswith(str(tmp_path / f"i.{fmt}") + ": cardinality: ")


@pytest.mark.parametrize("fmt", ["json", "memory"])
def test_huge_integer_cardinality(tmp_path, fmt):
    with pytest.raises(InstanceError, match="cardinality: the cardinality k=1000000000.*is outside 0..n=3"):
        FORMATS[fmt](tmp_path, [0.5, 0.25, 0.125], 0.3, 10 ** 400)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("k", [0, 2, 3, np.int32(2), np.uint8(3), None])
def test_valid_cardinalities_agree(tmp_path, fmt, k):
    inst = FORMATS[fmt](tmp_path, [0.5, 0.25, 0.125], 0.3, None if k is None else (int(k) if fmt == "json" else k))
    assert inst.cardinality == (None if k is None else int(k)) and type(inst.cardinality) in (int, type(None))
    assert inst == Instance([0.5, 0.25, 0.125], 0.3, None if k is None else int(k))


def test_npz_minus_one_means_no_cardinality_as_written_by_save(tmp_path):
    path = _npz(tmp_path / "i.npz", candidates=np.ones(3), target=np.array(1.0), cardinality=np.int64(-1))
    assert Instance.load(path).cardinality is None


@pytest.mark.parametrize("fmt", ["npz", "memory"])
def test_complex_values_are_refused_not_truncated(tmp_path, fmt):
    with pytest.raises(InstanceError, match="candidates: complex values .* the imaginary part would be dropped"):
        FORMATS[fmt](tmp_path, np.array([0.5 + 1j, 0.25, 0.125]), 0.3, None)
    with pytest.raises(InstanceError, match="target: complex values"):
        FORMATS[fmt](tmp_path, [0.5, 0.25, 0.125], np.complex128(0.3 + 0j), None)
    with pytest.raises(InstanceError, match="candidates: entry 1 is complex"):
        Instance(np.array([0.5, 1j], dtype=object), 0.0)


@pytest.mark.parametrize("cands,target,expected", [
    (["0.5", 0.25], 0.3, "candidates: holds text"),
    ([None, 0.25], 0.3, "candidates: entry 0 is NoneType None, not a real number"),
    ([[0.5, 0.1], [0.25]], 0.3, "candidates: not a rectangular array of real numbers"),
    ({"a": 1}, 0.3, "candidates: got dict"),
    ([True, False], 0.3, "candidates: holds booleans"),
    ([0.5, 0.25], "0.3", "target: got str"),
    ([0.5, 0.25], [[0.3]], "target: the target must be a scalar or of shape (d,), got shape (1, 1)"),
    ([0.5, float("inf")], 0.3, "candidates: contains NaN or inf (first at row 1)"),
    ([0.5, 0.25], float("nan"), "target: contains NaN or inf"),
])
def test_wrong_types_in_json_and_memory(tmp_path, cands, target, expected):
    with pytest.raises(InstanceError) as info:
        Instance(cands, target)
    assert expected in str(info.value)
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"format": "slth-instance/1", "candidates": cands, "target": target}))
    assert f"{path}: {expected}" in _error(path)


# ------------------------------------------------------------------------------ hostile JSON
def test_huge_integers_are_one_line_errors(tmp_path):
    path = tmp_path / "big.json"
    path.write_text('{"format": "slth-instance/1", "candidates": [1, %s], "target": 0}' % ("9" * 400))
    assert "candidates: entry 1 (9999" in _error(path) and "too large for float64" in _error(path)
    path.write_text('{"format": "slth-instance/1", "candidates": [1, 2], "target": -%s}' % ("9" * 400))
    assert "target: value (-9999" in _error(path)
    path.write_text('{"format": "slth-instance/1", "candidates": [1, 2], "target": %s}' % ("9" * 5000))
    assert f"{path}: file: holds an integer literal with too many digits" in _error(path)
    with pytest.raises(InstanceError, match="too large for float64"):
        Instance([10 ** 400, 1.0], 0.0)


def test_deep_nesting_is_a_one_line_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"format": "slth-instance/1", "candidates": ' + "[" * 100_000 + "]" * 100_000
                    + ', "target": 0}')
    assert f"{path}: file: JSON nested too deeply" in _error(path)
    path.write_text('{"format": "slth-instance/1", "candidates": ' + "[" * 100 + "1" + "]" * 100 + ', "target": 0}')
    assert f"{path}: candidates: " in _error(path)


@pytest.mark.parametrize("text,expected", [
    ('{"format": ', "file: not valid JSON"),
    ("[1, 2]", "format: not an slth instance (list)"),
    ('{"format": "slth-instance/1", "candidates": [1]}', "target: missing"),
    ('{"candidates": [1], "target": 0}', "format: not an slth instance (format None)"),
])
def test_malformed_json_names_the_field(tmp_path, text, expected):
    path = tmp_path / "m.json"
    path.write_text(text)
    assert f"{path}: {expected}" in _error(path)
    path.write_bytes(b"\xff\xfe{}")
    assert "file: not UTF-8 text" in _error(path)


def test_load_many_names_the_list_item(tmp_path):
    good = Instance([0.5, 0.25], 0.3).to_dict()
    path = tmp_path / "list.json"
    path.write_text(json.dumps([good, good]))
    assert Instance.load_many(path) == [Instance([0.5, 0.25], 0.3)] * 2
    path.write_text(json.dumps([good, dict(good, cardinality=2.5)]))
    with pytest.raises(InstanceError) as info:
        Instance.load_many(path)
    assert str(info.value).startswith(f"{path}[1]: cardinality: the cardinality must be an integer")
    with pytest.raises(FileNotFoundError):
        Instance.load_many(tmp_path / "missing.json")


def test_validate_is_what_every_path_uses(tmp_path):
    X, z, k = validate(np.arange(6).reshape(3, 2), [1, 2], np.int64(2))
    assert X.dtype == z.dtype == np.float64 and X.shape == (3, 2) and z.shape == (2,) and k == 2 and type(k) is int
    inst = Instance(np.arange(6.0).reshape(3, 2), [1.0, 2.0], 2)
    for suffix in (".npz", ".json"):
        assert Instance.load(inst.save(tmp_path / f"r{suffix}")) == inst
