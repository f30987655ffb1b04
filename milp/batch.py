"""``solve_many``: thousands of small solves on local worker processes (or a Dask cluster), resumable.
``solve_models``: general MILPs (:class:`milp.general.Model`, e.g. the exact sup-norm MILPs of
``pipelines.exact_sup``) on the same engine, with every guarantee below; a :class:`_Kind` (``INSTANCES``,
``MODELS``) is all that differs: what a failed, stopped or never-started item's result is and which results
a store keeps (:class:`milp.store.SolutionStore` for Solutions, :class:`milp.store.ResultStore` for general
Results, as JSON). ``solve_models(total_time=...)`` also stops starting work past a deadline.

Design:
- The unit of work is the pure top-level function :func:`_solve_chunk` over picklable arrays; a chunk
  groups several instances so that millisecond solves do not each pay a process round trip.
- Every instance is solved with its own seed, :func:`instance_seed` ``(seed, content hash)``; it
  depends neither on its position, nor on the chunking, nor on ``n_jobs``, so results are identical
  however the batch is split.
- Identical instances are solved once. With a store (:class:`milp.store.SolutionStore`) results are
  committed as they arrive (see "Guarantees"), and instances already in the store are not solved
  again: a batch killed at any moment resumes where it stopped.
- ``backend="loky"`` (the default; the name is kept from the joblib/loky engine this replaced, and the
  processes are started the same way, as fresh interpreters by fork+exec) runs ``n_jobs`` worker
  processes owned by this module: each is a fresh ``python`` started by :mod:`subprocess` with two
  pipes. A worker reports *every instance* as soon as it is solved, so the engine always knows which
  instance a worker is on; that is what lets it stop exactly one hung or crashing instance, kill
  exactly that worker, and keep everything else. ``n_jobs=1`` solves in this process (no worker),
  except when a ``time_limit`` is set: then one worker process is used, so the watchdog can act.
- ``backend="dask"`` submits the same chunks to a ``distributed`` cluster (``Client.submit``).

Guarantees (what happens when ...):
- ... a solve raises: that instance becomes a ``failed`` Solution with the reason; the rest goes on.
- ... a worker process dies (segfault, ``os._exit``, out-of-memory kill): the instance it was solving
  is retried once alone on a fresh worker; if it kills that worker too it becomes ``failed`` ("the
  worker process died while solving this instance ..."). Instances it had finished are kept; the
  others of its chunk are requeued. Dask: a task whose workers keep dying ends as ``KilledWorker``;
  its instances are retried one by one and the one that fails again is ``failed``.
- ... a worker hangs (only with ``time_limit`` set): a watchdog in this process gives every instance
  ``WATCHDOG_FACTOR * time_limit + WATCHDOG_OVERHEAD`` seconds after the previous result of its chunk
  (``WATCHDOG_SLACK`` more for the first instance of a chunk: process start, solver import), so a
  chunk of k instances has at most ``k * (WATCHDOG_FACTOR * time_limit + WATCHDOG_OVERHEAD) +
  WATCHDOG_SLACK``. Past it, the instance becomes a ``time_limit`` Solution (all-zero mask, infinite
  error, ``extra["watchdog"] = True``, message "stopped by the batch watchdog ..."), the worker (and
  its process group: a CBC subprocess too) is killed with SIGKILL, the rest of the chunk is requeued
  and the batch goes on. Dask reports per chunk: a stuck task is cancelled and its worker restarted
  (``Client.restart_workers``, needs a nanny); a single-instance chunk becomes ``time_limit``, a
  larger one is rerun one instance per task. Without a time limit there is no watchdog (``exact``
  and ``heuristic`` always end; a MILP solver without a limit may legitimately run for hours).
- ... the batch process is killed (``kill -9`` included) or crashes: no worker keeps computing.
  Every worker sets ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (Linux) as the first thing it does, and
  checks that its parent is still the batch process (so a parent dying during the start is caught
  too); the kernel then kills it the moment the batch process dies, even inside a C solver call.
  Subprocesses a worker starts (CBC) get the same flag, so they die with the worker. A watcher
  thread in each worker also polls ``os.getppid()`` every ``PARENT_POLL_INTERVAL`` seconds and kills
  the worker's process group (the fallback for systems without ``PR_SET_PDEATHSIG``), and an idle
  worker exits on end-of-file of its task pipe. There is no resource tracker, executor manager or
  forkserver process to leave behind. Measured: workers gone well within a second of ``kill -9``.
  Dask: the cluster is not ours; a task already running on a cluster worker runs until it returns
  (bounded by the time limit), the scheduler drops the client's remaining tasks.
- ... results, crash or kill: results are committed to the store as they arrive, at the latest
  ``COMMIT_INTERVAL`` seconds after the first uncommitted one (and at once when the uncommitted
  results took ``COMMIT_INTERVAL`` seconds of solving), and always on the way out (exception,
  Ctrl-C). A ``kill -9`` loses at most the last ``COMMIT_INTERVAL`` seconds of results received
  and the instances in progress; everything committed stays (SQLite WAL transactions). ``failed``
  and watchdog ``time_limit`` results are returned but not stored, so a rerun tries them again.
- ... the Dask cluster has no worker: the batch waits at most ``dask_worker_timeout`` seconds
  (default ``DASK_NO_WORKER_TIMEOUT``) for one, at the start and whenever all workers are gone
  during the run, then raises :class:`NoDaskWorkersError` (results so far are committed).
- ... a folder holds a bad instance file: :func:`load_instances` prints a warning line naming the
  file and the reason on stderr and skips it (``strict=True`` raises instead); a single file given
  directly raises :class:`milp.InstanceError` naming the file.

Test-only hook: if the environment variable ``SLTH_TEST_HANG_ON_TARGET`` holds a number, a worker
asked to solve an instance whose (first) target coordinate equals it (a general model: whose first
variable's upper bound equals it) sleeps forever instead, to exercise the watchdog. It is read in
:func:`_solve_one` and :func:`_solve_model_one`; never set it outside tests.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import general
from .api import check_options, solve
from .backends import REGISTRY, SolveOptions, get_backend
from .instance import Instance, InstanceError
from .solution import Solution, Status
from .store import ResultStore, SolutionStore, make_request, request_key

__all__ = ["solve_many", "solve_models", "load_instances", "instance_seed", "auto_chunk_size", "BatchError", "NoDaskWorkersError"]

BACKENDS = ("loky", "dask")
#: Auto chunking: aim at this many chunks per worker, so that the last chunks balance the load
#: (a straggler costs at most ~1/8 of a worker's share) and progress arrives regularly.
CHUNKS_PER_WORKER = 8
#: Largest automatic chunk for fast solvers (``Backend.is_fast``: exact at n <= 34 takes ~1-20 ms,
#: heuristic at n = 30 ~2 ms, auto on the instances it sends to exact). A process round trip costs
#: ~0.5 ms per task here (pickling, pipe, result); 64 exact solves at n = 30 take ~0.3 s, so the
#: overhead is negligible. Measured with scripts/bench_batch.py (2572 instances, n = 30, 2 workers,
#: idle machine, joblib/loky engine): chunks of 16 / 64 / 128 take 6.1 / 6.0 / 5.9 s, chunks of 1 6.7 s.
MAX_AUTO_CHUNK_FAST = 64
#: Largest automatic chunk for MILP solvers (tens of ms to seconds each): the round trip is
#: negligible, so small chunks give the best balance and the finest progress.
MAX_AUTO_CHUNK_SLOW = 2
#: With a time limit, an automatic chunk holds at most this many seconds of time limits
#: (``chunk_size * time_limit``): Dask reports a chunk only when it is complete, and the watchdog
#: budget of a chunk grows with its size.
MAX_CHUNK_SECONDS = 60.0

#: Watchdog (only with a time limit): each instance of a chunk may take ``WATCHDOG_FACTOR *
#: time_limit + WATCHDOG_OVERHEAD`` seconds after the previous result (``auto`` may spend up to
#: ~time_limit + 1 s; MILP backends build their model around the solver's own clock) ...
WATCHDOG_FACTOR = 2.0
WATCHDOG_OVERHEAD = 30.0
#: ... plus this once per chunk (worker start ~0.4 s, solver import up to ~2 s, on a loaded machine).
WATCHDOG_SLACK = 30.0
#: Results are committed to the store at most this many seconds after they arrive.
COMMIT_INTERVAL = 0.5
#: Seconds a Dask batch waits for at least one worker (at the start, or after all were lost) before
#: raising :class:`NoDaskWorkersError`; ``solve_many(dask_worker_timeout=...)`` overrides it.
DASK_NO_WORKER_TIMEOUT = 30.0
#: A worker's watcher thread checks this often whether the batch process is still its parent.
PARENT_POLL_INTERVAL = 0.5
#: Test-only: see the module docstring.
HANG_ENV = "SLTH_TEST_HANG_ON_TARGET"

_PR_SET_PDEATHSIG = 1
_POLL = 0.25  # the engine's loop wakes up at least this often (deadlines, commits)
#: thread caps for worker processes (as joblib's loky backend sets them): cores / workers, unless set
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS")


class BatchError(RuntimeError):
    """The batch engine cannot go on (workers cannot start, the cluster has no workers)."""


class NoDaskWorkersError(BatchError):
    """The Dask cluster had no worker for longer than ``dask_worker_timeout`` seconds."""


# ----------------------------------------------------------------------------------- seeds
def instance_seed(seed: int, content_hash: str) -> int:
    """The solver seed of one instance: a function of the batch seed and the instance only."""
    digest = hashlib.sha256(f"slth-seed:{int(seed)}:{content_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2 ** 31


# ---------------------------------------------------------------------------------- worker
def _failed(n: int, solver: str, message: str, seconds: float = 0.0) -> Solution:
    return Solution(mask=np.zeros(n, dtype=np.uint8), error=float("inf"), status=Status.FAILED,
                    solver=solver, seconds=seconds, message=message)


def _stopped(n: int, solver: str, message: str, seconds: float) -> Solution:
    """The ``time_limit`` Solution of an instance the watchdog stopped (no mask)."""
    return Solution(mask=np.zeros(n, dtype=np.uint8), error=float("inf"), status=Status.TIME_LIMIT,
                    solver=solver, seconds=seconds, message=message, extra={"watchdog": True})


def _test_hang_hook(target) -> None:
    """Test-only (``SLTH_TEST_HANG_ON_TARGET``): hang forever on the instance with that target."""
    value = os.environ.get(HANG_ENV)
    if not value:
        return
    try:
        hang = float(value) == float(np.ravel(target)[0])
    except (TypeError, ValueError, IndexError):
        return
    while hang:
        time.sleep(3600)


def _solve_one(payload, solver, time_limit, threads, params) -> Solution:
    uid, candidates, target, cardinality, seed = payload
    _test_hang_hook(target)
    try:
        instance = Instance(candidates, target, cardinality)
        return solve(instance, solver=solver, time_limit=time_limit, seed=seed, threads=threads,
                     params=params)
    except Exception as exc:  # one bad instance must not take the chunk down
        return _failed(np.shape(candidates)[0], solver, f"{type(exc).__name__}: {exc}")


def _solve_chunk(payloads, solver, time_limit, threads, params) -> list[tuple[int, Solution]]:
    """Solve a chunk of ``(uid, candidates, target, cardinality, seed)`` payloads; pure and picklable.
    The backend's one-time start-up (:meth:`Backend.prepare`: numba kernels) runs first, like a solver
    import, outside every instance's clock (the watchdog's first-instance slack covers it)."""
    try:
        get_backend(solver).prepare()
    except Exception:  # an unknown / unavailable solver fails per instance below, with its message
        pass
    return [(p[0], _solve_one(p, solver, time_limit, threads, params)) for p in payloads]


def _solve_each(worker, payloads, common, kind=None):
    """Yield ``(uid, result)`` per payload: ``worker`` called on one payload at a time, an exception
    (from a custom worker; :func:`_solve_chunk` catches its own) becoming the kind's ``failed`` result."""
    kind = kind or INSTANCES
    for p in payloads:
        try:
            yield from worker([p], *common)
        except Exception as exc:
            yield p[0], kind.failed(p, common[0], f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------ work kinds
@dataclass(frozen=True)
class _Kind:
    """What the engine needs to know of one kind of work item (a payload is a tuple, ``payload[0]`` its
    uid): the result of an item that failed, one the watchdog stopped, one never started (``total_time``
    ran out), and which results a store keeps. Subset-sum instances (:func:`solve_many`) and general MILPs
    (:func:`solve_models`) share every other line of the engine."""
    failed: Callable  # (payload, solver label, message, seconds=0) -> result
    stopped: Callable  # (payload, solver label, message, seconds) -> result
    unstarted: Callable  # (payload, solver label, message) -> result
    keep: Callable  # result -> bool


def _instance_failed(p, solver, message, seconds=0.0) -> Solution:
    return _failed(np.shape(p[1])[0], solver, message, seconds)


def _instance_stopped(p, solver, message, seconds) -> Solution:
    return _stopped(np.shape(p[1])[0], solver, message, seconds)


def _instance_keep(sol: Solution) -> bool:
    return sol.status != Status.FAILED and not sol.extra.get("watchdog")


INSTANCES = _Kind(_instance_failed, _instance_stopped, _instance_failed, _instance_keep)


def _model_failed(p, solver, message, seconds=0.0):
    """A general MILP's ``failed`` Result (``p = (uid, model, solver, seed)``: its own solver, not the label)."""
    return general.Result("failed", None, -math.inf, math.inf, seconds, p[2], message=message)


def _model_stopped(p, solver, message, seconds):
    return general.Result("time_limit", None, -math.inf, math.inf, seconds, p[2], message=message,
                          extra={"watchdog": True})


def _model_unstarted(p, solver, message, seconds=0.0):
    return general.Result("not_solved", None, -math.inf, math.inf, 0.0, p[2], message=message)


def _model_keep(r) -> bool:
    return r.status not in ("failed", "not_solved") and not r.extra.get("watchdog")


MODELS = _Kind(_model_failed, _model_stopped, _model_unstarted, _model_keep)


# ------------------------------------------------------------- worker process (its own side)
#: First code a worker runs (``python -c``): the parent-death guard before anything slow, then
#: the parent's sys.path (so the same milp and a test module's worker function import), then the loop.
_BOOT = """\
import os, sys
parent = int(sys.argv[1])
if sys.platform.startswith("linux"):
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL: die with the batch process
    except Exception:
        pass
if os.getppid() != parent:  # the parent died before the guard was set
    os._exit(0)
import json
_parent_path = json.loads(sys.argv[4])
sys.path[:] = _parent_path + [p for p in sys.path if p not in _parent_path]
from milp.batch import _worker_main
_worker_main(parent, int(sys.argv[2]), int(sys.argv[3]))
"""


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None).prctl
    except Exception:  # pragma: no cover - no libc (not Linux)
        return None


