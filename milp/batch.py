"""``solve_many``: thousands of small solves on joblib process workers (or a Dask cluster), resumable.

Design (after joblib's own conventions):
- The unit of work is the pure top-level function :func:`_solve_chunk` over picklable arrays; a chunk
  groups several instances so that millisecond solves do not each pay a process round trip.
- Every instance is solved with its own seed, :func:`instance_seed` ``(seed, content hash)``; it
  depends neither on its position, nor on the chunking, nor on ``n_jobs``, so results are identical
  however the batch is split.
- Identical instances are solved once. With a store (:class:`milp.store.SolutionStore`) every chunk's
  results are committed in one transaction as it arrives, and instances already in the store are not
  solved again: a batch killed at any moment resumes where it stopped.
- An exception in one solve becomes a ``failed`` Solution with the reason; a worker *process* that
  dies (segfault, ``os._exit``, out of memory) is detected (loky ``TerminatedWorkerError`` / Dask
  ``KilledWorker``), its in-flight instances are rerun one at a time, and the one that kills its
  worker again is marked ``failed``. The rest of the batch continues. Failed results are returned but
  not stored, so a rerun tries them again.
- ``backend="dask"`` runs the same chunks through joblib's Dask backend on a ``distributed`` cluster.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .api import check_options, solve
from .backends import REGISTRY, SolveOptions, get_backend
from .instance import Instance, InstanceError
from .solution import Solution, Status
from .store import SolutionStore, make_request, request_key

__all__ = ["solve_many", "load_instances", "instance_seed", "auto_chunk_size"]

BACKENDS = ("loky", "dask")
#: Auto chunking: aim at this many chunks per worker, so that the last chunks balance the load
#: (a straggler costs at most ~1/8 of a worker's share) and progress/commits arrive regularly.
CHUNKS_PER_WORKER = 8
#: Largest automatic chunk for fast solvers (``Backend.is_fast``: exact at n <= 34 takes ~1-20 ms,
#: heuristic at n = 30 ~2 ms, auto on the instances it sends to exact). A loky round trip costs
#: ~0.5 ms per task here (pickling, pipe, result); 64 exact solves at n = 30 take ~0.3 s, so the
#: overhead is negligible and a killed job loses at most ~0.3 s of work per worker. Measured with
#: scripts/bench_batch.py (2572 instances, n = 30, 2 workers, idle machine): chunks of 16 / 64 / 128
#: take 6.1 / 6.0 / 5.9 s, chunks of 1 6.7 s.
MAX_AUTO_CHUNK_FAST = 64
#: Largest automatic chunk for MILP solvers (tens of ms to seconds each): the round trip is
#: negligible, so small chunks give the best balance, the finest progress and prompt commits.
MAX_AUTO_CHUNK_SLOW = 2


# ----------------------------------------------------------------------------------- seeds
def instance_seed(seed: int, content_hash: str) -> int:
    """The solver seed of one instance: a function of the batch seed and the instance only."""
    digest = hashlib.sha256(f"slth-seed:{int(seed)}:{content_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2 ** 31


# ---------------------------------------------------------------------------------- worker
def _failed(n: int, solver: str, message: str, seconds: float = 0.0) -> Solution:
    return Solution(mask=np.zeros(n, dtype=np.uint8), error=float("inf"), status=Status.FAILED,
                    solver=solver, seconds=seconds, message=message)


def _solve_one(payload, solver, time_limit, threads, params) -> Solution:
    uid, candidates, target, cardinality, seed = payload
    try:
        instance = Instance(candidates, target, cardinality)
        return solve(instance, solver=solver, time_limit=time_limit, seed=seed, threads=threads,
                     params=params)
    except Exception as exc:  # one bad instance must not take the chunk down
        return _failed(np.shape(candidates)[0], solver, f"{type(exc).__name__}: {exc}")


def _solve_chunk(payloads, solver, time_limit, threads, params) -> list[tuple[int, Solution]]:
    """Solve a chunk of ``(uid, candidates, target, cardinality, seed)`` payloads; pure and picklable."""
    return [(p[0], _solve_one(p, solver, time_limit, threads, params)) for p in payloads]


# ------------------------------------------------------------------------------- arguments
def _check_args(solver, n_jobs, chunk_size, backend, scheduler, params) -> None:
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


def auto_chunk_size(n_todo: int, n_workers: int, solver: str, instances: Sequence[Instance] = ()) -> int:
    """Chunk size when the caller gives none: about ``CHUNKS_PER_WORKER`` chunks per worker, capped
    at ``MAX_AUTO_CHUNK_FAST`` when the solver's backend is fast on every instance (``Backend.is_fast``)
    and ``MAX_AUTO_CHUNK_SLOW`` otherwise (MILP backends, unknown names)."""
    cls = REGISTRY.get(solver)
    backend = cls() if cls is not None and cls.FAST else None
    fast = backend is not None and all(backend.is_fast(i) for i in instances)
    cap = MAX_AUTO_CHUNK_FAST if fast else MAX_AUTO_CHUNK_SLOW
    return max(1, min(cap, math.ceil(n_todo / (max(1, n_workers) * CHUNKS_PER_WORKER))))


# ---------------------------------------------------------------------------------- runner
class _Runner:
    """Runs chunks on a joblib backend and survives worker deaths; ``on_result`` gets each chunk."""

    def __init__(self, backend: str, n_jobs: int, scheduler, worker: Callable, common: tuple):
        self.backend, self.n_jobs, self.scheduler = backend, n_jobs, scheduler
        self.worker, self.common = worker, common
        self._client = self._own_client = None

    # -- backend set-up
    def __enter__(self):
        if self.backend == "dask":
            self._client, self._own_client = _dask_client(self.scheduler)
        return self

    def __exit__(self, *exc):
        if self._own_client:
            self._client.close()

    def n_workers(self) -> int:
        if self.backend == "dask":
            return max(1, sum(self._client.ncores().values()))
        import joblib

        return joblib.effective_n_jobs(self.n_jobs)

    def _parallel(self):
        import joblib

        if self.backend == "dask":
            config, n_jobs = joblib.parallel_config(backend=_dask_backend(self._client)), -1
        else:
            config, n_jobs = joblib.parallel_config(backend="loky"), self.n_jobs
        return config, joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1,
                                       pre_dispatch="2*n_jobs")

    def _worker_death_types(self) -> tuple:
        # loky: TerminatedWorkerError (a worker died) and other BrokenProcessPool errors (a task that
        # cannot be unpickled); dask: KilledWorker (the task's worker died on every retry).
        from joblib.externals.loky.process_executor import BrokenProcessPool

        types = [BrokenProcessPool]
        if self.backend == "dask":
            from distributed.scheduler import KilledWorker

            types.append(KilledWorker)
        return tuple(types)

    # -- running
    def run(self, chunks: list[list], on_result: Callable[[list], None]) -> None:
        """Run every chunk; a worker death reruns the chunks it may have hit, one instance at a time."""
        import joblib

        deaths = self._worker_death_types()
        pending = list(range(len(chunks)))
        while pending:
            consumed: list[int] = []
            finished: set[int] = set()

            def tasks():
                for ci in pending:
                    consumed.append(ci)  # joblib takes tasks lazily: consumed = dispatched or about to be
                    yield joblib.delayed(_tagged)(ci, self.worker, chunks[ci], *self.common)

            config, parallel = self._parallel()
            try:
                with config:
                    for ci, results in parallel(tasks()):
                        finished.add(ci)
                        on_result(results)
                return
            except deaths:
                suspects = [ci for ci in consumed if ci not in finished]
                for ci in suspects:
                    for payload in chunks[ci]:
                        self._isolate(payload, on_result, deaths)
                done = finished | set(suspects)
                pending = [ci for ci in pending if ci not in done]

    def _isolate(self, payload, on_result, deaths) -> None:
        """Solve one instance alone on a worker process; if the worker dies, it is this instance's fault."""
        import joblib

        config, parallel = self._parallel()
        try:
            with config:
                for _, results in parallel([joblib.delayed(_tagged)(-1, self.worker, [payload], *self.common)]):
                    on_result(results)
        except deaths as exc:
            solver = self.common[0]
            msg = (f"the worker process died while solving this instance ({type(exc).__name__}: "
                   f"{str(exc).splitlines()[0] if str(exc) else ''}); the rest of the batch continued")
            on_result([(payload[0], _failed(np.shape(payload[1])[0], solver, msg))])


