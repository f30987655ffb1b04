"""A persistent, resumable store of solutions: one SQLite file, one row per (instance, solver, options).

The row key is the sha256 of a canonical JSON *request*: the instance's content hash, the solver
name, the options that affect the result (:meth:`milp.backends.SolveOptions.key`: time limit, seed,
threads, params) and the package version. Rerunning a job therefore finds its own rows and nothing
else (after joblib.Memory / open_lth: the description's hash is the cache key).

Safety:
- The file is identified as an slth store by the SQLite header's ``application_id`` (bytes 68-71,
  read with plain file I/O *before* SQLite touches the file). An existing file is then verified on a
  connection that cannot write (``mode=ro``, or ``immutable=1`` when no ``-wal`` file exists, so not
  even side files are created): the ``meta`` row with the format and version, and the *exact* schema
  (every table, index and trigger; the columns, types and constraints of ``meta`` and
  ``solutions``), then ``PRAGMA quick_check``. Anything else - not SQLite, another application's
  database, a newer format, another schema, a corrupt file - raises :class:`StoreError` naming the
  file and what differs, and the file is left byte for byte as it was. Only a verified store is
  reopened read-write and switched to WAL.
- Read-only stores (the file, or its folder, not writable): opened for reading, so lookups work.
  :attr:`SolutionStore.readonly` says so; :meth:`SolutionStore.check_writable` (the batch engine
  calls it before solving) and :meth:`SolutionStore.put_many` raise a clear :class:`StoreError`
  instead of sqlite's "attempt to write a readonly database".
- Locks: another process's transaction is waited for (SQLite's busy handler, ``BUSY_TIMEOUT`` per
  attempt) and retried with backoff for up to ``lock_timeout`` seconds in total (default
  :data:`LOCK_TIMEOUT`, 10 minutes). If the lock outlives that, :meth:`SolutionStore.put_many`
  raises :class:`StoreError` and keeps the rows in :attr:`SolutionStore.unsaved`
  (:meth:`SolutionStore.flush` writes them later); nothing is silently dropped.
- Stored rows are checked when read (:meth:`SolutionStore.get_many`): a mask of 0/1 characters, a
  known status, a finite non-negative error (none only for statuses without a solution), a lower bound
  (if any) that is finite, non-negative and not above the error, and, when the
  caller passes the instances, the instance hash, the mask length n, the cardinality and the error
  recomputed from the instance and the mask. A row that fails is treated as absent (so it is solved
  again, and :meth:`SolutionStore.put_many` then replaces it) and reported once as a
  :class:`StoreWarning`.
- WAL journal, one transaction per :meth:`SolutionStore.put_many` call, ``INSERT OR IGNORE`` on the
  primary key: a process killed at any moment (SIGKILL included) leaves every committed row intact
  and no row half-written or duplicated. ``synchronous=NORMAL``: committed rows survive a killed
  process; an OS crash or power cut may drop the last transactions but never corrupts the file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Iterable

import numpy as np

from .solution import Solution, Status

__all__ = ["SolutionStore", "ResultStore", "StoreError", "StoreWarning", "make_request", "request_key", "LOCK_TIMEOUT"]

#: ``PRAGMA application_id`` of an slth store: the ASCII bytes "SLTH".
APPLICATION_ID = int.from_bytes(b"SLTH", "big")
FORMAT_NAME = "slth-solution-store"
FORMAT_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Keys per ``SELECT ... IN (...)`` (SQLite's default limit on host parameters is 32766).
LOOKUP_BATCH = 500
#: Seconds SQLite's busy handler waits for another process's lock in one attempt (then we retry).
BUSY_TIMEOUT = 2.0
#: Default total seconds an operation keeps retrying a locked database before it gives up
#: (``SolutionStore(lock_timeout=...)``): long enough for any normal transaction of another process.
LOCK_TIMEOUT = 600.0
#: Largest pause between two retries of a locked database.
MAX_RETRY_PAUSE = 2.0
#: Relative tolerance between a row's stored error and the error recomputed from its mask (the
#: residual is computed exactly with ``math.fsum``, so the two agree to the last bit in practice).
ERROR_RTOL = 1e-12

# solutions: key = sha256 of request (canonical JSON: instance hash, solver, options, milp version);
# error NULL = inf (no mask); mask '0101...' one character per candidate; solver = the backend that
# produced it (e.g. 'auto:exact'); details = JSON of the Solution's remaining fields; created = unix time.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS solutions (key TEXT PRIMARY KEY, instance_hash TEXT NOT NULL, "
    "request TEXT NOT NULL, status TEXT NOT NULL, error REAL, mask TEXT NOT NULL, solver TEXT NOT NULL, "
    "solver_version TEXT NOT NULL, solver_objective REAL, seconds REAL NOT NULL, message TEXT NOT NULL, "
    "details TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID",
)
_COLUMNS = ("key", "instance_hash", "request", "status", "error", "mask", "solver", "solver_version",
            "solver_objective", "seconds", "message", "details", "created")
#: Solution fields kept in the ``details`` JSON column. lower_bound and floor were added later (issue 13):
#: rows written before have no such keys and load with None (the schema and FORMAT_VERSION are unchanged,
#: so old and new milp read each other's stores).
_DETAIL_FIELDS = ("claimed_optimal", "bound", "time_to_first", "time_to_best", "extra", "lower_bound", "floor")
_STATUSES = frozenset(s.value for s in Status)
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 8, 11, 26


class StoreError(ValueError):
    """The store cannot be used as asked: not an slth store (not SQLite, foreign, newer format, another
    schema, corrupt), read-only while there is work to write, locked for too long, or a bad path."""


class StoreWarning(UserWarning):
    """Stored rows failed validation (treated as absent) or results could not be saved."""


# ---------------------------------------------------------------------------------------- keys
def make_request(instance_hash: str, solver: str, options_key: dict) -> dict:
    """The description of one solve that the store key hashes (everything that affects the result)."""
    from . import __version__
    from .backends import revision

    return {"instance": instance_hash, "solver": solver, "options": options_key, "milp": __version__,
            "revision": revision(solver)}


def request_key(request: dict) -> str:
    """sha256 of the request's canonical JSON."""
    return hashlib.sha256(_canonical(request).encode()).hexdigest()


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


