"""Solution store hardening: exact schema check without touching the file, read-only stores, locks,
bad paths and validation of stored rows."""
import hashlib
import json
import os
import pickle
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import milp
from milp.backends import SolveOptions
from milp.store import (_SCHEMA, APPLICATION_ID, FORMAT_NAME, SolutionStore, StoreError, StoreWarning,
                        make_request, request_key)


def _snapshot(folder: Path) -> dict:
    """Every file of ``folder`` (recursively) -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _entries(rng, count=4, n=10):
    out = []
    for i in range(count):
        k = 3 if i % 2 else None
        inst = milp.Instance(rng.uniform(-1, 1, n), rng.uniform(-1, 1), k)
        sol = milp.solve(inst, "exact")
        req = make_request(inst.content_hash(), "exact", SolveOptions().key())
        out.append((request_key(req), req, sol, inst))
    return out


def _filled_store(path, entries):
    with SolutionStore(path) as store:
        assert store.put_many([e[:3] for e in entries]) == len(entries)
    return path


# ---------------------------------------------------------------------- (a) exact schema, file untouched
def _fake_store(path, solutions_sql, extra=(), wal=False):
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    con.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("format", FORMAT_NAME), ("format_version", "1")])
    con.execute(solutions_sql)
    for stmt in extra:
        con.execute(stmt)
    con.commit()
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.close()
    return path


OUR_SOLUTIONS = _SCHEMA[1].replace("IF NOT EXISTS ", "")


@pytest.mark.parametrize("wal", [False, True], ids=["rollback", "wal"])
@pytest.mark.parametrize("sql,extra,expected", [
    ("CREATE TABLE solutions (key TEXT PRIMARY KEY, value BLOB)", (),
     "table 'solutions': column 'instance_hash' missing"),
    (OUR_SOLUTIONS.replace("error REAL", "error TEXT"), (), "column 'error' is TEXT, expected REAL"),
    (OUR_SOLUTIONS.replace("mask TEXT NOT NULL", "mask TEXT"), (), "column 'mask' is TEXT, expected TEXT NOT NULL"),
    (OUR_SOLUTIONS, ("CREATE TABLE notes (x)",), "unexpected table 'notes'"),
    (OUR_SOLUTIONS, ("CREATE INDEX by_status ON solutions (status)",), "unexpected index 'by_status' on table "
                                                                        "'solutions'"),
    (OUR_SOLUTIONS, ("CREATE TRIGGER t AFTER INSERT ON solutions BEGIN DELETE FROM meta; END",),
     "unexpected trigger 't'"),
    (OUR_SOLUTIONS.replace(" WITHOUT ROWID", ""), (), "solutions"),
])
def test_another_schema_is_refused_and_the_file_untouched(tmp_path, sql, extra, expected, wal):
    path = _fake_store(tmp_path / "s.db", sql, extra, wal)
    before = _snapshot(tmp_path)
    with pytest.raises(StoreError) as info:
        SolutionStore(path)
    msg = str(info.value)
    assert str(path) in msg and "not an slth store's schema" in msg and expected in msg, msg
    assert "was not modified" in msg
    assert _snapshot(tmp_path) == before  # same bytes (journal mode included), no -wal/-shm left behind


def test_invalid_meta_version_is_a_store_error(tmp_path):
    path = _fake_store(tmp_path / "s.db", OUR_SOLUTIONS)
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = 'one' WHERE name = 'format_version'")
    con.commit()
    con.close()
    before = _snapshot(tmp_path)
    with pytest.raises(StoreError, match="invalid store format version 'one'"):
        SolutionStore(path)
    assert _snapshot(tmp_path) == before


def test_a_store_we_made_is_accepted_in_both_journal_modes(tmp_path, rng):
    entries = _entries(rng, 2)
    path = _filled_store(tmp_path / "s.db", entries)
    assert path.read_bytes()[18:20] == b"\x02\x02"  # WAL
    with SolutionStore(path) as store:
        assert set(store.get_many([e[0] for e in entries], [e[3] for e in entries])) == {e[0] for e in entries}
    legacy = _fake_store(tmp_path / "legacy.db", OUR_SOLUTIONS)  # rollback journal, exact schema
    with SolutionStore(legacy) as store:
        assert len(store) == 0 and not store.readonly


# ------------------------------------------------------------------------------ (b) read-only stores
def _as_limited_user(fn, *args):
    """Run ``fn(*args)`` where file permissions apply: in a forked child as 'nobody' when we are root
    (root writes read-only files), else here. Returns ("ok", value) or ("error", type name, message)."""
    def call():
        try:
            return ("ok", fn(*args))
        except Exception as exc:  # noqa: BLE001
            return ("error", type(exc).__name__, str(exc))

    if os.geteuid() != 0:
        return call()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            data = pickle.dumps(call())
        except BaseException as exc:  # noqa: BLE001
            data = pickle.dumps(("error", type(exc).__name__, str(exc)))
        with os.fdopen(write, "wb") as fh:
            fh.write(data)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)


@pytest.fixture
def shared_dir():
    """A folder the limited user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="slth-store-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    for p in [path, *path.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
    shutil.rmtree(path)