def _tagged(ci, worker, payloads, *common):
    return ci, worker(payloads, *common)


def _dask_backend(client):
    """joblib's Dask backend, passing Dask-level task errors on to joblib.

    joblib 1.6's ``DaskDistributedBackend`` reports a task's outcome to ``Parallel`` only when the
    task returns: when Dask itself fails a task (``KilledWorker``: its worker process died on every
    retry) the future gets the exception but ``Parallel`` waits for it forever. This subclass calls
    joblib's completion callback with that exception, so it is raised like any task error.

    It also never reports fewer than 2 jobs: ``Parallel`` runs everything *sequentially in the
    calling process* when the backend's effective n_jobs is 1, which the Dask backend returns for a
    cluster with one single-threaded worker, or while a dead worker is being restarted. Then a chunk
    that kills its process would kill the client (seen as a flaky test: the worker-death test
    killed pytest). Dask places the tasks on its workers whatever this number is.
    """
    from joblib._dask import DaskDistributedBackend

    class _ReportingDaskBackend(DaskDistributedBackend):
        def effective_n_jobs(self, n_jobs):
            return max(2, super().effective_n_jobs(n_jobs))

        def submit(self, func, callback=None):
            future = super().submit(func, callback)

            def report_failure(f):
                if callback is not None and not f.cancelled() and f.exception() is not None:
                    callback(f.exception())  # joblib's callback raises it into Parallel's outputs

            future.add_done_callback(report_failure)
            return future

    return _ReportingDaskBackend(client=client)


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