# --------------------------------------------------------------------------------- validation
def _check_header(path: Path, what: str = "solution store") -> bool:
    """Validate an existing file by its raw header bytes; True when it must be created (empty)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise StoreError(f"cannot read store file {path}: {exc.strerror or exc}") from None
    if len(head) == 0:
        return True  # a zero-byte file holds no data (e.g. a creation killed before its first commit)
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        raise StoreError(f"{path} is not an slth {what} (not an SQLite database); refusing to "
                         f"touch it - pass a new file name or move the file away")
    app_id = int.from_bytes(head[68:72], "big")
    if app_id != APPLICATION_ID:
        raise StoreError(f"{path} is an SQLite database but not an slth {what} (application_id "
                         f"{app_id:#x}, expected {APPLICATION_ID:#x}); refusing to modify it - pass a new "
                         f"file name")
    return False


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _readonly_reason(path: Path) -> str:
    """Why SQLite could not write ``path`` (its folder must be writable for the -wal/-shm files); '' if it can."""
    folder = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is not writable"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is not writable"
    for suffix in ("-wal", "-shm", "-journal"):
        side = _side(path, suffix)
        if side.exists() and not os.access(side, os.W_OK):
            return f"{side.name} is not writable"
    return ""


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_busy(exc: BaseException) -> bool:
    code = _code(exc)
    if code is not None:
        return code in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _norm_sql(sql) -> str | None:
    return None if sql is None else " ".join(sql.replace("IF NOT EXISTS ", "").split())


def _schema(con) -> dict:
    """{(type, name): (tbl_name, normalised sql)} of every schema object but SQLite's own tables."""
    rows = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return {(t, n): (tbl, _norm_sql(sql)) for t, n, tbl, sql in rows if not n.startswith("sqlite_stat")}


def _columns(con, table: str) -> list[tuple]:
    return [(r[1], r[2].upper(), bool(r[3]), r[5]) for r in con.execute(f'PRAGMA table_xinfo("{table}")')]


_REFERENCE: dict[tuple, tuple] = {}


def _reference(statements: tuple = _SCHEMA) -> tuple:
    """(schema, {table: columns}) of a store freshly created by this version from ``statements``."""
    if statements not in _REFERENCE:
        con = sqlite3.connect(":memory:")
        for stmt in statements:
            con.execute(stmt)
        schema = _schema(con)
        _REFERENCE[statements] = schema, {n: _columns(con, n) for t, n in schema if t == "table"}
        con.close()
    return _REFERENCE[statements]


