"""solve_many: determinism over n_jobs / chunking, the store, resume after SIGKILL, crash isolation, Dask."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

import milp
from milp import batch
from milp.backends import REGISTRY
from milp.batch import instance_seed, load_instances, solve_many
from milp.solution import Status
from milp.store import SolutionStore


def rss(seed, count, n, k=None):
    rng = np.random.default_rng(seed)
    return [milp.Instance(rng.uniform(-1, 1, n), rng.uniform(-1, 1), k) for _ in range(count)]


def signature(sols):
    return [(s.mask.tobytes(), s.error, s.status.value) for s in sols]


# ----------------------------------------------------------------------------- determinism
SOLVER_CASES = {
    "exact": dict(instances=lambda: rss(1, 30, 16) + rss(2, 10, 12, k=5), time_limit=None),
    "heuristic": dict(instances=lambda: rss(3, 30, 20) + rss(4, 10, 14, k=6), time_limit=None),
    "cpsat": dict(instances=lambda: rss(5, 10, 10) + rss(6, 4, 10, k=4), time_limit=10.0),
}


@pytest.mark.parametrize("solver", sorted(SOLVER_CASES))
def test_results_do_not_depend_on_n_jobs_or_chunking(solver):
    if not REGISTRY[solver].available():
        pytest.skip(f"{solver} not installed")
    case = SOLVER_CASES[solver]
    instances = case["instances"]()
    runs = {(n_jobs, chunk): solve_many(instances, solver=solver, n_jobs=n_jobs, chunk_size=chunk, seed=3,
                                        time_limit=case["time_limit"], progress=False)
            for n_jobs, chunk in [(1, None), (1, 7), (2, 1), (2, 7), (2, None)]}
    reference = signature(runs[(1, None)])
    for config, sols in runs.items():
        assert signature(sols) == reference, config
    assert all(s.status in (Status.OPTIMAL, Status.FEASIBLE) for s in runs[(1, None)])
    # each instance's result is the one milp.solve gives it with its own derived seed
    for inst, sol in zip(instances[:5], runs[(2, 7)]):
        alone = milp.solve(inst, solver, time_limit=case["time_limit"], seed=instance_seed(3, inst.content_hash()))
        assert signature([alone]) == signature([sol])


def test_seed_follows_the_instance_not_its_position():
    instances = rss(7, 12, 18)
    forward = solve_many(instances, solver="heuristic", seed=5, progress=False, params={"restarts": 3})
    backward = solve_many(instances[::-1], solver="heuristic", seed=5, progress=False, params={"restarts": 3})
    assert signature(forward) == signature(backward[::-1])
    assert instance_seed(5, "abc") == instance_seed(5, "abc") != instance_seed(6, "abc")
    assert 0 <= instance_seed(5, "abc") < 2 ** 31


# ------------------------------------------------------------------------------------ store
def test_store_skips_solved_and_dedups(tmp_path, monkeypatch):
    calls = []
    real = batch._solve_one
    monkeypatch.setattr(batch, "_solve_one", lambda p, *a: calls.append(p[0]) or real(p, *a))
    instances = rss(8, 20, 14)
    instances = instances + instances[:5]  # duplicates are solved once
    path = tmp_path / "store.db"
    first = solve_many(instances, solver="exact", store=path, progress=False)
    assert len(calls) == 20
    with SolutionStore(path) as store:
        assert len(store) == 20
    assert signature(first[20:]) == signature(first[:5]) and first[20] is not first[0]
    more = rss(9, 4, 14)
    calls.clear()
    second = solve_many(instances + more, solver="exact", store=str(path), progress=False)
    assert len(calls) == 4  # only the new ones
    assert signature(second[:25]) == signature(first)
    with SolutionStore(path) as store:
        assert len(store) == 24
        calls.clear()
        solve_many(instances, solver="exact", store=store, seed=1, progress=False)  # other seed: other key
        assert len(calls) == 20 and len(store) == 44


def test_a_refused_instance_fails_alone_and_is_not_stored(tmp_path):
    instances = rss(10, 6, 14)
    too_big = milp.Instance(np.random.default_rng(0).uniform(-1, 1, 50), 0.3)  # exact refuses n = 50
    mixed = instances[:3] + [too_big] + instances[3:]
    sols = solve_many(mixed, solver="exact", n_jobs=2, chunk_size=4, store=tmp_path / "s.db", progress=False)
    assert sols[3].status == Status.FAILED and "UnsupportedInstance" in sols[3].message
    assert sols[3].error == float("inf") and sols[3].mask.shape == (50,)
    assert all(s.status == Status.OPTIMAL for i, s in enumerate(sols) if i != 3)
    with SolutionStore(tmp_path / "s.db") as store:
        assert len(store) == 6  # failures are retried on the next run, not remembered


POISON = 0.777


def _chunk_that_kills_its_worker(payloads, *common):
    """Test worker: a 'backend' that takes its whole process down (like a segfault) on one instance."""
    for p in payloads:
        if float(p[2][0]) == POISON:
            os._exit(3)
    return batch._solve_chunk(payloads, *common)


def test_a_worker_death_fails_one_instance_and_the_batch_continues():
    instances = rss(11, 23, 12)
    instances.insert(9, milp.Instance(np.linspace(-1, 1, 12), POISON))
    sols = solve_many(instances, solver="exact", n_jobs=2, chunk_size=4, progress=False,
                      _worker=_chunk_that_kills_its_worker)
    assert sols[9].status == Status.FAILED and "worker process died" in sols[9].message
    assert all(s.status == Status.OPTIMAL for i, s in enumerate(sols) if i != 9)
    assert signature(sols[:9] + sols[10:]) == signature(solve_many(instances[:9] + instances[10:],
                                                                   solver="exact", progress=False))


# --------------------------------------------------------------------------- resume after kill
RUNNER = """
import sys
from milp.batch import load_instances, solve_many
names, instances = load_instances(sys.argv[1])
solve_many(instances, solver="exact", n_jobs=2, store=sys.argv[2], progress=False)
"""


def _stored_rows(path):
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM solutions").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_resume_after_sigkill_solves_every_instance_exactly_once(tmp_path, monkeypatch):
    distinct = rss(12, 380, 34)  # exact at n = 34: ~20 ms each, ~4 s for the batch on 2 workers
    instances = distinct + distinct[::19]  # 20 duplicates
    (tmp_path / "batch.json").write_text(json.dumps([i.to_dict() for i in instances]))
    (tmp_path / "run.py").write_text(RUNNER)
    store = tmp_path / "store.db"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(tmp_path / "batch.json"), str(store)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while _stored_rows(store) < 60:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the batch stored too few rows in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the job and its workers, mid-batch
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with SolutionStore(store) as db:  # opens and passes quick_check after the kill
        before = len(db)
    assert 60 <= before < 380, "the batch was not interrupted"

    calls = []
    real = batch._solve_one
    monkeypatch.setattr(batch, "_solve_one", lambda p, *a: calls.append(p[0]) or real(p, *a))
    names, loaded = load_instances(tmp_path / "batch.json")
    sols = solve_many(loaded, solver="exact", n_jobs=1, store=store, progress=False)
    assert len(calls) == 380 - before  # only what the killed run had not committed
    assert len(set(calls)) == len(calls)

    by_hash = {i.content_hash(): i for i in distinct}
    with SolutionStore(store) as db:
        rows = db.rows()
    assert len(rows) == 380 and len({r["key"] for r in rows}) == 380
    assert {r["instance_hash"] for r in rows} == set(by_hash)
    for r in rows:
        mask = np.array([int(c) for c in r["mask"]])
        assert r["status"] == "optimal" and r["error"] == by_hash[r["instance_hash"]].residual(mask)
    assert all(s.status == Status.OPTIMAL for s in sols) and len(sols) == 400
    for inst, sol in list(zip(loaded, sols))[::40]:
        assert signature([sol]) == signature([milp.solve(inst, "exact")])


# ---------------------------------------------------------------------------------------- dask
@pytest.fixture(scope="module")
def dask_cluster():
    """A real Dask cluster on loopback: a scheduler and two single-threaded worker processes."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        yield cluster