def _watch_parent(parent: int) -> None:
    """Fallback guard: when the batch process is gone, kill this worker's whole process group."""
    while True:
        time.sleep(PARENT_POLL_INTERVAL)
        if os.getppid() != parent:
            try:
                if os.getpgrp() == os.getpid():
                    os.killpg(os.getpid(), signal.SIGKILL)
            finally:
                os._exit(1)


def _guard_subprocesses(prctl) -> None:
    """Make every subprocess this worker starts (CBC through PuLP) die with the worker too."""
    if prctl is None:
        return

    def pdeathsig():  # runs in the child between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    base = subprocess.Popen

    class GuardedPopen(base):
        def __init__(self, *args, **kwargs):
            if len(args) <= 6 and kwargs.get("preexec_fn") is None:
                kwargs["preexec_fn"] = pdeathsig
            super().__init__(*args, **kwargs)

    subprocess.Popen = GuardedPopen


def _worker_main(parent: int, fd_tasks: int, fd_results: int) -> None:
    """A worker process's loop: receive the worker function, then chunks; report every instance."""
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the batch process's to handle
    threading.Thread(target=_watch_parent, args=(parent,), name="slth-parent-watch", daemon=True).start()
    _guard_subprocesses(_libc_prctl())
    tasks, results = Connection(fd_tasks, writable=False), Connection(fd_results, readable=False)

    def leave(code: int = 0):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)

    try:
        worker, kind = pickle.loads(tasks.recv_bytes())
    except EOFError:
        leave()
    except BaseException:
        results.send(("fatal", traceback.format_exc()))
        leave(1)
    results.send(("ready", os.getpid()))
    while True:
        try:
            message = tasks.recv()
        except (EOFError, OSError):  # the batch process closed the pipe or is gone
            leave()
        if message is None:
            leave()
        common, payloads = message
        try:
            for uid, sol in _solve_each(worker, payloads, common, kind):
                results.send(("result", [(uid, sol)]))
            results.send(("done", None))
        except OSError:  # BrokenPipeError: the batch process is gone
            leave()