def _schema_differences(con, statements: tuple = _SCHEMA) -> list[str]:
    """How the schema on ``con`` differs from an slth store's (empty when it is exactly ours)."""
    ref, ref_cols = _reference(statements)
    got = _schema(con)
    diffs = [f"missing {t} '{n}'" for t, n in sorted(ref) if (t, n) not in got]
    for (t, n), (tbl, _) in sorted(got.items()):
        if (t, n) not in ref:
            diffs.append(f"unexpected {t} '{n}'" + (f" on table '{tbl}'" if t != "table" else ""))
    for name, want in ref_cols.items():
        if ("table", name) not in got:
            continue
        have = _columns(con, name)
        if have != want:
            want_d, have_d = {c[0]: c for c in want}, {c[0]: c for c in have}
            parts = [f"column '{c}' missing" for c in want_d if c not in have_d]
            parts += [f"unexpected column '{c}'" for c in have_d if c not in want_d]
            for c in want_d:
                if c in have_d and have_d[c] != want_d[c]:
                    (_, wt, wn, wp), (_, ht, hn, hp) = want_d[c], have_d[c]
                    parts.append(f"column '{c}' is {ht or 'untyped'}{' NOT NULL' if hn else ''}"
                                 f"{' PRIMARY KEY' if hp else ''}, expected {wt}{' NOT NULL' if wn else ''}"
                                 f"{' PRIMARY KEY' if wp else ''}")
            if not parts:
                parts.append("columns in another order")
            diffs.append(f"table '{name}': " + ", ".join(parts))
        elif got[("table", name)][1] != ref[("table", name)][1]:
            sql = got[("table", name)][1] or ""
            diffs.append(f"table '{name}' is defined differently ({sql[:120]}{'...' if len(sql) > 120 else ''})")
    return diffs


def _row_problem(r: dict, instance) -> str | None:
    """Why a stored row (dict of its columns) cannot be trusted, or None. ``instance`` may be None."""
    status, mask, err = r["status"], r["mask"], r["error"]
    if status not in _STATUSES:
        return f"unknown status {status!r}"
    if not isinstance(mask, str) or not mask or mask.strip("01"):
        return "mask is not a non-empty string of 0/1 characters"
    if err is not None and (isinstance(err, bool) or not isinstance(err, (int, float)) or not math.isfinite(err)
                            or err < 0):
        return f"error {err!r} is not a finite non-negative number"
    if err is None and status in (Status.OPTIMAL.value, Status.FEASIBLE.value):
        return f"status '{status}' without a solution (error is NULL)"
    if instance is not None:
        problem = _instance_problem(r, instance, mask, err)
        if problem is not None:
            return problem
    return _bounds_problem(r.get("details"), err)


def _instance_problem(r: dict, instance, mask: str, err) -> str | None:
    """Why a row does not fit ``instance`` (hash, mask length, cardinality, recomputed error), or None."""
    if r["instance_hash"] != instance.content_hash():
        return "the row belongs to another instance (instance_hash differs)"
    if len(mask) != instance.n:
        return f"mask has {len(mask)} entries but the instance has n={instance.n}"
    if err is None:
        return None
    bits = np.frombuffer(mask.encode("ascii"), dtype=np.uint8) - ord("0")
    if instance.cardinality is not None and int(bits.sum()) != instance.cardinality:
        return f"mask selects {int(bits.sum())} candidates but the cardinality is k={instance.cardinality}"
    true = instance.residual(bits)
    if abs(true - err) > ERROR_RTOL * max(abs(true), abs(err)):
        return f"stored error {err!r} but the mask's residual is {true!r}"
    return None


def _bounds_problem(details, err) -> str | None:
    """Why a row's lower_bound / floor cannot be right (not a finite non-negative number, or a lower
    bound above the row's own residual), or None. Rows without them (older stores) are fine."""
    if not isinstance(details, str):
        return None
    d = json.loads(details)
    if not isinstance(d, dict):
        return "details is not a JSON object"
    for name in ("lower_bound", "floor"):
        v = d.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
            return f"{name} {v!r} is not a finite non-negative number"
    lb = d.get("lower_bound")
    if lb is not None and err is not None and lb > err * (1 + ERROR_RTOL):
        return f"lower_bound {lb!r} exceeds the row's residual {err!r}: not a valid lower bound"
    return None