def _read_only_session(path, instances, new_rows):
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        with SolutionStore(path) as store:
            out["readonly"] = store.readonly
            out["rows"] = len(store)
            store.check_writable(0)  # nothing to write: fine
            for name, call in (("check", lambda: store.check_writable(len(new_rows))),
                               ("put", lambda: store.put_many(new_rows))):
                try:
                    call()
                    out[name] = None
                except StoreError as exc:
                    out[name] = str(exc)
        # the batch engine: everything stored -> read; anything new -> refused before solving
        out["batch"] = [(s.error, s.mask.tolist()) for s in
                        milp.solve_many(instances[:-1], "exact", store=str(path), progress=False)]
        try:
            milp.solve_many(instances, "exact", store=str(path), progress=False)
            out["batch_new"] = None
        except StoreError as exc:
            out["batch_new"] = str(exc)
    return out


@pytest.mark.parametrize("where", ["folder", "file"])
def test_read_only_store_is_read_and_refuses_new_work_up_front(shared_dir, rng, where):
    folder = shared_dir / "stores"
    folder.mkdir()
    entries = _entries(rng, 4)
    instances = [e[3] for e in entries]
    path = folder / "s.db"
    solved = milp.solve_many(instances[:3], "exact", store=path, progress=False)
    if where == "folder":
        path.chmod(0o666)
        folder.chmod(0o555)
    else:
        folder.chmod(0o777)
        path.chmod(0o444)
    if os.geteuid() != 0 and os.access(path if where == "file" else folder, os.W_OK):
        pytest.skip("cannot make the store read-only here")
    before = _snapshot(folder)
    result = _as_limited_user(_read_only_session, path, instances, [entries[3][:3]])
    assert result[0] == "ok", result
    out = result[1]
    assert out["readonly"] is True and out["rows"] == 3
    reason = f"its folder {folder} is not writable" if where == "folder" else "the file is not writable"
    assert out["check"] == (f"store {path} is read-only ({reason}); 1 instance(s) need solving: pass another "
                            f"--store (store=...) or make it writable")
    assert out["put"].startswith(f"store {path} is read-only ({reason}); 1 result(s) cannot be saved")
    assert out["batch"] == [(s.error, s.mask.tolist()) for s in solved]  # all stored: the batch just reads
    assert out["batch_new"] == out["check"]  # refused up front, not after solving
    assert _snapshot(folder) == before  # not a byte changed, no side file


def test_read_only_detection_without_permissions(tmp_path, rng, monkeypatch):
    """The same behaviour where permissions cannot be dropped (simulated)."""
    entries = _entries(rng, 2)
    path = _filled_store(tmp_path / "s.db", entries[:1])
    monkeypatch.setattr("milp.store._readonly_reason", lambda p: "the file is not writable")
    before = _snapshot(tmp_path)
    with SolutionStore(path) as store:
        assert store.readonly and len(store) == 1 and "read-only" in repr(store)
        assert list(store.get_many([entries[0][0]], [entries[0][3]])) == [entries[0][0]]
        with pytest.raises(StoreError, match=r"is read-only \(the file is not writable\); 2 instance\(s\) need"):
            store.check_writable(2)
        with pytest.raises(StoreError, match="1 result"):
            store.put(*entries[1][:3])
    assert _snapshot(tmp_path) == before


def _create_in(path):
    try:
        SolutionStore(path).close()
    except StoreError as exc:
        return str(exc)


