"""A persistent, resumable store of solutions: one SQLite file, one row per (instance, solver, options).

The row key is the sha256 of a canonical JSON *request*: the instance's content hash, the solver
name, the options that affect the result (:meth:`milp.backends.SolveOptions.key`: time limit, seed,
threads, params) and the package version. Rerunning a job therefore finds its own rows and nothing
else (after joblib.Memory / open_lth: the description's hash is the cache key).

Safety:
- The file is identified as an slth store by the SQLite header's ``application_id`` (bytes 68-71,
  read with plain file I/O *before* SQLite touches the file) and by a ``meta`` row with the format
  version. Anything else - not SQLite, another application's database, a newer format, a corrupt
  file - raises :class:`StoreError` and is never written to.
- WAL journal, one transaction per :meth:`SolutionStore.put_many` call, ``INSERT OR IGNORE`` on the
  primary key: a process killed at any moment (SIGKILL included) leaves every committed row intact
  and no row half-written or duplicated. ``synchronous=NORMAL``: committed rows survive a killed
  process; an OS crash or power cut may drop the last transactions but never corrupts the file.
"""
from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from .solution import Solution, Status

__all__ = ["SolutionStore", "StoreError", "make_request", "request_key"]

#: ``PRAGMA application_id`` of an slth store: the ASCII bytes "SLTH".
APPLICATION_ID = int.from_bytes(b"SLTH", "big")
FORMAT_NAME = "slth-solution-store"
FORMAT_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Keys per ``SELECT ... IN (...)`` (SQLite's default limit on host parameters is 32766).
LOOKUP_BATCH = 500
#: Seconds a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT = 60.0

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
_DETAIL_FIELDS = ("claimed_optimal", "bound", "time_to_first", "time_to_best", "extra")


class StoreError(ValueError):
    """The file is not a usable slth store (not SQLite, foreign, newer format or corrupt)."""


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
def _check_header(path: Path) -> bool:
    """Validate an existing file by its raw header bytes; True when it must be created (empty)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise StoreError(f"cannot read store file {path}: {exc}") from exc
    if len(head) == 0:
        return True  # a zero-byte file holds no data (e.g. a creation killed before its first commit)
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        raise StoreError(f"{path} is not an slth solution store (not an SQLite database); refusing to "
                         f"touch it - pass a new file name or move the file away")
    app_id = int.from_bytes(head[68:72], "big")
    if app_id != APPLICATION_ID:
        raise StoreError(f"{path} is an SQLite database but not an slth solution store (application_id "
                         f"{app_id:#x}, expected {APPLICATION_ID:#x}); refusing to modify it - pass a new "
                         f"file name")
    return False


class SolutionStore:
    """Solutions keyed by :func:`request_key`; safe to share between processes, resumable after kills.

    Args:
        path: the SQLite file. Created (with its parent folder) if missing or empty.
        check: run ``PRAGMA quick_check`` when opening (linear in the file size; ~ms per MB).

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path, check: bool = True):
        self.path = Path(path)
        new = not self.path.exists() or _check_header(self.path)
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        try:
            if new:
                try:
                    self._create()
                except sqlite3.Error as exc:
                    raise StoreError(f"cannot create store {self.path}: {exc}") from exc
            self._validate(check)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
        except StoreError:
            self._con.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._con.close()
            raise StoreError(f"store {self.path} is corrupt or unreadable ({exc}); it was not modified - "
                             f"move it away and rerun to start a new store") from exc

    def _create(self) -> None:
        con = self._con
        con.execute("BEGIN IMMEDIATE")  # another process may be creating the same file right now
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            if app_id not in (0, APPLICATION_ID):
                raise StoreError(f"{self.path} became a foreign SQLite database while opening it")
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            for stmt in _SCHEMA:
                con.execute(stmt)
            from . import __version__

            con.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                            [("format", FORMAT_NAME), ("format_version", str(FORMAT_VERSION)),
                             ("created_by", f"milp {__version__}"), ("created", repr(time.time()))])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _validate(self, check: bool) -> None:
        con = self._con
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "solutions"} <= tables:
            raise StoreError(f"{self.path} has the slth application id but lacks the meta/solutions tables; "
                             f"it is damaged or foreign - refusing to modify it")
        meta = dict(con.execute("SELECT name, value FROM meta"))
        if meta.get("format") != FORMAT_NAME:
            raise StoreError(f"{self.path} is not an slth solution store (meta format {meta.get('format')!r})")
        version = int(meta.get("format_version", "0"))
        if version > FORMAT_VERSION:
            raise StoreError(f"{self.path} uses store format {version}, newer than this milp understands "
                             f"({FORMAT_VERSION}); upgrade slth-milp")
        if version < 1:
            raise StoreError(f"{self.path} has an invalid store format version {version!r}")
        if check:
            result = [r[0] for r in con.execute("PRAGMA quick_check")]
            if result != ["ok"]:
                raise StoreError(f"store {self.path} is corrupt (quick_check: {'; '.join(result[:3])}); it was "
                                 f"not modified - move it away and rerun to start a new store")

    # ------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return self._con.execute("SELECT COUNT(*) FROM solutions").fetchone()[0]

    def __contains__(self, key: str) -> bool:
        return self._con.execute("SELECT 1 FROM solutions WHERE key = ?", (key,)).fetchone() is not None

    def keys(self) -> list[str]:
        return [r[0] for r in self._con.execute("SELECT key FROM solutions ORDER BY key")]

    def get(self, key: str) -> Solution | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Solution]:
        """The stored solutions among ``keys`` (missing keys are simply absent from the result)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Solution] = {}
        for start in range(0, len(keys), LOOKUP_BATCH):
            part = keys[start:start + LOOKUP_BATCH]
            marks = ",".join("?" * len(part))
            for row in self._con.execute(f"SELECT {', '.join(_COLUMNS)} FROM solutions WHERE key IN ({marks})",
                                         part):
                found[row[0]] = _row_to_solution(row)
        return found

    def rows(self) -> list[dict]:
        """Every row as a dict of its columns (for inspection and tests)."""
        cur = self._con.execute(f"SELECT {', '.join(_COLUMNS)} FROM solutions ORDER BY key")
        return [dict(zip(_COLUMNS, r)) for r in cur]

    def put(self, key: str, request: dict, solution: Solution) -> int:
        return self.put_many([(key, request, solution)])

    def put_many(self, rows: Iterable[tuple[str, dict, Solution]]) -> int:
        """Insert ``(key, request, solution)`` rows in one transaction; keys already present are kept
        as they are. Returns the number of rows inserted."""
        now = time.time()
        values = [_solution_to_row(key, request, sol, now) for key, request, sol in rows]
        if not values:
            return 0
        con = self._con
        before = con.total_changes
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(f"INSERT OR IGNORE INTO solutions ({', '.join(_COLUMNS)}) "
                            f"VALUES ({', '.join('?' * len(_COLUMNS))})", values)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return con.total_changes - before

    # ----------------------------------------------------------------------------- lifetime
    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> "SolutionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SolutionStore({str(self.path)!r})"


# ------------------------------------------------------------------------------ row mapping
def _real_or_none(x):
    return None if x is None or not math.isfinite(x) else float(x)


def _solution_to_row(key: str, request: dict, sol: Solution, now: float) -> tuple:
    d = sol.to_dict()
    details = {name: d[name] for name in _DETAIL_FIELDS}
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
                    time_to_best=details.get("time_to_best"), extra=details.get("extra") or {})