def _instances_by_key(keys: list[str], instances) -> dict:
    if instances is None:
        return {}
    if isinstance(instances, Mapping):
        return dict(instances)
    instances = list(instances)
    if len(instances) != len(keys):
        raise ValueError(f"instances must be aligned with keys: got {len(instances)} instances for {len(keys)} keys")
    out: dict = {}
    for key, inst in zip(keys, instances):
        out.setdefault(key, inst)
    return out


class SolutionStore:
    """Solutions keyed by :func:`request_key`; safe to share between processes, resumable after kills.

    Args:
        path: the SQLite file. Created (with its parent folder) if missing or empty.
        check: run ``PRAGMA quick_check`` when opening (linear in the file size; ~ms per MB).
        lock_timeout: total seconds an operation waits for another process's lock, retrying with
            backoff, before it raises :class:`StoreError` (default :data:`LOCK_TIMEOUT`, 10 min).

    Attributes:
        readonly: the file (or its folder) cannot be written; lookups work, writes raise StoreError.
        readonly_reason: why (empty when writable).
        unsaved: rows a :meth:`put_many` could not commit (a lock held past ``lock_timeout``);
            :meth:`flush` or the next :meth:`put_many` writes them.

    Use as a context manager or call :meth:`close`.
    """

    #: what a file of this class is (meta ``format``), its schema, its table of rows and their columns;
    #: :class:`ResultStore` is the same machinery over another table
    FORMAT = FORMAT_NAME
    WHAT = "solution store"
    SCHEMA = _SCHEMA
    TABLE = "solutions"
    COLUMNS = _COLUMNS

    def __init__(self, path, check: bool = True, lock_timeout: float = LOCK_TIMEOUT):
        self.path = Path(path)
        self.lock_timeout = max(0.0, float(lock_timeout))
        self.readonly = False
        self.readonly_reason = ""
        self.unsaved: list[tuple] = []
        self._con: sqlite3.Connection | None = None
        self._bad: dict[str, str] = {}      # keys whose stored row failed validation -> why
        self._warned: set[str] = set()      # bad keys already reported
        try:
            self._open(check)
        except StoreError:
            self.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.close()
            if _code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise StoreError(f"store {self.path} is corrupt or unreadable ({exc}); it was not modified - "
                                 f"move it away and rerun to start a new store") from None
            if self.readonly and _side(self.path, "-wal").exists():
                raise StoreError(f"cannot open store {self.path} read-only ({exc}): {self.readonly_reason} and its "
                                 f"recent results are still in {self.path.name}-wal, which SQLite cannot index "
                                 f"without writing; open it once where it is writable (that folds the -wal file "
                                 f"into the store) or copy the folder somewhere writable; it was not "
                                 f"modified") from None
            raise StoreError(f"cannot open store {self.path} ({exc}); it was not modified") from None

    # ------------------------------------------------------------------------------ opening
    def _open(self, check: bool) -> None:
        path = self.path
        if path.is_dir():
            raise StoreError(f"store path {path} is a folder; pass a file name such as {path / 'results.sqlite'}")
        if path.exists():
            empty = _check_header(path, self.WHAT)
        else:
            self._make_parent()
            empty = True
        self.readonly_reason = _readonly_reason(path)
        self.readonly = bool(self.readonly_reason)
        if empty:
            if not self.readonly:
                self._con = self._connect_rw()
                try:
                    self._retry(self._create, "create the store")
                except sqlite3.Error as exc:
                    raise StoreError(f"cannot create store {path}: {exc}") from None
                self._verify(self._con, check)
                self._use_wal()
                return
            if not path.exists():
                raise StoreError(f"cannot create store {path}: {self.readonly_reason}; pass another --store "
                                 f"path or make the folder writable")
            # a zero-byte read-only file holds no rows: an empty store that can be read, not written
            self._con = sqlite3.connect(":memory:", isolation_level=None)
            for stmt in self.SCHEMA:
                self._con.execute(stmt)
            return
        # An existing store: verify it on a connection that cannot write, and only then use it.
        immutable = not _side(path, "-wal").exists()
        probe = self._connect_ro(immutable)
        try:
            self._verify(probe, check)
        except (StoreError, sqlite3.DatabaseError):
            probe.close()
            if not (immutable and _side(path, "-wal").exists()):
                raise
            # another process opened the store while we read its main file alone: read it properly
            probe = self._connect_ro(False)
            self._verify(probe, check)
        finally:
            probe.close()
        if self.readonly:
            self._con = self._connect_ro(not _side(path, "-wal").exists())
            self._verify(self._con, False)
            return
        self._con = self._connect_rw()
        self._verify(self._con, False)  # the file we verified is still the file we write
        self._use_wal()

    def _make_parent(self) -> None:
        parent = self.path.parent
        for folder in (parent, *parent.parents):
            if folder.exists() or folder.is_symlink():
                if not folder.is_dir():
                    raise StoreError(f"cannot create store {self.path}: {folder} is a file, not a folder; pass "
                                     f"another --store path")
                break
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder {parent} for store {self.path} ({exc.strerror or exc}); "
                             f"pass another --store path or create the folder") from None

    def _connect_rw(self) -> sqlite3.Connection:
        return sqlite3.connect(str(self.path), timeout=min(BUSY_TIMEOUT, self.lock_timeout), isolation_level=None)

    def _connect_ro(self, immutable: bool) -> sqlite3.Connection:
        # immutable=1: read the main file alone, creating no -wal/-shm (right when no -wal file exists,
        # i.e. no other connection is open); otherwise a read-only connection that shares the locks.
        uri = self.path.resolve().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")
        return sqlite3.connect(uri, uri=True, timeout=min(BUSY_TIMEOUT, self.lock_timeout), isolation_level=None)

    def _use_wal(self) -> None:
        try:
            self._retry(lambda: self._con.execute("PRAGMA journal_mode=WAL"), "switch to WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError as exc:
            if _code(exc) != _SQLITE_READONLY:
                raise
            self._con.close()  # the permissions looked fine but SQLite cannot write: use it read-only
            self.readonly, self.readonly_reason = True, f"SQLite cannot write it ({exc})"
            self._con = self._connect_ro(not _side(self.path, "-wal").exists())

    def _create(self) -> None:
        con = self._con
        con.execute("BEGIN IMMEDIATE")  # another process may be creating the same file right now
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            if app_id not in (0, APPLICATION_ID):
                raise StoreError(f"{self.path} became a foreign SQLite database while opening it")
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            for stmt in self.SCHEMA:
                con.execute(stmt)
            from . import __version__

            con.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                            [("format", self.FORMAT), ("format_version", str(FORMAT_VERSION)),
                             ("created_by", f"milp {__version__}"), ("created", repr(time.time()))])
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    def _verify(self, con, check: bool) -> None:
        """Refuse (StoreError) anything but an slth store of a format we read with exactly our schema."""
        self._retry(lambda: self._verify_once(con, check), "read the schema")

    def _verify_once(self, con, check: bool) -> None:
        path = self.path
        app_id = con.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise StoreError(f"{path} is not an slth {self.WHAT} (application_id {app_id:#x}); refusing to "
                             f"modify it - pass a new file name")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", self.TABLE} <= tables:
            try:  # another kind of slth store (a solution store opened as a result store, or the reverse)?
                other = dict(con.execute("SELECT name, value FROM meta").fetchall()).get("format")
            except (sqlite3.Error, ValueError, TypeError):
                other = None
            if isinstance(other, str) and other.startswith("slth-") and other != self.FORMAT:
                raise StoreError(f"{path} is not an slth {self.WHAT} (meta format {other!r}); refusing to modify it "
                                 f"- pass another --store")
            raise StoreError(f"{path} has the slth application id but lacks the meta/{self.TABLE} tables; "
                             f"it is damaged or foreign - refusing to modify it")
        try:
            meta = dict(con.execute("SELECT name, value FROM meta").fetchall())
        except (sqlite3.OperationalError, ValueError, TypeError) as exc:
            raise StoreError(f"{path} has the slth application id but its meta table is not an slth store's "
                             f"({exc}); refusing to modify it - pass another --store") from None
        if meta.get("format") != self.FORMAT:
            raise StoreError(f"{path} is not an slth {self.WHAT} (meta format {meta.get('format')!r})")
        try:
            version = int(meta.get("format_version", "0"))
        except (TypeError, ValueError):
            version = None
        if version is None or version < 1:
            raise StoreError(f"{path} has an invalid store format version {meta.get('format_version')!r}; "
                             f"refusing to modify it")
        if version > FORMAT_VERSION:
            raise StoreError(f"{path} uses store format {version}, newer than this milp understands "
                             f"({FORMAT_VERSION}); upgrade slth-milp")
        diffs = _schema_differences(con, self.SCHEMA)
        if diffs:
            raise StoreError(f"{path} has the slth application id but not an slth store's schema: "
                             f"{'; '.join(diffs[:5])}{'; ...' if len(diffs) > 5 else ''}; refusing to use it "
                             f"(the file was not modified) - pass another --store or move the file away")
        if check:
            result = [r[0] for r in con.execute("PRAGMA quick_check")]
            if result != ["ok"]:
                raise StoreError(f"store {path} is corrupt (quick_check: {'; '.join(result[:3])}); it was "
                                 f"not modified - move it away and rerun to start a new store")

    # ------------------------------------------------------------------------------- locks
    def _retry(self, fn, what: str):
        """``fn()``, retried with backoff while the database is locked, for up to ``lock_timeout`` s."""
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.05
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreError(f"store {self.path} stayed locked by another process for more than "
                                     f"{self.lock_timeout:g} s while trying to {what} ({exc}); end the other "
                                     f"program's transaction (e.g. an open sqlite3 shell) or pass another "
                                     f"--store") from None
                time.sleep(min(pause, left))
                pause = min(2 * pause, MAX_RETRY_PAUSE)

    def _query(self, sql: str, params=()) -> list:
        con = self._con
        if con is None:
            raise StoreError(f"store {self.path} is closed")
        return self._retry(lambda: con.execute(sql, params).fetchall(), "read")

    # ------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return self._query(f"SELECT COUNT(*) FROM {self.TABLE}")[0][0]

    def __contains__(self, key: str) -> bool:
        return bool(self._query(f"SELECT 1 FROM {self.TABLE} WHERE key = ?", (key,)))

    def keys(self) -> list[str]:
        return [r[0] for r in self._query(f"SELECT key FROM {self.TABLE} ORDER BY key")]

    def get(self, key: str, instance=None) -> Solution | None:
        """The stored solution of ``key`` (checked against ``instance`` when given), or None."""
        return self.get_many([key], None if instance is None else [instance]).get(key)

    def get_many(self, keys: Iterable[str], instances=None) -> dict[str, Solution]:
        """The stored, valid solutions among ``keys`` (missing or invalid keys are absent from the result).

        Args:
            keys: store keys (:func:`request_key`).
            instances: optional, the :class:`milp.Instance` of each key - a sequence aligned with
                ``keys`` (entries may be None) or a mapping key -> instance. With it each row's mask
                length, cardinality and error (recomputed from the mask) are checked too; without it
                only what a row says about itself (0/1 mask, status, error). An invalid row is left
                out, reported once as a :class:`StoreWarning`, and replaced by the next
                :meth:`put_many` of its key.
        """
        keys = list(keys)
        instance_of = _instances_by_key(keys, instances)
        keys = list(dict.fromkeys(keys))
        found: dict[str, Solution] = {}
        bad: list[tuple[str, str]] = []
        for start in range(0, len(keys), LOOKUP_BATCH):
            part = keys[start:start + LOOKUP_BATCH]
            marks = ",".join("?" * len(part))
            cols = ", ".join(self.COLUMNS)
            for row in self._query(f"SELECT {cols} FROM {self.TABLE} WHERE key IN ({marks})", part):
                key = row[0]
                try:
                    problem = self._row_problem(dict(zip(self.COLUMNS, row)), instance_of.get(key))
                    if problem is None:
                        found[key] = self._from_row(row)
                except Exception as exc:  # noqa: BLE001 - a tampered row must not take the batch down
                    problem = f"unreadable ({type(exc).__name__}: {exc})"
                if problem is not None:
                    self._bad[key] = problem
                    bad.append((key, problem))
        self._report(bad)
        return found

    def _report(self, bad: list[tuple[str, str]]) -> None:
        new = [(k, p) for k, p in bad if k not in self._warned]
        if not new:
            return
        self._warned.update(k for k, _ in new)
        shown = "; ".join(f"key {k[:12]}: {p}" for k, p in new[:3])
        warnings.warn(StoreWarning(
            f"store {self.path}: {len(new)} stored row(s) failed validation and are treated as missing (they "
            f"are solved again and replaced): {shown}{'; ...' if len(new) > 3 else ''}"), stacklevel=3)

    def rows(self) -> list[dict]:
        """Every row as a dict of its columns, unchecked (for inspection and tests)."""
        rows = self._query(f"SELECT {', '.join(self.COLUMNS)} FROM {self.TABLE} ORDER BY key")
        return [dict(zip(self.COLUMNS, r)) for r in rows]

    # ------------------------------------------------------------------------------- writing
    def check_writable(self, n_todo: int = 1) -> None:
        """Raise :class:`StoreError` if ``n_todo`` > 0 results would have to be written to a read-only
        store. The batch engine calls it before solving, so no work is done that could not be kept."""
        if self.readonly and n_todo > 0:
            raise StoreError(self._readonly_message(f"{n_todo} instance(s) need solving"))

    def _readonly_message(self, what: str) -> str:
        return (f"store {self.path} is read-only ({self.readonly_reason}); {what}: pass another --store "
                f"(store=...) or make it writable")

    def put(self, key: str, request: dict, solution: Solution) -> int:
        return self.put_many([(key, request, solution)])

    def put_many(self, rows: Iterable[tuple[str, dict, Solution]]) -> int:
        """Insert ``(key, request, solution)`` rows in one transaction; keys already present are kept
        as they are, except rows that failed validation in :meth:`get_many`, which are replaced.
        Returns the number of rows written.

        Waits for another process's lock (see ``lock_timeout``). If it cannot write, raises
        :class:`StoreError`; rows not written because of a lock stay in :attr:`unsaved`.
        """
        now = time.time()
        values = [self._to_row(key, request, sol, now) for key, request, sol in rows]
        if self.readonly:
            if values:
                raise StoreError(self._readonly_message(f"{len(values)} result(s) cannot be saved"))
            return 0
        pending = self.unsaved + values
        if not pending:
            return 0
        if self._con is None:
            raise StoreError(f"store {self.path} is closed; {len(values)} result(s) were not saved")
        insert = [v for v in pending if v[0] not in self._bad]
        replace = [v for v in pending if v[0] in self._bad]
        con = self._con
        cols, marks, table = ", ".join(self.COLUMNS), ", ".join("?" * len(self.COLUMNS)), self.TABLE

        def write() -> int:
            before = con.total_changes
            con.execute("BEGIN IMMEDIATE")
            try:
                if insert:
                    con.executemany(f"INSERT OR IGNORE INTO {table} ({cols}) VALUES ({marks})", insert)
                if replace:
                    con.executemany(f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({marks})", replace)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            return con.total_changes - before

        try:
            written = self._retry(write, f"write {len(pending)} result(s)")
        except StoreError as exc:  # still locked after lock_timeout
            self.unsaved = pending
            raise StoreError(f"{exc}; {len(pending)} result(s) not saved yet (kept in store.unsaved; "
                             f"store.flush() retries)") from None
        except sqlite3.Error as exc:
            if _code(exc) == _SQLITE_READONLY:
                self.readonly, self.readonly_reason = True, f"SQLite cannot write it ({exc})"
                raise StoreError(self._readonly_message(f"{len(pending)} result(s) cannot be saved")) from None
            self.unsaved = pending
            raise StoreError(f"cannot write to store {self.path} ({exc}); {len(pending)} result(s) not saved "
                             f"(kept in store.unsaved)") from None
        self.unsaved = []
        for v in replace:
            self._bad.pop(v[0], None)
        return written

    def flush(self) -> int:
        """Write the rows left in :attr:`unsaved` by a failed :meth:`put_many`; returns the rows written."""
        return self.put_many([])

    # ----------------------------------------------------------------------------- lifetime
    def close(self) -> None:
        if self.unsaved:
            warnings.warn(StoreWarning(f"store {self.path} closed with {len(self.unsaved)} result(s) not saved "
                                       f"(the database stayed locked)"), stacklevel=2)
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> "SolutionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}{', read-only' if self.readonly else ''})"

    # --------------------------------------------------- row mapping (what a subclass replaces)
    @staticmethod
    def _row_problem(r: dict, instance) -> str | None:
        return _row_problem(r, instance)

    @staticmethod
    def _to_row(key: str, request: dict, solution: Solution, now: float) -> tuple:
        return _solution_to_row(key, request, solution, now)

    @staticmethod
    def _from_row(row) -> Solution:
        return _row_to_solution(row)


# ------------------------------------------------------------------------------ row mapping
def _real_or_none(x):
    return None if x is None or not math.isfinite(x) else float(x)


def _solution_to_row(key: str, request: dict, sol: Solution, now: float) -> tuple:
    d = sol.to_dict()
    details = {name: d[name] for name in _DETAIL_FIELDS}
    for name in ("lower_bound", "floor"):
        details[name] = _real_or_none(details[name])
    return (key, str(request.get("instance", "")), _canonical(request), sol.status.value,
            _real_or_none(sol.error), "".join("1" if b else "0" for b in sol.mask.tolist()), sol.solver,
            sol.solver_version or "", None if sol.solver_objective is None else float(sol.solver_objective),
            float(sol.seconds), sol.message or "", _canonical(details), now)


def _row_to_solution(row) -> Solution:
    r = dict(zip(_COLUMNS, row))
    details = json.loads(r["details"])
    mask = np.frombuffer(r["mask"].encode("ascii"), dtype=np.uint8) - ord("0")
    return Solution(mask=mask, error=float("inf") if r["error"] is None else r["error"],
                    status=Status(r["status"]), solver=r["solver"], seconds=r["seconds"],
                    solver_objective=r["solver_objective"], solver_version=r["solver_version"],
                    message=r["message"], claimed_optimal=bool(details.get("claimed_optimal", False)),
                    bound=details.get("bound"), time_to_first=details.get("time_to_first"),
                    time_to_best=details.get("time_to_best"), extra=details.get("extra") or {},
                    lower_bound=details.get("lower_bound"), floor=details.get("floor"))


# ------------------------------------------------------------------- general MILP results
RESULT_FORMAT_NAME = "slth-model-result-store"
# results: key = sha256 of request (canonical JSON: model content hash, solver, options, milp version, solver
# library version); result = JSON of the milp.general.Result (Result.to_dict: plain JSON, never pickle).
_RESULT_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, model_hash TEXT NOT NULL, request TEXT NOT NULL, "
    "status TEXT NOT NULL, solver TEXT NOT NULL, result TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID",
)
_RESULT_COLUMNS = ("key", "model_hash", "request", "status", "solver", "result", "created")