# ------------------------------------------------------------------------------- arguments
def _check_args(solver, n_jobs, chunk_size, backend, scheduler, params, dask_worker_timeout) -> None:
    if solver is not None:  # None: the caller checked its solvers itself (solve_models)
        if not isinstance(solver, str):
            raise ValueError(f"solver must be a solver name (str), got {solver!r}")
        get_backend(solver)  # SolverNotAvailable (a ValueError) naming the choices
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or (n_jobs < 1 and n_jobs != -1):
        raise ValueError(f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None (automatic), got {chunk_size!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if scheduler is not None and backend != "dask":
        raise ValueError(f"scheduler is only used with backend='dask' (got backend={backend!r})")
    if params is not None and not isinstance(params, dict):
        raise ValueError(f"params must be a dict or None, got {type(params).__name__}")
    if dask_worker_timeout is not None and (isinstance(dask_worker_timeout, bool)
                                            or not isinstance(dask_worker_timeout, (int, float))
                                            or not dask_worker_timeout >= 0):
        raise ValueError(f"dask_worker_timeout must be a non-negative number of seconds or None, "
                         f"got {dask_worker_timeout!r}")


def auto_chunk_size(n_todo: int, n_workers: int, solver: str, instances: Sequence[Instance] = (),
                    time_limit: float | None = None) -> int:
    """Chunk size when the caller gives none: about ``CHUNKS_PER_WORKER`` chunks per worker, capped
    at ``MAX_AUTO_CHUNK_FAST`` when the solver's backend is fast on every instance (``Backend.is_fast``)
    and ``MAX_AUTO_CHUNK_SLOW`` otherwise (MILP backends, unknown names), and with a time limit at
    ``MAX_CHUNK_SECONDS / time_limit`` (at least 1)."""
    cls = REGISTRY.get(solver)
    backend = cls() if cls is not None and cls.FAST else None
    fast = backend is not None and all(backend.is_fast(i) for i in instances)
    cap = MAX_AUTO_CHUNK_FAST if fast else MAX_AUTO_CHUNK_SLOW
    if time_limit:
        cap = min(cap, max(1, int(MAX_CHUNK_SECONDS // time_limit)))
    return max(1, min(cap, math.ceil(n_todo / (max(1, n_workers) * CHUNKS_PER_WORKER))))


# ----------------------------------------------------------------------------- shared state
def _warn(message: str) -> None:
    try:
        print(f"solve_many: {message}", file=sys.stderr, flush=True)
    except Exception:  # pragma: no cover - closed stderr
        pass


@dataclass
class _Task:
    """A chunk in flight: its payloads, the uids already reported, and whether it is a retry alone."""
    payloads: list
    isolated: bool = False
    done: set = field(default_factory=set)

    def remaining(self) -> list:
        return [p for p in self.payloads if p[0] not in self.done]


class _Sink:
    """Takes results as they arrive: fills ``results``, commits to the store promptly, moves the bar."""

    def __init__(self, results, db, keys, requests, bar, kind=None, on_result=None,
                 prepare: Callable | None = None):
        self.results, self.db, self.keys, self.requests, self.bar = results, db, keys, requests, bar
        self.kind = kind or INSTANCES  # which results the store keeps; the failed/stopped results of the runners
        self.on_result = on_result  # called (uid, result) as each result arrives
        self.prepare = prepare  # (uid, Solution) -> None, run before a result is kept and stored
        self.seen: set[int] = set()
        self.rows: list = []
        self.since = 0.0
        self.work = 0.0

    def add(self, pairs) -> None:
        fresh = 0
        for uid, sol in pairs:
            if uid in self.seen:
                continue
            self.seen.add(uid)
            if self.prepare is not None:
                self.prepare(uid, sol)
            self.results[uid] = sol
            fresh += 1
            if self.db is not None and self.kind.keep(sol):
                if not self.rows:
                    self.since = time.monotonic()
                self.rows.append((self.keys[uid], self.requests[uid], sol))
                self.work += max(0.0, float(sol.seconds or 0.0))
            if self.on_result is not None:
                self.on_result(uid, sol)
        if fresh:
            self.bar.update(fresh)
        if self.rows and self.work >= COMMIT_INTERVAL:
            self.flush()

    def tick(self) -> None:
        if self.rows and time.monotonic() - self.since >= COMMIT_INTERVAL:
            self.flush()

    def flush(self) -> None:
        rows, self.rows, self.work = self.rows, [], 0.0
        if rows:
            self.db.put_many(rows)

    def expire(self, queue: deque, solver: str, deadline: float | None) -> None:
        """Past ``deadline`` (``time.monotonic()``), the tasks still queued are never started: each of
        their items gets the kind's ``unstarted`` result (not stored). Items in progress finish."""
        if deadline is None or not queue or time.monotonic() < deadline:
            return
        msg = "not started: the batch's total_time had run out"
        while queue:
            self.add([(p[0], self.kind.unstarted(p, solver, msg)) for p in queue.popleft().remaining()])


def _budget(time_limit: float, first: bool) -> float:
    return WATCHDOG_FACTOR * time_limit + WATCHDOG_OVERHEAD + (WATCHDOG_SLACK if first else 0.0)


def _watchdog_message(elapsed: float, time_limit: float, first: bool, what: str) -> str:
    slack = f" + WATCHDOG_SLACK {WATCHDOG_SLACK:g} s" if first else ""
    return (f"stopped by the batch watchdog: no result after {elapsed:.1f} s (budget WATCHDOG_FACTOR "
            f"{WATCHDOG_FACTOR:g} x time_limit {time_limit:g} s + WATCHDOG_OVERHEAD {WATCHDOG_OVERHEAD:g} s"
            f"{slack}); {what}; the rest of the batch went on")


def _describe_exit(code) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# ------------------------------------------------------------------------ local worker pool
class _LocalWorker:
    """One worker process, its two pipes and the task it is running."""

    def __init__(self, worker_bytes: bytes, env: dict):
        from multiprocessing.connection import Connection

        task_r, task_w = os.pipe()
        res_r, res_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(os.getpid()), str(task_r), str(res_w), json.dumps(sys.path)],
                pass_fds=(task_r, res_w), stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        except BaseException:
            for fd in (task_r, task_w, res_r, res_w):
                os.close(fd)
            raise
        os.close(task_r)
        os.close(res_w)
        self.pid = self.proc.pid
        self.tasks = Connection(task_w, readable=False)
        self.results = Connection(res_r, writable=False)
        self.ready = False
        self.task: _Task | None = None
        self.started = self.progress = 0.0
        try:
            self.tasks.send_bytes(worker_bytes)  # small: a function pickled by reference (or by value)
        except OSError:  # it exited at once; reported when its first task cannot be sent
            pass

    def send(self, task: _Task, common: tuple) -> None:
        self.tasks.send((common, task.payloads))
        self.task = task
        self.started = self.progress = time.monotonic()

    def kill(self) -> int | None:
        """SIGKILL the worker's process group (the worker and any subprocess of it) and reap it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)  # still unreaped here, so the group id is still ours
            except (ProcessLookupError, PermissionError):
                pass
        code = self.proc.wait()
        self.close()
        return code

    def close(self) -> None:
        for conn in (self.tasks, self.results):
            try:
                conn.close()
            except OSError:
                pass


def _worker_env(n_workers: int) -> dict:
    env = dict(os.environ)
    per_worker = str(max(1, (os.cpu_count() or 1) // max(1, n_workers)))
    for var in _THREAD_VARS:
        env.setdefault(var, per_worker)
    return env


def _pickle_worker(worker: Callable) -> bytes:
    try:
        from joblib.externals import cloudpickle

        return cloudpickle.dumps(worker)  # by reference when importable, by value from __main__
    except ImportError:  # pragma: no cover - joblib is a dependency
        return pickle.dumps(worker)


def _run_local(n_workers: int, chunks: list[list], worker: Callable, common: tuple, sink: _Sink,
               time_limit: float | None, deadline: float | None = None) -> None:
    """Run ``chunks`` on ``n_workers`` worker processes with crash isolation and the watchdog; past
    ``deadline`` no further chunk starts (:meth:`_Sink.expire`)."""
    from multiprocessing.connection import wait

    solver, kind = common[0], sink.kind
    worker_bytes = _pickle_worker((worker, kind))
    env = _worker_env(n_workers)
    queue = deque(_Task(c) for c in chunks)
    workers: list[_LocalWorker] = []

    def requeue(task: _Task, culprit_first: bool) -> None:
        rest = task.remaining()[1:] if culprit_first else task.remaining()
        if rest:
            queue.appendleft(_Task(rest))

    def lost(w: _LocalWorker, code) -> None:
        """``w`` died: blame the instance it was on (retry alone once), requeue the rest of its chunk."""
        workers.remove(w)
        if not w.ready:
            raise BatchError(f"a worker process could not start ({_describe_exit(code)}); its error output is "
                             f"above. The batch stopped; results so far are kept")
        task = w.task
        if task is None or not task.remaining():
            return
        culprit = task.remaining()[0]
        requeue(task, culprit_first=True)
        if task.isolated:
            msg = (f"the worker process died while solving this instance ({_describe_exit(code)}), also when "
                   f"retried alone; the rest of the batch continued")
            _warn(f"instance {culprit[0]}: {msg}")
            sink.add([(culprit[0], kind.failed(culprit, solver, msg))])
        else:
            queue.appendleft(_Task([culprit], isolated=True))

    def hung(w: _LocalWorker, now: float) -> None:
        """``w`` is past its budget: its instance becomes time_limit, the worker is killed."""
        task = w.task
        first = not task.done
        w.kill()
        workers.remove(w)
        culprit = task.remaining()[0]
        requeue(task, culprit_first=True)
        msg = _watchdog_message(now - w.progress, time_limit, first,
                                f"its worker process (pid {w.pid}) was killed")
        _warn(f"instance {culprit[0]}: {msg}")
        sink.add([(culprit[0], kind.stopped(culprit, solver, msg, now - w.progress))])

    def read(w: _LocalWorker) -> None:
        while True:
            try:
                if not w.results.poll():
                    return
                kind, body = w.results.recv()
            except (EOFError, OSError):
                lost(w, w.kill())
                return
            if kind == "ready":
                w.ready = True
            elif kind == "result":
                w.task.done.update(uid for uid, _ in body)
                w.progress = time.monotonic()
                sink.add(body)
            elif kind == "done":
                w.task = None
                return
            elif kind == "fatal":
                w.kill()
                workers.remove(w)
                raise BatchError(f"a worker process could not load the worker function:\n{body}")

    try:
        while queue or any(w.task is not None for w in workers):
            sink.expire(queue, solver, deadline)
            for w in list(workers):  # idle workers take the next chunks
                if w.task is None and queue:
                    task = queue.popleft()
                    try:
                        w.send(task, common)
                    except OSError:  # it died while idle: nothing of this task ran
                        queue.appendleft(task)
                        workers.remove(w)
                        w.kill()
            spawned = []
            while len(workers) < n_workers and len(queue) > len(spawned):
                spawned.append(_LocalWorker(worker_bytes, env))  # all start at once, then take a chunk each
                workers.append(spawned[-1])
            for w in spawned:
                try:
                    w.send(queue.popleft(), common)
                except OSError:  # it exited at once: a start-up failure
                    workers.remove(w)
                    raise BatchError(f"a worker process could not start ({_describe_exit(w.kill())}); its error "
                                     f"output is above. The batch stopped; results so far are kept") from None
            busy = [w for w in workers if w.task is not None]
            timeout = _POLL
            if time_limit is not None and busy:
                soonest = min(w.progress + _budget(time_limit, not w.task.done) for w in busy)
                timeout = max(0.0, min(timeout, soonest - time.monotonic()))
            ready = wait([w.results for w in busy], timeout=timeout)
            for w in busy:
                if w.results in ready and w in workers:
                    read(w)
            if time_limit is not None:
                now = time.monotonic()
                for w in [w for w in workers if w.task is not None]:
                    if now > w.progress + _budget(time_limit, not w.task.done):
                        hung(w, now)
            sink.tick()
    finally:
        _shutdown(workers)


def _shutdown(workers: list[_LocalWorker], grace: float = 2.0) -> None:
    """Busy workers are killed; idle ones get end-of-file and exit (killed after ``grace`` s)."""
    for w in workers:
        if w.task is not None:
            w.kill()
        else:
            try:
                w.tasks.close()
            except OSError:
                pass
    deadline = time.monotonic() + grace
    for w in workers:
        try:
            w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        w.kill()


def _run_in_process(chunks: list[list], worker: Callable, common: tuple, sink: _Sink,
                    deadline: float | None = None) -> None:
    queue = deque(_Task([p]) for chunk in chunks for p in chunk)
    while queue:
        sink.expire(queue, common[0], deadline)
        if queue:
            for pair in _solve_each(worker, queue.popleft().payloads, common, sink.kind):
                sink.add([pair])
                sink.tick()


# ------------------------------------------------------------------------------------- dask
def _dask_chunk(worker, payloads, common):
    return worker(payloads, *common)


def _dask_client(scheduler):
    """(client, owned): a Client on ``scheduler`` (address or Client), or the current default client."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError("backend='dask' needs dask.distributed: pip install 'slth-milp[dask]' "
                          "(or pip install 'dask[distributed]')") from exc
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    if isinstance(scheduler, str):
        return distributed.Client(scheduler, set_as_default=False), True
    if scheduler is not None:
        raise ValueError(f"scheduler must be a Dask scheduler address such as 'tcp://10.0.0.1:8786' or a "
                         f"distributed.Client, got {type(scheduler).__name__}")
    try:
        return distributed.get_client(), False
    except ValueError as exc:
        raise ValueError("backend='dask' needs a cluster: pass scheduler='tcp://HOST:8786' (CLI: --scheduler "
                         "ADDRESS) or create a distributed.Client first") from exc


def _dask_threads(client) -> int:
    try:
        return int(sum(client.nthreads().values()))
    except Exception:  # the scheduler is unreachable right now: count as no workers
        return 0


def _no_workers(client, timeout: float, during: bool) -> NoDaskWorkersError:
    where = getattr(getattr(client, "scheduler", None), "address", None) or "the scheduler"
    when = "during the batch, all workers were lost and none came back" if during else "no worker joined"
    return NoDaskWorkersError(
        f"the Dask cluster at {where} has no workers: {when} within {timeout:g} s (dask_worker_timeout; default "
        f"milp.batch.DASK_NO_WORKER_TIMEOUT = {DASK_NO_WORKER_TIMEOUT:g} s). Start workers (dask worker {where}) "
        f"or pass a larger dask_worker_timeout; results solved so far are kept in the store")


def _wait_for_dask_workers(client, timeout: float) -> int:
    """Total worker threads, after waiting up to ``timeout`` seconds for at least one worker."""
    deadline = time.monotonic() + timeout
    while True:
        threads = _dask_threads(client)
        if threads > 0:
            return threads
        if time.monotonic() >= deadline:
            raise _no_workers(client, timeout, during=False)
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _run_dask(client, chunks: list[list], worker: Callable, common: tuple, sink: _Sink,
              time_limit: float | None, no_worker_timeout: float, deadline: float | None = None) -> None:
    import distributed
    from distributed.scheduler import KilledWorker

    solver, kind = common[0], sink.kind
    queue = deque(_Task(c) for c in chunks)
    inflight: dict = {}  # future -> [task, worker address or None, start time]
    threads = _wait_for_dask_workers(client, no_worker_timeout)
    checked = time.monotonic()
    empty_since = None

    def failed_task(task: _Task, exc: BaseException) -> None:
        text = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, KilledWorker):
            msg = f"the worker process died while solving this instance ({type(exc).__name__}: {text})"
        else:
            msg = f"the Dask task failed on this instance ({type(exc).__name__}: {text})"
        if not task.isolated:
            for p in task.payloads[::-1]:  # retry one instance per task; the one that fails again is failed
                queue.appendleft(_Task([p], isolated=True))
            return
        p = task.payloads[0]
        _warn(f"instance {p[0]}: {msg}")
        sink.add([(p[0], kind.failed(p, solver, f"{msg}; the rest of the batch continued"))])

    def stuck(fut, task: _Task, address: str, elapsed: float) -> None:
        client.cancel([fut], force=True)
        what = f"its Dask task was cancelled and worker {address} restarted"
        try:
            client.restart_workers([address], timeout=max(30.0, no_worker_timeout))
        except Exception as exc:  # no nanny, or the restart failed: the thread stays busy there
            what = (f"its Dask task was cancelled; restarting worker {address} failed ({type(exc).__name__}: "
                    f"{exc}), so that worker thread may stay busy")
        if len(task.payloads) > 1:
            _warn(f"a chunk of {len(task.payloads)} instances ran past the watchdog budget on {address}; "
                  f"rerunning its instances one per task")
            for p in task.payloads[::-1]:
                queue.appendleft(_Task([p], isolated=True))
            return
        p = task.payloads[0]
        msg = _watchdog_message(elapsed, time_limit, True, what)
        _warn(f"instance {p[0]}: {msg}")
        sink.add([(p[0], kind.stopped(p, solver, msg, elapsed))])

    try:
        while queue or inflight:
            now = time.monotonic()
            if now - checked >= 1.0:  # at most one worker-count query per second
                checked, threads = now, _dask_threads(client)
                if threads == 0:
                    empty_since = empty_since or now
                    if now - empty_since >= no_worker_timeout:
                        raise _no_workers(client, no_worker_timeout, during=True)
                else:
                    empty_since = None
            # A retry alone runs with nothing else in flight: when a worker dies, Dask blames every task
            # assigned to it, so an innocent task next to a crashing one could be failed too.
            # With the watchdog, no more tasks than threads: a task waiting on a worker behind another
            # one already counts as processing there, and must not be timed while it waits.
            cap = max(1, threads) * (1 if time_limit is not None else 2)
            sink.expire(queue, solver, deadline)
            alone = any(state[0].isolated for state in inflight.values())
            while queue and not alone and len(inflight) < cap:
                if queue[0].isolated and inflight:
                    break
                task = queue.popleft()
                alone = task.isolated
                fut = client.submit(_dask_chunk, worker, task.payloads, common, pure=False)
                inflight[fut] = [task, None, None]
            try:
                distributed.wait(list(inflight), timeout=_POLL, return_when="FIRST_COMPLETED")
            except Exception:  # TimeoutError: nothing finished within _POLL
                pass
            for fut, (task, _, _) in list(inflight.items()):
                status = fut.status  # "lost" is not final: Dask recomputes the task elsewhere
                if status == "finished":
                    del inflight[fut]
                    try:
                        sink.add(fut.result(timeout=60))
                    except Exception as exc:  # its data was lost between done and result
                        failed_task(task, exc)
                elif status in ("error", "cancelled"):
                    del inflight[fut]
                    try:
                        exc = fut.exception(timeout=60)
                    except (Exception, asyncio.CancelledError) as e:  # CancelledError, TimeoutError
                        exc = e
                    failed_task(task, exc if exc is not None else RuntimeError(f"Dask future {status}"))
            if time_limit is not None and inflight:
                try:
                    processing = client.processing()
                except Exception:
                    processing = {}
                where = {key: addr for addr, keys in processing.items() for key in keys}
                now = time.monotonic()
                for fut, state in list(inflight.items()):
                    address = where.get(fut.key)
                    if address is None:
                        continue
                    if state[1] != address:  # started (again) on this worker
                        state[1], state[2] = address, now
                    task = state[0]
                    budget = len(task.payloads) * _budget(time_limit, False) + WATCHDOG_SLACK
                    if now - state[2] > budget:
                        del inflight[fut]
                        stuck(fut, task, address, now - state[2])
            sink.tick()
    finally:
        if inflight:
            try:
                client.cancel(list(inflight), force=True)
            except Exception:
                pass


# ------------------------------------------------------------------------------ solve_many
def solve_many(instances: Sequence[Instance], solver: str = "auto", n_jobs: int = 1, store=None,
               time_limit: float | None = None, seed: int = 0, threads: int = 1, chunk_size: int | None = None,
               backend: str = "loky", scheduler=None, progress: bool = True, params: dict | None = None,
               dask_worker_timeout: float | None = None, bounds: bool = False,
               _worker: Callable = _solve_chunk) -> list[Solution]:
    """Solve many instances in parallel; results in input order.

    Args:
        instances: a sequence of :class:`milp.Instance`.
        solver, time_limit, threads, params: as in :func:`milp.solve` (the time limit is per instance).
            With a time limit, a watchdog stops an instance that runs far past it (module docstring).
        seed: batch seed; instance i is solved with ``instance_seed(seed, instances[i].content_hash())``.
        n_jobs: worker processes (``-1`` = all cores; ``1`` = in this process, or one worker process
            when ``time_limit`` is set). Ignored with Dask, where the cluster's cores decide.
        store: None, a path to an SQLite store file, or an open :class:`milp.store.SolutionStore`.
            Results are committed as they arrive (within ``COMMIT_INTERVAL`` s); those already
            stored are not solved again.
        chunk_size: instances per task; None chooses it (:func:`auto_chunk_size`). Results do not
            depend on it.
        backend: ``"loky"`` (local worker processes) or ``"dask"`` (a ``distributed`` cluster).
        scheduler: with ``backend="dask"``: a scheduler address (``"tcp://host:8786"``) or a
            ``distributed.Client``; None uses the current default client.
        progress: show a tqdm bar (rate and ETA) on stderr.
        dask_worker_timeout: with Dask, seconds to wait for a worker when the cluster has none
            (None: ``DASK_NO_WORKER_TIMEOUT``), then :class:`NoDaskWorkersError`.
        bounds: as in :func:`milp.solve`: each distinct instance's own lower bound
            (:func:`milp.bounds.instance_bounds`), computed here in this process, once per instance, before
            the solves start and outside every time limit (skipped for stored solutions that have one),
            then recorded on every Solution returned, and in the store for the solves made now (rows
            already stored are not rewritten). Every Solution gets ``floor`` and the bound its own solve
            proves in any case (rows stored before these fields existed: None unless ``bounds``).

    Returns:
        One :class:`milp.Solution` per instance, in input order; duplicates get equal copies.
    """
    instances = list(instances)
    for i, inst in enumerate(instances):
        if not isinstance(inst, Instance):
            raise TypeError(f"instances[{i}] must be a milp.Instance, got {type(inst).__name__}")
    _check_args(solver, n_jobs, chunk_size, backend, scheduler, params, dask_worker_timeout)
    check_options(time_limit, seed, threads)
    params = dict(params or {})
    time_limit = None if time_limit is None else float(time_limit)  # 10 and 10.0 share store keys
    if not instances:
        return []

    # identity: one uid per distinct instance, its seed and its store key
    hashes = [inst.content_hash() for inst in instances]
    uids, firsts = _distinct(hashes)
    seeds = [instance_seed(seed, hashes[i]) for i in firsts]
    requests = [make_request(hashes[i], solver, SolveOptions(time_limit=time_limit, seed=s, threads=int(threads),
                                                             params=params).key())
                for i, s in zip(firsts, seeds)]
    keys = [request_key(r) for r in requests]

    own_store = store is not None and not isinstance(store, SolutionStore)
    db = SolutionStore(store) if own_store else store
    try:
        results: list[Solution | None] = [None] * len(firsts)
        if db is not None:
            cached = _stored(db, keys, [instances[i] for i in firsts])
            for uid, key in enumerate(keys):
                results[uid] = cached.get(key)
        todo = [uid for uid, r in enumerate(results) if r is None]
        prepare = _bounds_step(instances, firsts, results, progress) if bounds else None
        if prepare is not None:
            for uid, r in enumerate(results):
                if r is not None:
                    prepare(uid, r)

        if todo:
            if db is not None and hasattr(db, "check_writable"):
                db.check_writable(len(todo))  # no work that could not be kept
            timeout = DASK_NO_WORKER_TIMEOUT if dask_worker_timeout is None else float(dask_worker_timeout)
            _run(todo, firsts, seeds, instances, results, keys, requests, db, solver, n_jobs, chunk_size,
                 backend, scheduler, progress, (solver, time_limit, int(threads), params), _worker,
                 cached=len(firsts) - len(todo), no_worker_timeout=timeout, prepare=prepare)
    finally:
        if own_store:
            db.close()

    return _in_order(uids, results, lambda sol: replace(sol, mask=sol.mask.copy(), extra=dict(sol.extra)))


def _distinct(identities: list) -> tuple[list[int], list[int]]:
    """``(uids, firsts)``: the uid of every item (one per distinct identity, numbered in order of first
    appearance) and the index of each uid's first item. Identical items are solved once."""
    uid_of: dict = {}
    uids: list[int] = []
    firsts: list[int] = []
    for i, identity in enumerate(identities):
        if identity not in uid_of:
            uid_of[identity] = len(firsts)
            firsts.append(i)
        uids.append(uid_of[identity])
    return uids, firsts


def _in_order(uids: list[int], results: list, copy: Callable) -> list:
    """One result per item, in input order; an item repeating an earlier one gets ``copy(result)``."""
    out, seen = [], set()
    for uid in uids:
        out.append(results[uid] if uid not in seen else copy(results[uid]))
        seen.add(uid)
    return out


def _bounds_step(instances, firsts, results, progress) -> Callable:
    """``solve_many(bounds=True)``: the instance bounds of every distinct instance whose stored solution
    lacks them, computed now (one process, outside every time limit); returns the step that records them
    on a Solution (:func:`milp.bounds.apply_bounds`)."""
    from tqdm.auto import tqdm

    from .bounds import apply_bounds, counting_floor, instance_bounds

    known = {}
    need = []
    for uid, r in enumerate(results):
        if r is not None and r.extra.get("lower_bound_source") in ("exact", "lp") and r.lower_bound is not None:
            known[uid] = {"lower_bound": r.lower_bound, "lower_bound_source": r.extra["lower_bound_source"],
                          "floor": r.floor if r.floor is not None else counting_floor(instances[firsts[uid]])}
        else:
            need.append(uid)
    for uid in tqdm(need, unit="inst", desc="solve_many[bounds]", disable=None if progress else True,
                    dynamic_ncols=True):
        known[uid] = instance_bounds(instances[firsts[uid]])

    def prepare(uid: int, sol: Solution) -> None:  # an instance's bound holds whatever its solve did
        apply_bounds(instances[firsts[uid]], sol, known[uid])

    return prepare


def _stored(db, keys, instances) -> dict:
    """Stored solutions of ``keys``, checked against their instances when the store can do that."""
    try:
        return db.get_many(keys, instances)
    except TypeError:  # a store without instance checks
        return db.get_many(keys)


def _run(todo, firsts, seeds, instances, results, keys, requests, db, solver, n_jobs, chunk_size, backend,
         scheduler, progress, common, worker, cached, no_worker_timeout, prepare=None) -> None:
    time_limit = common[1]
    payloads = []
    for uid in todo:
        inst = instances[firsts[uid]]
        payloads.append((uid, inst.candidates, inst.target, inst.cardinality, seeds[uid]))

    def size(n_workers: int) -> int:
        return chunk_size or auto_chunk_size(len(todo), n_workers, solver, [instances[firsts[u]] for u in todo],
                                             time_limit=time_limit)

    _execute(payloads, _Sink(results, db, keys, requests, None, prepare=prepare), n_jobs, size, backend, scheduler, progress,
             common, worker, cached, no_worker_timeout, desc=f"solve_many[{solver}]", unit="inst")


def _execute(payloads, sink, n_jobs, size, backend, scheduler, progress, common, worker, cached,
             no_worker_timeout, desc, unit, deadline=None) -> None:
    """Run ``payloads`` in chunks of ``size(n_workers)`` on the chosen runner, results into ``sink`` (the
    one dispatch of :func:`solve_many` and :func:`solve_models`)."""
    from tqdm.auto import tqdm

    time_limit = common[1]
    client = own_client = None
    if backend == "dask":
        client, own_client = _dask_client(scheduler)
    try:
        if backend == "dask":
            n_workers = max(1, _wait_for_dask_workers(client, no_worker_timeout))
        else:
            import joblib

            n_workers = joblib.effective_n_jobs(n_jobs)
        step = size(n_workers)
        chunks = [payloads[s:s + step] for s in range(0, len(payloads), step)]
        bar = tqdm(total=len(payloads), unit=unit, desc=desc, disable=None if progress else True,  # None: tqdm stays silent when stderr is not a terminal
                   dynamic_ncols=True, smoothing=0.1)
        if cached:
            bar.set_postfix_str(f"{cached} from store", refresh=False)
        sink.bar = bar
        try:
            if backend == "dask":
                _run_dask(client, chunks, worker, common, sink, time_limit, no_worker_timeout, deadline)
            elif n_workers == 1 and time_limit is None:
                _run_in_process(chunks, worker, common, sink, deadline)
            else:
                _run_local(min(n_workers, len(chunks)), chunks, worker, common, sink, time_limit, deadline)
        finally:
            try:
                sink.flush()  # whatever happened, what was solved is kept
            finally:
                bar.close()
    finally:
        if own_client:
            client.close()


# ---------------------------------------------------------------------------- solve_models
def _solve_model_one(payload, time_limit, threads):
    uid, model, solver, seed = payload
    _test_hang_hook(model.ub[:1])  # test-only: a model whose first variable's upper bound is the hang value
    try:
        return general.solve(model, solver, time_limit=time_limit, threads=threads, seed=seed)
    except Exception as exc:  # one bad model must not take the chunk down
        return _model_failed(payload, solver, f"{type(exc).__name__}: {exc}")


def _solve_model_chunk(payloads, label, time_limit, threads) -> list:
    """Solve a chunk of ``(uid, model, solver, seed)`` payloads by :func:`milp.general.solve`; pure and picklable."""
    return [(p[0], _solve_model_one(p, time_limit, threads)) for p in payloads]


def model_request(model_hash: str, solver: str, time_limit: float | None, seed: int, threads: int) -> dict:
    """What a result-store key of one general MILP solve hashes: the model, the solver and its library
    version, the options that can change the result, and :data:`milp.general.REVISION`."""
    from . import __version__

    return {"model": model_hash, "solver": solver, "options": {"time_limit": time_limit, "seed": int(seed),
            "threads": int(threads)}, "milp": __version__, "revision": f"general{general.REVISION}",
            "library": general.solver_versions(solver)}


def solve_models(models: Sequence, solver="highs", n_jobs: int = 1, store=None, time_limit: float | None = None,
                 seed: int = 0, threads: int = 1, chunk_size: int | None = None, backend: str = "loky",
                 scheduler=None, progress: bool = True, total_time: float | None = None,
                 dask_worker_timeout: float | None = None, on_result: Callable | None = None,
                 _worker: Callable = _solve_model_chunk) -> list:
    """Solve general MILPs (:class:`milp.general.Model`) on the engine of :func:`solve_many`: the same
    worker processes, watchdog, kill guarantees, crash isolation, Dask runner and progress bar (module
    docstring); results in input order as :class:`milp.general.Result`.

    Args:
        models: a sequence of :class:`milp.general.Model`.
        solver: a :data:`milp.general.SOLVERS` name, or a sequence of them aligned with ``models`` (e.g. the
            same model twice, with two solvers, to confirm one by the other).
        time_limit, threads: per solve, as in :func:`milp.general.solve`. With a time limit the watchdog
            stops a solve that runs far past it: its Result is ``time_limit`` with no point and an infinite
            dual bound (``extra["watchdog"] = True``), never a bound or an optimum.
        seed: batch seed; model i is solved with ``instance_seed(seed, models[i].content_hash())``.
        n_jobs, chunk_size, backend, scheduler, progress, dask_worker_timeout: as in :func:`solve_many`.
        store: None, a path to an SQLite file or an open :class:`milp.store.ResultStore`: Results are kept
            as JSON under the hash of (model, solver, library version, options); a rerun reuses them (a
            stored point is re-checked against its model on reading) and solves only the rest. ``failed``,
            watchdog and ``not_solved`` Results are not stored.
        total_time: seconds for the whole batch: past it no further solve starts, the rest get Results
            ``not_solved`` (no point, infinite dual bound); solves in progress finish (within their limit).
        on_result: called ``on_result(i, result)`` for every model index i as its Result is known (stored ones
            first, then as solves finish), e.g. for progress lines.

    Identical (model, solver) pairs are solved once; the caller must still re-evaluate what a point means
    (a Result's ``x`` is checked against the model's rows and bounds, nothing more)."""
    t0 = time.monotonic()
    models = list(models)
    solvers = [solver] * len(models) if isinstance(solver, str) else list(solver)
    if len(solvers) != len(models):
        raise ValueError(f"solver: got {len(solvers)} solver names for {len(models)} models")
    for i, (m, s) in enumerate(zip(models, solvers)):
        if not isinstance(m, general.Model):
            raise TypeError(f"models[{i}] must be a milp.general.Model, got {type(m).__name__}")
        if s not in general.SOLVERS:
            raise ValueError(f"solver: expected one of {', '.join(general.SOLVERS)}, got {s!r}")
        if s not in general.available():
            raise ValueError(f"solver: {s} is not installed here (available: {', '.join(general.available())})")
    _check_args(None, n_jobs, chunk_size, backend, scheduler, None, dask_worker_timeout)
    check_options(time_limit, seed, threads)
    if total_time is not None and not (isinstance(total_time, (int, float)) and total_time >= 0):
        raise ValueError(f"total_time must be a non-negative number of seconds or None, got {total_time!r}")
    time_limit = None if time_limit is None else float(time_limit)
    if not models:
        return []

    hashes = [m.content_hash() for m in models]
    uids, firsts = _distinct(list(zip(hashes, solvers)))
    seeds = [instance_seed(seed, hashes[i]) for i in firsts]
    requests = [model_request(hashes[i], solvers[i], time_limit, s, threads) for i, s in zip(firsts, seeds)]
    keys = [request_key(r) for r in requests]
    users: dict[int, list[int]] = {}
    for i, uid in enumerate(uids):
        users.setdefault(uid, []).append(i)

    def report(uid, result) -> None:
        if on_result is not None:
            for i in users[uid]:
                on_result(i, result)

    own_store = store is not None and not isinstance(store, ResultStore)
    db = ResultStore(store) if own_store else store
    try:
        results: list = [None] * len(firsts)
        if db is not None:
            cached = db.get_many(keys, [models[i] for i in firsts])
            for uid, key in enumerate(keys):
                results[uid] = cached.get(key)
                if results[uid] is not None:
                    report(uid, results[uid])
        todo = [uid for uid, r in enumerate(results) if r is None]
        if todo:
            if db is not None:
                db.check_writable(len(todo))
            payloads = [(uid, models[firsts[uid]], solvers[firsts[uid]], seeds[uid]) for uid in todo]
            label = "+".join(dict.fromkeys(solvers[firsts[u]] for u in todo))
            timeout = DASK_NO_WORKER_TIMEOUT if dask_worker_timeout is None else float(dask_worker_timeout)

            def size(n_workers: int) -> int:
                return chunk_size or auto_chunk_size(len(todo), n_workers, "milp", time_limit=time_limit)

            _execute(payloads, _Sink(results, db, keys, requests, None, MODELS, report), n_jobs, size, backend,
                     scheduler, progress, (label, time_limit, int(threads)), _worker, len(firsts) - len(todo),
                     timeout, desc=f"solve_models[{label}]", unit="milp",
                     deadline=None if total_time is None else t0 + float(total_time))
    finally:
        if own_store:
            db.close()
    return _in_order(uids, results, lambda r: replace(r, x=None if r.x is None else r.x.copy(), extra=dict(r.extra)))


# ---------------------------------------------------------------------------------- loading
INSTANCE_SUFFIXES = (".npz", ".json")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, InstanceError) and text else f"{type(exc).__name__}: {text}"


def _load_file(f: Path) -> list[tuple[str, Instance | None, str | None]]:
    """``(name, instance, None)`` per instance of file ``f``, or ``(name, None, reason)`` for what fails."""
    if f.suffix == ".json":
        try:
            data = json.loads(f.read_text())
        except (ValueError, OSError, RecursionError, MemoryError) as exc:  # RecursionError: absurdly deep nesting
            return [(f.name, None, f"{f}: cannot read instance JSON ({_reason(exc)})")]
        if isinstance(data, list):
            out = []
            for i, item in enumerate(data):
                try:
                    out.append((f"{f.name}[{i}]", Instance.from_dict(item), None))
                except Exception as exc:
                    out.append((f"{f.name}[{i}]", None, f"{f}[{i}]: {_reason(exc)}"))
            return out
    try:
        return [(f.name, Instance.load(f), None)]
    except Exception as exc:  # BadZipFile, ValueError, OSError, EOFError, ...: reported, never fatal for a folder
        reason = _reason(exc)
        return [(f.name, None, reason if str(f) in reason else f"{f}: {reason}")]


def load_instances(path, strict: bool = False, return_skipped: bool = False):
    """Instances from a ``.npz``/``.json`` file or a folder of them (sorted by file name).

    A ``.json`` file may hold one instance or a list of them (named ``file.json[i]``).

    A file given directly that cannot be loaded raises :class:`milp.InstanceError` naming the file
    and the reason (:class:`FileNotFoundError` when it does not exist). In a folder, a file (or an
    entry of a JSON list) that cannot be loaded - truncated or corrupt ``.npz``, bad JSON, invalid
    data, unreadable - is reported as one warning line on stderr naming it and the reason, and
    skipped; the others are loaded. ``strict=True`` raises instead, on the first bad file. A folder
    whose every file is bad raises :class:`milp.InstanceError`.

    Returns ``(names, instances)``, or ``(names, instances, skipped)`` with ``return_skipped=True``,
    ``skipped`` being ``[(name, reason), ...]``.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in INSTANCE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no .npz or .json instance files in folder {path}")
        folder = True
    elif path.is_file():
        files, folder = [path], False
    else:
        raise FileNotFoundError(f"instance file or folder not found: {path}")
    names, instances, skipped = [], [], []
    for f in files:
        for name, inst, reason in _load_file(f):
            if inst is not None:
                names.append(name)
                instances.append(inst)
            elif strict or not folder:
                raise InstanceError(reason)
            else:
                skipped.append((name, reason))
                print(f"warning: skipped instance {name}: {reason}", file=sys.stderr, flush=True)
    if not instances and skipped:
        first = skipped[0][1]
        raise InstanceError(f"no instance could be loaded from {path}: {len(skipped)} skipped (first: {first})")
    return (names, instances, skipped) if return_skipped else (names, instances)