# ------------------------------------------------------------------------------ solve_many
def solve_many(instances: Sequence[Instance], solver: str = "auto", n_jobs: int = 1, store=None,
               time_limit: float | None = None, seed: int = 0, threads: int = 1, chunk_size: int | None = None,
               backend: str = "loky", scheduler=None, progress: bool = True, params: dict | None = None,
               _worker: Callable = _solve_chunk) -> list[Solution]:
    """Solve many instances in parallel; results in input order.

    Args:
        instances: a sequence of :class:`milp.Instance`.
        solver, time_limit, threads, params: as in :func:`milp.solve` (the time limit is per instance).
        seed: batch seed; instance i is solved with ``instance_seed(seed, instances[i].content_hash())``.
        n_jobs: worker processes (``-1`` = all cores; ``1`` = in this process). Ignored with Dask,
            where the cluster's cores decide.
        store: None, a path to an SQLite store file, or an open :class:`milp.store.SolutionStore`.
            Solved instances are committed chunk by chunk; those already stored are not solved again.
        chunk_size: instances per task; None chooses it (:func:`auto_chunk_size`). Results do not
            depend on it.
        backend: ``"loky"`` (local processes) or ``"dask"`` (joblib's Dask backend).
        scheduler: with ``backend="dask"``: a scheduler address (``"tcp://host:8786"``) or a
            ``distributed.Client``; None uses the current default client.
        progress: show a tqdm bar (rate and ETA) on stderr.

    Returns:
        One :class:`milp.Solution` per instance, in input order; duplicates get equal copies.
    """
    instances = list(instances)
    for i, inst in enumerate(instances):
        if not isinstance(inst, Instance):
            raise TypeError(f"instances[{i}] must be a milp.Instance, got {type(inst).__name__}")
    _check_args(solver, n_jobs, chunk_size, backend, scheduler, params)
    check_options(time_limit, seed, threads)
    params = dict(params or {})
    time_limit = None if time_limit is None else float(time_limit)  # 10 and 10.0 share store keys
    if not instances:
        return []

    # identity: one uid per distinct instance, its seed and its store key
    hashes = [inst.content_hash() for inst in instances]
    uid_of: dict[str, int] = {}
    firsts: list[int] = []
    for i, h in enumerate(hashes):
        if h not in uid_of:
            uid_of[h] = len(firsts)
            firsts.append(i)
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
            cached = db.get_many(keys)
            for uid, key in enumerate(keys):
                results[uid] = cached.get(key)
        todo = [uid for uid, r in enumerate(results) if r is None]

        if todo:
            _run(todo, firsts, seeds, instances, results, keys, requests, db, solver, n_jobs, chunk_size,
                 backend, scheduler, progress, (solver, time_limit, int(threads), params), _worker,
                 cached=len(firsts) - len(todo))
    finally:
        if own_store:
            db.close()

    out: list[Solution] = []
    seen: set[int] = set()
    for h in hashes:
        uid = uid_of[h]
        sol = results[uid]
        out.append(sol if uid not in seen else replace(sol, mask=sol.mask.copy(), extra=dict(sol.extra)))
        seen.add(uid)
    return out