def test_no_store_can_be_created_in_a_read_only_folder(shared_dir):
    folder = shared_dir / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() != 0 and os.access(folder, os.W_OK):
        pytest.skip("cannot make a folder read-only here")
    assert _as_limited_user(_create_in, folder / "new.db") == (
        "ok", f"cannot create store {folder / 'new.db'}: its folder {folder} is not writable; pass another "
              f"--store path or make the folder writable")
    msg = _as_limited_user(_create_in, folder / "sub" / "new.db")[1]
    assert msg.startswith(f"cannot create the folder {folder / 'sub'} for store {folder / 'sub' / 'new.db'}")
    assert list(folder.iterdir()) == []


# ------------------------------------------------------------------------------------- (c) locks
def _hold_lock(path, seconds, locked: threading.Event):
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    locked.set()
    time.sleep(seconds)
    con.execute("COMMIT")
    con.close()


def test_a_write_waits_for_another_process_lock(tmp_path, rng, monkeypatch):
    monkeypatch.setattr("milp.store.BUSY_TIMEOUT", 0.1)  # SQLite gives up fast: our retries must carry on
    entries = _entries(rng, 3)
    path = _filled_store(tmp_path / "s.db", entries[:1])
    with SolutionStore(path, lock_timeout=30) as store:
        locked = threading.Event()
        holder = threading.Thread(target=_hold_lock, args=(path, 2.0, locked))
        holder.start()
        locked.wait()
        start = time.monotonic()
        assert store.put_many([e[:3] for e in entries[1:]]) == 2
        waited = time.monotonic() - start
        holder.join()
        assert 1.5 < waited < 10 and store.unsaved == []
    with SolutionStore(path) as store:
        assert set(store.get_many([e[0] for e in entries], [e[3] for e in entries])) == {e[0] for e in entries}


def test_a_lock_held_past_the_timeout_keeps_the_rows(tmp_path, rng):
    entries = _entries(rng, 2)
    path = _filled_store(tmp_path / "s.db", [])
    with SolutionStore(path, lock_timeout=0.3) as store:
        locked = threading.Event()
        holder = threading.Thread(target=_hold_lock, args=(path, 1.5, locked))
        holder.start()
        locked.wait()
        with pytest.raises(StoreError) as info:
            store.put_many([e[:3] for e in entries])
        msg = str(info.value)
        assert msg.startswith(f"store {path} stayed locked by another process for more than 0.3 s") \
            and "2 result(s) not saved yet (kept in store.unsaved; store.flush() retries)" in msg
        assert len(store.unsaved) == 2
        holder.join()
        assert store.flush() == 2 and store.unsaved == []
        assert len(store) == 2