def test_dask_local_cluster_matches_loky(tmp_path, dask_cluster):
    import distributed

    instances = rss(13, 40, 16) + rss(14, 10, 14, k=7)
    local = solve_many(instances, solver="heuristic", n_jobs=2, seed=2, progress=False)
    remote = solve_many(instances, solver="heuristic", backend="dask", scheduler=dask_cluster.scheduler_address,
                        seed=2, chunk_size=6, store=tmp_path / "d.db", progress=False)
    assert signature(remote) == signature(local)
    with SolutionStore(tmp_path / "d.db") as store:
        assert len(store) == 50
    with distributed.Client(dask_cluster) as client:  # the current default client is used too
        again = solve_many(instances[:5], solver="exact", backend="dask", progress=False)
        assert client.status == "running"
    assert signature(again) == signature(solve_many(instances[:5], solver="exact", progress=False))


def test_dask_worker_death_fails_one_instance_and_the_batch_continues(dask_cluster):
    instances = rss(11, 15, 12)
    instances.insert(4, milp.Instance(np.linspace(-1, 1, 12), POISON))
    sols = solve_many(instances, solver="exact", backend="dask", scheduler=dask_cluster.scheduler_address,
                      chunk_size=3, progress=False, _worker=_chunk_that_kills_its_worker)
    assert sols[4].status == Status.FAILED and "KilledWorker" in sols[4].message
    assert all(s.status == Status.OPTIMAL for i, s in enumerate(sols) if i != 4)


