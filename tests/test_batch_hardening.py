"""Batch engine hardening: the watchdog (hung workers), Dask without workers, workers that die with a
killed batch (a real ``kill -9``), prompt commits, and folders holding bad instance files.

Timings are generous: another job may use both cores while these run."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import milp
from milp import batch
from milp.backends import REGISTRY
from milp.batch import NoDaskWorkersError, load_instances, solve_many
from milp.solution import Status
from milp.store import SolutionStore

HANG = 0.4242  # target of the instance that hangs its worker (SLTH_TEST_HANG_ON_TARGET, test-only)


def rss(seed, count, n, k=None):
    rng = np.random.default_rng(seed)
    return [milp.Instance(rng.uniform(-1, 1, n), rng.uniform(-1, 1), k) for _ in range(count)]


def hanging(n=12):
    return milp.Instance(np.linspace(-1, 1, n), HANG)


@pytest.fixture
def quick_watchdog(monkeypatch):
    """A hang is declared after 2 x 0.5 s + 1 s (+ 2 s for a chunk's first instance) instead of ~60 s."""
    monkeypatch.setattr(batch, "WATCHDOG_OVERHEAD", 1.0)
    monkeypatch.setattr(batch, "WATCHDOG_SLACK", 2.0)
    monkeypatch.setenv(batch.HANG_ENV, str(HANG))


# ------------------------------------------------------------------------------- /proc helpers
def _stat(pid):
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
    return fields  # [0] state, [1] ppid, [11] utime, [12] stime


def _alive(pid):
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie computes nothing


def _children(pid):
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(entry.name)
            if st is not None and int(st[1]) == pid:
                out.append(int(entry.name))
    return out


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


def _cpu_ticks(pids):
    total = 0
    for pid in pids:
        st = _stat(pid)
        if st is not None:
            total += int(st[11]) + int(st[12])
    return total


# ------------------------------------------------------------------------------------ watchdog
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_watchdog_turns_a_hung_instance_into_time_limit_and_the_batch_goes_on(tmp_path, quick_watchdog, n_jobs):
    instances = rss(21, 11, 12)
    instances.insert(5, hanging())
    store = tmp_path / "s.db"
    t0 = time.monotonic()
    sols = solve_many(instances, solver="exact", n_jobs=n_jobs, chunk_size=4, time_limit=0.5, store=store,
                      progress=False)
    elapsed = time.monotonic() - t0
    print(f"\nn_jobs={n_jobs}: batch with one hung instance finished in {elapsed:.1f} s")
    hung = sols[5]
    assert hung.status == Status.TIME_LIMIT and hung.extra.get("watchdog") is True
    assert "watchdog" in hung.message and "killed" in hung.message
    assert hung.error == float("inf") and hung.mask.shape == (12,) and not hung.mask.any()
    assert 2.0 <= hung.seconds < 30
    assert all(s.status == Status.OPTIMAL for i, s in enumerate(sols) if i != 5)
    assert elapsed < 60
    # the hung worker was killed, not left sleeping
    pid = int(hung.message.split("(pid ")[1].split(")")[0])
    assert not _alive(pid)
    # everything else was committed; the watchdog row is not stored (a rerun tries it again)
    with SolutionStore(store) as db:
        assert len(db) == 11
    again = solve_many(instances[:5] + instances[6:], solver="exact", time_limit=0.5, store=store, progress=False)
    assert [s.status for s in again] == [Status.OPTIMAL] * 11


def test_watchdog_keeps_the_instances_a_hung_chunk_finished(quick_watchdog, monkeypatch):
    """Workers report every instance as it is solved: a chunk that hangs halfway keeps its first half."""
    instances = rss(22, 7, 12)
    instances.insert(3, hanging())
    sols = solve_many(instances, solver="exact", n_jobs=2, chunk_size=8, time_limit=0.5, progress=False)
    assert [s.status for s in sols] == [Status.OPTIMAL] * 3 + [Status.TIME_LIMIT] + [Status.OPTIMAL] * 4
    # the first instance of the chunk had been reported: the budget of the hung one is without the slack
    assert "WATCHDOG_SLACK" not in sols[3].message


def test_no_watchdog_without_a_time_limit_and_generous_defaults():
    assert batch.WATCHDOG_FACTOR >= 1.5 and batch.WATCHDOG_OVERHEAD >= 10 and batch.WATCHDOG_SLACK >= 10
    assert batch._budget(1.0, first=True) == batch.WATCHDOG_FACTOR + batch.WATCHDOG_OVERHEAD + batch.WATCHDOG_SLACK
    # long time limits make small automatic chunks (Dask reports per chunk)
    assert batch.auto_chunk_size(10_000, 2, "exact", time_limit=30.0) == 2
    assert batch.auto_chunk_size(10_000, 2, "exact", time_limit=120.0) == 1
    assert batch.auto_chunk_size(10_000, 2, "exact") == batch.MAX_AUTO_CHUNK_FAST


# ------------------------------------------------------------------------------- kill -9 parent
KILLED = """
import sys
import numpy as np
import milp
rng = np.random.default_rng(0)
fast = [milp.Instance(rng.uniform(-1, 1, 8), rng.uniform(-1, 1)) for _ in range(6)]
slow = [milp.Instance(rng.uniform(-1, 1, 44), rng.uniform(-1, 1)) for _ in range(4)]  # hours without a limit
milp.solve_many(fast + slow, solver=sys.argv[1], n_jobs=2, chunk_size=1, store=sys.argv[2], progress=False)
"""


@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_kill_9_of_the_batch_leaves_no_worker_computing(tmp_path, solver):
    """The issue's case: MILP solves without a time limit, the batch process killed with SIGKILL.
    cbc runs in a subprocess of the worker, so it also checks grandchildren."""
    if not REGISTRY[solver].available():
        pytest.skip(f"{solver} not installed")
    (tmp_path / "run.py").write_text(KILLED)
    store = tmp_path / "store.db"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), solver, str(store)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    family: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while True:  # the 6 fast instances committed, then both workers computing the slow ones
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the workers did not start computing in time"
            workers = _children(proc.pid)
            if len(workers) == 2 and _stored(store) == 6:
                subtrees = [[w] + _descendants(w) for w in workers]
                before = [_cpu_ticks(t) for t in subtrees]
                time.sleep(0.5)
                if all(_cpu_ticks(t) > b for t, b in zip(subtrees, before)):
                    break
            time.sleep(0.1)
        family = _descendants(proc.pid)  # workers, cbc subprocesses, any helper process
        os.kill(proc.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        proc.wait()
        while any(_alive(p) for p in family) and time.monotonic() - t_kill < 10:
            time.sleep(0.02)
        gone_after = time.monotonic() - t_kill
        survivors = [p for p in family if _alive(p)]
        print(f"\n{solver}: {len(family)} descendant processes, all gone {gone_after:.2f} s after kill -9")
        assert not survivors, f"still alive {gone_after:.1f} s after kill -9: {survivors}"
        assert gone_after < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in family:  # never leave a CPU hog behind, whatever failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    with SolutionStore(store) as db:  # opens and passes quick_check after the kill
        rows = db.rows()
    rng = np.random.default_rng(0)
    fast = [milp.Instance(rng.uniform(-1, 1, 8), rng.uniform(-1, 1)) for _ in range(6)]
    assert {r["instance_hash"] for r in rows} == {i.content_hash() for i in fast}


def _stored(path):
    import sqlite3

    if not Path(path).exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM solutions").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_results_are_committed_while_the_batch_runs(tmp_path, monkeypatch):
    """Commits do not wait for the end of a chunk or of the batch: at most COMMIT_INTERVAL apart."""
    committed = []
    real_put, real_solve = SolutionStore.put_many, batch._solve_one

    def spy(self, rows):
        rows = list(rows)
        committed.append((time.monotonic(), len(rows)))
        return real_put(self, rows)

    def slow(payload, *common):  # 50 ms per instance, in this process (n_jobs=1, no time limit)
        time.sleep(0.05)
        return real_solve(payload, *common)

    monkeypatch.setattr(SolutionStore, "put_many", spy)
    monkeypatch.setattr(batch, "_solve_one", slow)
    t0 = time.monotonic()
    solve_many(rss(23, 40, 10), solver="exact", chunk_size=40, store=tmp_path / "s.db", progress=False)
    end = time.monotonic()
    assert sum(n for _, n in committed) == 40
    assert len(committed) >= 3  # one chunk of ~2 s: committed as it went
    assert committed[0][0] - t0 < 2 * batch.COMMIT_INTERVAL and committed[0][0] < end - batch.COMMIT_INTERVAL


# ---------------------------------------------------------------------------------------- dask
@pytest.fixture
def no_worker_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster


def test_dask_cluster_without_workers_fails_clearly_after_the_timeout(no_worker_cluster):
    t0 = time.monotonic()
    with pytest.raises(NoDaskWorkersError, match="no workers.*within 1.5 s.*dask_worker_timeout"):
        solve_many(rss(0, 3, 6), solver="exact", backend="dask", scheduler=no_worker_cluster.scheduler_address,
                   dask_worker_timeout=1.5, progress=False)
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed < 20
    assert batch.DASK_NO_WORKER_TIMEOUT == 30.0
    with pytest.raises(ValueError, match="dask_worker_timeout"):
        solve_many(rss(0, 3, 6), backend="dask", scheduler=no_worker_cluster.scheduler_address,
                   dask_worker_timeout=-1, progress=False)


def test_dask_cluster_that_loses_all_workers_fails_instead_of_hanging(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv(batch.HANG_ENV, str(HANG))  # the worker processes inherit it
    instances = rss(24, 4, 10) + [hanging(10)]
    with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster, set_as_default=False) as client:
            def lose_workers():
                deadline = time.monotonic() + 60
                while _stored(tmp_path / "s.db") < 4 and time.monotonic() < deadline:
                    time.sleep(0.1)
                cluster.scale(0)

            killer = threading.Thread(target=lose_workers, daemon=True)
            killer.start()
            t0 = time.monotonic()
            with pytest.raises(NoDaskWorkersError, match="all workers were lost"):
                solve_many(instances, solver="exact", backend="dask", scheduler=client, chunk_size=1,
                           store=tmp_path / "s.db", dask_worker_timeout=2.0, progress=False)
            assert time.monotonic() - t0 < 60
            killer.join(5)
    with SolutionStore(tmp_path / "s.db") as db:
        assert len(db) == 4  # solved before the loss: kept


def test_dask_watchdog_cancels_a_hung_task_and_restarts_its_worker(quick_watchdog):
    distributed = pytest.importorskip("distributed")
    instances = rss(25, 5, 12)
    instances.insert(2, hanging())
    with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        t0 = time.monotonic()
        sols = solve_many(instances, solver="exact", backend="dask", scheduler=cluster.scheduler_address,
                          chunk_size=1, time_limit=0.5, progress=False)
        elapsed = time.monotonic() - t0
    print(f"\ndask: batch with one hung instance finished in {elapsed:.1f} s")
    assert sols[2].status == Status.TIME_LIMIT and "watchdog" in sols[2].message
    assert "restarted" in sols[2].message
    assert all(s.status == Status.OPTIMAL for i, s in enumerate(sols) if i != 2)
    assert elapsed < 80


# ------------------------------------------------------------------------------ bad instance files
def _folder(tmp_path):
    a, b, c, d = rss(26, 4, 6)
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.json")
    c.save(tmp_path / "c.npz")
    data = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "c.npz").write_bytes(data[: len(data) // 2])  # truncated: zipfile.BadZipFile inside np.load
    (tmp_path / "d.json").write_text("{not json")
    (tmp_path / "e.json").write_text(json.dumps([d.to_dict(), {"format": "slth-instance/1", "target": 1.0}]))
    return a, b, d


def test_a_bad_file_in_a_folder_is_reported_and_skipped(tmp_path, capsys):
    a, b, d = _folder(tmp_path)
    names, insts = load_instances(tmp_path)
    assert names == ["a.npz", "b.json", "e.json[0]"] and insts == [a, b, d]
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("warning: skipped instance")]
    assert len(warned) == 3
    assert "c.npz" in warned[0] and "zip" in warned[0].lower()  # zipfile.BadZipFile: not a zip file
    assert "d.json" in warned[1] and "e.json[1]" in warned[2] and "candidates" in warned[2]
    names, insts, skipped = load_instances(tmp_path, return_skipped=True)
    assert [s[0] for s in skipped] == ["c.npz", "d.json", "e.json[1]"]
    assert all(str(tmp_path) in reason for _, reason in skipped)


def test_strict_loading_and_a_single_bad_file_raise_naming_the_file(tmp_path):
    _folder(tmp_path)
    with pytest.raises(milp.InstanceError, match="c.npz"):
        load_instances(tmp_path, strict=True)
    with pytest.raises(milp.InstanceError, match=r"c\.npz") as info:
        load_instances(tmp_path / "c.npz")
    assert isinstance(info.value, ValueError)
    with pytest.raises(milp.InstanceError, match=r"d\.json"):
        load_instances(tmp_path / "d.json")
    bad = tmp_path / "only_bad"
    bad.mkdir()
    (bad / "x.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(milp.InstanceError, match="no instance could be loaded"):
        load_instances(bad)


def test_slth_batch_on_a_folder_with_a_bad_file_solves_the_others(tmp_path, capsys):
    from pipelines.cli import main

    (tmp_path / "in").mkdir()
    _folder(tmp_path / "in")
    out = tmp_path / "out.json"
    assert main(["batch", str(tmp_path / "in"), "--solver", "exact", "--quiet", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["name"] for r in rows] == ["a.npz", "b.json", "e.json[0]"]
    assert all(r["status"] == "optimal" for r in rows)
    assert "c.npz" in capsys.readouterr().err


def test_a_deeply_nested_json_file_in_a_folder_is_skipped_not_a_traceback(tmp_path, capsys):
    import numpy as np

    import milp
    from milp.batch import load_instances

    milp.Instance(np.random.default_rng(0).uniform(-1, 1, 10), 0.3).save(tmp_path / "a.npz")
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    names, insts = load_instances(tmp_path)
    assert names == ["a.npz"] and len(insts) == 1
    assert "deep.json" in capsys.readouterr().err