# ------------------------------------------------------------------------------------ (d) bad paths
def test_path_under_a_regular_file_or_a_folder(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    for path in (blocker / "s.db", blocker / "a" / "b" / "s.db"):
        with pytest.raises(StoreError) as info:
            SolutionStore(path)
        assert str(info.value) == f"cannot create store {path}: {blocker} is a file, not a folder; pass another " \
                                  f"--store path"
    assert blocker.read_text() == "not a folder"
    with pytest.raises(StoreError, match=f"store path {tmp_path} is a folder; pass a file name"):
        SolutionStore(tmp_path)


# -------------------------------------------------------------------------------- (e) stored rows
def _tamper(path, key, **columns):
    con = sqlite3.connect(path)
    sets = ", ".join(f"{c} = ?" for c in columns)
    con.execute(f"UPDATE solutions SET {sets} WHERE key = ?", (*columns.values(), key))
    con.commit()
    con.close()


def _details(entry) -> str:
    """The details JSON the store writes for an entry's solution."""
    from milp.store import _COLUMNS, _solution_to_row

    return _solution_to_row(entry[0], entry[1], entry[2], 0.0)[_COLUMNS.index("details")]


def _flip_first_unselected(mask: str) -> str:
    i = mask.index("0")
    return mask[:i] + "1" + mask[i + 1:]


TAMPERS = {
    "short mask": (lambda e: {"mask": "0101"}, "mask has 4 entries but the instance has n=10", True),
    "long mask": (lambda e: {"mask": "0" * 11}, "mask has 11 entries but the instance has n=10", True),
    "not 0/1": (lambda e: {"mask": "2" * 10}, "mask is not a non-empty string of 0/1", False),
    # the exact solve records its lower bound (the optimum), which a halved error falls below: caught
    # without the instance too
    "error changed": (lambda e: {"error": e[2].error * 0.5}, "stored error", False),
    "error changed, no bound": (lambda e: {"error": e[2].error * 0.5, "details": json.dumps(
        {**json.loads(_details(e)), "lower_bound": None})}, "stored error", True),
    "lower bound above error": (lambda e: {"details": json.dumps(
        {**json.loads(_details(e)), "lower_bound": 2 * e[2].error + 1})}, "exceeds the row's residual", False),
    "negative error": (lambda e: {"error": -1.0}, "is not a finite non-negative number", False),
    "optimal without error": (lambda e: {"error": None}, "status 'optimal' without a solution", False),
    "unknown status": (lambda e: {"status": "great"}, "unknown status 'great'", False),
    "details": (lambda e: {"details": "{not json"}, "unreadable (JSONDecodeError", False),
    "other instance": (lambda e: {"instance_hash": "0" * 64}, "belongs to another instance", True),
}


@pytest.mark.parametrize("case", sorted(TAMPERS))
def test_tampered_rows_are_absent_reported_once_and_replaced(tmp_path, rng, case):
    entries = _entries(rng, 2)
    path = _filled_store(tmp_path / "s.db", entries)
    victim, other = entries
    change, reason, needs_instance = TAMPERS[case]
    _tamper(path, victim[0], **change(victim))
    keys, insts = [e[0] for e in entries], [e[3] for e in entries]
    with SolutionStore(path) as store:
        with pytest.warns(StoreWarning) as record:
            got = store.get_many(keys, insts)
        assert list(got) == [other[0]]  # never returned, let alone as optimal
        assert len(record) == 1
        msg = str(record[0].message)
        assert msg.startswith(f"store {path}: 1 stored row(s) failed validation") and reason in msg, msg
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert list(store.get_many(keys, insts)) == [other[0]]  # reported once
            got = store.get_many(keys)  # without the instances: only what a row says about itself
            assert (victim[0] in got) == needs_instance
        assert store.put_many([victim[:3], other[:3]]) == 1  # the bad row is replaced, the good one kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with SolutionStore(path) as store:
            got = store.get_many(keys, {e[0]: e[3] for e in entries})
    assert set(got) == set(keys)
    fixed = got[victim[0]]
    assert np.array_equal(fixed.mask, victim[2].mask) and fixed.error == victim[3].residual(fixed.mask)


def test_cardinality_violation_is_caught(tmp_path, rng):
    entries = _entries(rng, 2)
    victim = entries[1]
    assert victim[3].cardinality == 3
    path = _filled_store(tmp_path / "s.db", entries)
    mask = _flip_first_unselected("".join(map(str, victim[2].mask.tolist())))
    bits = np.array([int(c) for c in mask], dtype=np.uint8)
    _tamper(path, victim[0], mask=mask, error=victim[3].residual(bits))  # consistent error, 4 items
    with SolutionStore(path) as store, pytest.warns(StoreWarning, match="mask selects 4 candidates but the "
                                                                         "cardinality is k=3"):
        assert victim[0] not in store.get_many([victim[0]], [victim[3]])


def test_batch_resolves_and_repairs_a_corrupt_row(tmp_path, rng):
    insts = [e[3] for e in _entries(rng, 3)]
    path = tmp_path / "s.db"
    first = milp.solve_many(insts, "exact", store=path, progress=False)
    with SolutionStore(path) as store:
        rows = store.rows()
    _tamper(path, rows[0]["key"], mask="x" * len(rows[0]["mask"]), status="optimal")
    with pytest.warns(StoreWarning, match="failed validation"):
        again = milp.solve_many(insts, "exact", store=path, progress=False)
    assert [s.error for s in again] == [s.error for s in first]
    with SolutionStore(path) as store:
        assert store.rows()[0]["mask"] == rows[0]["mask"]  # the re-solved result replaced the bad row


def test_get_many_argument_forms(tmp_path, rng):
    entries = _entries(rng, 2)
    path = _filled_store(tmp_path / "s.db", entries)
    with SolutionStore(path) as store:
        assert store.get(entries[0][0], entries[0][3]).error == entries[0][2].error
        assert store.get(entries[0][0]).error == entries[0][2].error
        assert set(store.get_many([e[0] for e in entries], [None, entries[1][3]])) == {e[0] for e in entries}
        with pytest.raises(ValueError, match="aligned with keys"):
            store.get_many([e[0] for e in entries], [entries[0][3]])