class ResultStore(SolutionStore):
    """:class:`milp.general.Result` s of general MILPs (:func:`milp.batch.solve_models`), keyed by
    :func:`request_key` of ``{"model": Model.content_hash(), "solver", "options", "milp", "revision"}``.

    The same file safety, locking, WAL commits and validation-on-read as :class:`SolutionStore` (whose
    machinery this is, over its own table; an slth solution store is refused as a result store and vice
    versa). A stored row is trusted only if its JSON gives a valid Result and, when the caller passes the
    models, it belongs to that model (hash) and its point ``x`` satisfies the model's bounds and rows
    (recomputed, :func:`milp.general.check_point`); callers still re-evaluate what ``x`` means."""

    FORMAT = RESULT_FORMAT_NAME
    WHAT = "model result store"
    SCHEMA = _RESULT_SCHEMA
    TABLE = "results"
    COLUMNS = _RESULT_COLUMNS

    @staticmethod
    def _row_problem(r: dict, model) -> str | None:
        from .general import Result, check_point

        try:
            res = Result.from_dict(json.loads(r["result"]))
        except (ValueError, TypeError, KeyError) as exc:
            return f"result is not a valid Result ({type(exc).__name__}: {exc})"
        if res.status != r["status"]:
            return f"status column {r['status']!r} differs from the result's {res.status!r}"
        if res.status in ("failed", "not_solved") or res.extra.get("watchdog"):
            return f"status {res.status!r} is never stored"
        if model is None:
            return None
        if r["model_hash"] != model.content_hash():
            return "the row belongs to another model (model_hash differs)"
        if res.x is not None:
            violation, ok = check_point(model, res.x)
            if not ok:
                return f"its point does not satisfy the model (violation {violation:.3g})"
        return None

    @staticmethod
    def _to_row(key: str, request: dict, result, now: float) -> tuple:
        return (key, str(request.get("model", "")), _canonical(request), result.status, result.solver,
                _canonical(result.to_dict()), now)

    @staticmethod
    def _from_row(row):
        from .general import Result

        return Result.from_dict(json.loads(dict(zip(_RESULT_COLUMNS, row))["result"]))
