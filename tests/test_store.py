import json
import sqlite3

import numpy as np
import pytest

import milp
from milp.backends import SolveOptions
from milp.solution import Solution, Status
from milp.store import APPLICATION_ID, SolutionStore, StoreError, make_request, request_key


def _row(rng, n=12, solver="exact", seed=0):
    inst = milp.Instance(rng.uniform(-1, 1, n), rng.uniform(-1, 1))
    sol = milp.solve(inst, solver, seed=seed)
    req = make_request(inst.content_hash(), solver, SolveOptions(seed=seed).key())
    return request_key(req), req, sol, inst


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_round_trip_keeps_every_field(tmp_path, rng):
    key, req, sol, inst = _row(rng)
    sol.extra = {"scale": 2.0 ** 30, "raw_status": "Optimal"}
    sol.bound, sol.time_to_first = 0.0, 0.001
    failed = Solution(mask=np.zeros(5, np.uint8), error=float("inf"), status=Status.TIME_LIMIT, solver="cbc",
                      message="no solution in 1 s")
    with SolutionStore(tmp_path / "s.db") as store:
        assert store.put_many([(key, req, sol), ("k2", {"instance": "h"}, failed)]) == 2
        got = store.get_many([key, "k2", "missing"])
    assert set(got) == {key, "k2"}
    a = got[key]
    assert np.array_equal(a.mask, sol.mask) and a.mask.dtype == np.uint8
    assert a.error == sol.error == inst.residual(a.mask)
    assert (a.status, a.solver, a.solver_version, a.claimed_optimal) == (
        sol.status, sol.solver, sol.solver_version, sol.claimed_optimal)
    assert (a.bound, a.time_to_first, a.extra, a.seconds) == (0.0, 0.001, sol.extra, sol.seconds)
    b = got["k2"]
    assert b.error == float("inf") and b.status == Status.TIME_LIMIT and b.message == "no solution in 1 s"


def test_rows_are_never_duplicated_and_persist(tmp_path, rng):
    rows = [_row(rng)[:3] for _ in range(5)]
    path = tmp_path / "s.db"
    with SolutionStore(path) as store:
        assert store.put_many(rows[:3]) == 3
        assert store.put_many(rows) == 2  # the first three are kept as they were
        assert len(store) == 5
        assert store._con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with SolutionStore(path) as store:
        assert len(store) == 5 and sorted(store.keys()) == sorted(r[0] for r in rows)
        stored = store.rows()
    assert all(len(r["mask"]) == 12 and set(r["mask"]) <= {"0", "1"} for r in stored)
    assert all(r["key"] == request_key(json.loads(r["request"])) for r in stored)


def test_key_covers_instance_solver_options_and_version(rng):
    inst = milp.Instance(rng.uniform(-1, 1, 8), 0.1)
    base = request_key(make_request(inst.content_hash(), "exact", SolveOptions().key()))
    assert base == request_key(make_request(inst.content_hash(), "exact", SolveOptions().key()))
    others = [make_request(inst.content_hash(), "cpsat", SolveOptions().key()),
              make_request(inst.content_hash(), "exact", SolveOptions(seed=1).key()),
              make_request(inst.content_hash(), "exact", SolveOptions(time_limit=5.0).key()),
              make_request(inst.content_hash(), "exact", SolveOptions(params={"scale": 2.0}).key()),
              make_request(milp.Instance(inst.candidates, 0.2).content_hash(), "exact", SolveOptions().key())]
    assert len({base, *map(request_key, others)}) == 6
    assert make_request("h", "exact", {})["milp"] == milp.__version__


def test_random_bytes_file_is_refused_and_untouched(tmp_path):
    path = tmp_path / "results.db"
    path.write_bytes(np.random.default_rng(0).bytes(8192))
    before = _snapshot(tmp_path)
    with pytest.raises(StoreError, match="not an slth solution store"):
        SolutionStore(path)
    assert _snapshot(tmp_path) == before  # no byte changed, no -wal/-shm file created


def test_foreign_sqlite_database_is_refused_and_untouched(tmp_path):
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE people (name TEXT)")
    con.execute("INSERT INTO people VALUES ('ada')")
    con.commit()
    con.close()
    before = _snapshot(tmp_path)
    with pytest.raises(StoreError, match="SQLite database but not an slth solution store"):
        SolutionStore(path)
    assert _snapshot(tmp_path) == before


def test_slth_id_without_tables_or_with_newer_format_is_refused(tmp_path):
    path = tmp_path / "odd.db"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    con.execute("CREATE TABLE x (y)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="lacks the meta/solutions tables"):
        SolutionStore(path)
    assert path.read_bytes() == before

    newer = tmp_path / "newer.db"
    SolutionStore(newer).close()
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value = '99' WHERE name = 'format_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer than this milp"):
        SolutionStore(newer)


def test_corrupted_store_is_refused_and_untouched(tmp_path, rng):
    path = tmp_path / "s.db"
    rows = [(f"key{i}", {"instance": f"h{i}"},
             Solution(mask=rng.integers(0, 2, 400), error=float(i), status=Status.FEASIBLE, solver="x"))
            for i in range(300)]
    with SolutionStore(path) as store:
        store.put_many(rows)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[3 * page:5 * page] = np.random.default_rng(1).bytes(2 * page)  # trash two b-tree pages
    path.write_bytes(bytes(data))
    before = _snapshot(tmp_path)
    with pytest.raises(StoreError, match="corrupt"):
        SolutionStore(path)
    assert _snapshot(tmp_path) == before


def test_empty_or_missing_file_becomes_a_store(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    with SolutionStore(empty) as store:
        assert len(store) == 0
    assert empty.read_bytes()[68:72] == b"SLTH"
    with SolutionStore(tmp_path / "sub" / "new.db") as store:
        assert len(store) == 0


def test_store_key_changes_with_the_backend_revision(monkeypatch):
    from milp.backends import REGISTRY
    from milp.store import make_request, request_key

    before = request_key(make_request("h", "cpsat", {"time_limit": 1.0}))
    auto_before = request_key(make_request("h", "auto", {"time_limit": 1.0}))
    monkeypatch.setattr(REGISTRY["cpsat"], "REVISION", REGISTRY["cpsat"].REVISION + 1)
    assert request_key(make_request("h", "cpsat", {"time_limit": 1.0})) != before
    assert request_key(make_request("h", "auto", {"time_limit": 1.0})) != auto_before