def _run(todo, firsts, seeds, instances, results, keys, requests, db, solver, n_jobs, chunk_size, backend,
         scheduler, progress, common, worker, cached) -> None:
    from tqdm.auto import tqdm

    payloads = []
    for uid in todo:
        inst = instances[firsts[uid]]
        payloads.append((uid, inst.candidates, inst.target, inst.cardinality, seeds[uid]))
    with _Runner(backend, n_jobs, scheduler, worker, common) as runner:
        n_workers = runner.n_workers()
        size = chunk_size or auto_chunk_size(len(todo), n_workers, solver, [instances[firsts[u]] for u in todo])
        chunks = [payloads[s:s + size] for s in range(0, len(payloads), size)]
        bar = tqdm(total=len(todo), unit="inst", desc=f"solve_many[{solver}]", disable=None if progress else True,  # None: tqdm stays silent when stderr is not a terminal
                   dynamic_ncols=True, smoothing=0.1)
        if cached:
            bar.set_postfix_str(f"{cached} from store", refresh=False)

        def on_result(chunk_results):
            rows = []
            for uid, sol in chunk_results:
                results[uid] = sol
                if db is not None and sol.status != Status.FAILED:
                    rows.append((keys[uid], requests[uid], sol))
            if rows:
                db.put_many(rows)
            bar.update(len(chunk_results))

        try:
            runner.run(chunks, on_result)
        finally:
            bar.close()


# ---------------------------------------------------------------------------------- loading
INSTANCE_SUFFIXES = (".npz", ".json")


def load_instances(path) -> tuple[list[str], list[Instance]]:
    """Instances from a ``.npz``/``.json`` file or a folder of them (sorted by file name).

    A ``.json`` file may hold one instance or a list of them (named ``file.json[i]``).
    Returns ``(names, instances)``.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in INSTANCE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no .npz or .json instance files in folder {path}")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"instance file or folder not found: {path}")
    names, instances = [], []
    for f in files:
        if f.suffix == ".json":
            try:
                data = json.loads(f.read_text())
            except (ValueError, OSError) as exc:
                raise InstanceError(f"{f}: cannot read instance JSON ({exc})") from exc
            if isinstance(data, list):
                for i, item in enumerate(data):
                    try:
                        instances.append(Instance.from_dict(item))
                    except InstanceError as exc:
                        raise InstanceError(f"{f}[{i}]: {exc}") from exc
                    names.append(f"{f.name}[{i}]")
                continue
        instances.append(Instance.load(f))
        names.append(f.name)
    return names, instances