ONE_WORKER = """
import os, sys
import numpy as np
import milp
from milp import batch

POISON = 0.777

def killer(payloads, *common):
    for p in payloads:
        if float(p[2][0]) == POISON:
            os._exit(3)
    return batch._solve_chunk(payloads, *common)

if __name__ == "__main__":
    import distributed
    rng = np.random.default_rng(0)
    instances = [milp.Instance(rng.uniform(-1, 1, 10), rng.uniform(-1, 1)) for _ in range(6)]
    instances.insert(2, milp.Instance(np.linspace(-1, 1, 10), POISON))
    with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        sols = milp.solve_many(instances, solver="exact", backend="dask", scheduler=cluster.scheduler_address,
                               chunk_size=2, progress=False, _worker=killer)
    print("STATUSES", ",".join(s.status.value for s in sols), flush=True)
"""


def test_dask_with_one_worker_never_runs_chunks_in_the_client(tmp_path):
    """joblib runs a Dask batch in the calling process when the cluster has one 1-thread worker
    (effective n_jobs 1): a chunk that kills its process would then kill the client. Regression test
    in a subprocess, so a failure is reported instead of taking pytest down."""
    pytest.importorskip("distributed")
    (tmp_path / "one_worker.py").write_text(ONE_WORKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(tmp_path / "one_worker.py")], capture_output=True, text=True,
                         env=env, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, f"the client process died (exit {out.returncode}): {out.stderr[-2000:]}"
    statuses = out.stdout.split("STATUSES ")[1].strip().split(",")
    assert statuses[2] == "failed" and statuses.count("optimal") == 6, statuses


# ----------------------------------------------------------------------------- arguments & I/O
@pytest.mark.parametrize("kwargs, field", [
    (dict(n_jobs=0), "n_jobs"), (dict(n_jobs=-2), "n_jobs"), (dict(n_jobs=1.5), "n_jobs"),
    (dict(chunk_size=0), "chunk_size"), (dict(chunk_size="big"), "chunk_size"),
    (dict(backend="spark"), "backend"), (dict(scheduler="tcp://x:1"), "scheduler"),
    (dict(solver="nope"), "unknown solver"), (dict(time_limit=-1), "time_limit"), (dict(seed=-1), "seed"),
    (dict(params=[1]), "params"),
])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        solve_many(rss(0, 2, 5), progress=False, **kwargs)


def test_dask_without_cluster_says_how_to_get_one():
    pytest.importorskip("distributed")
    import distributed

    try:
        distributed.get_client()
        pytest.skip("a default Dask client exists")
    except ValueError:
        pass
    with pytest.raises(ValueError, match="scheduler="):
        solve_many(rss(0, 2, 5), backend="dask", progress=False)


def test_empty_batch_and_type_check():
    assert solve_many([], progress=False) == []
    with pytest.raises(TypeError, match=r"instances\[1\]"):
        solve_many([rss(0, 1, 4)[0], "x"], progress=False)


def test_progress_bar_shows_rate_on_a_terminal_and_stays_silent_in_a_log(capsys, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    solve_many(rss(15, 5, 8), solver="exact", progress=True)
    assert "inst/s" in term.getvalue() and "5/5" in term.getvalue()
    monkeypatch.undo()
    solve_many(rss(15, 5, 8), solver="exact", progress=True)  # stderr captured: not a terminal
    assert "\r" not in capsys.readouterr().err


def test_load_instances_from_file_folder_and_json_list(tmp_path):
    a, b, c = rss(16, 3, 6)
    a.save(tmp_path / "b.npz")
    b.save(tmp_path / "a.json")
    (tmp_path / "c.json").write_text(json.dumps([c.to_dict(), a.to_dict()]))
    (tmp_path / "notes.txt").write_text("ignored")
    names, insts = load_instances(tmp_path)
    assert names == ["a.json", "b.npz", "c.json[0]", "c.json[1]"]
    assert insts == [b, a, c, a]
    assert load_instances(tmp_path / "b.npz") == (["b.npz"], [a])
    with pytest.raises(FileNotFoundError):
        load_instances(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .npz or .json"):
        load_instances(tmp_path / "empty")
