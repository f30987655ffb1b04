"""General MILPs (milp.general.Model) through the batch engine (milp.batch.solve_models) and the exact sup of
pipelines.exact_sup on it: the same Results as in-process solves, the same numbers for any n_jobs, hard time
limits and the watchdog reported as not closed (never exact), a store that makes a rerun solve nothing, and
stored Results checked when read. Real solvers (HiGHS, SCIP) on small models built here."""
import json
import sqlite3
import time

import numpy as np
import pytest
import torch
from torch import nn

from milp import batch, general
from milp.batch import instance_seed, solve_models
from milp.store import ResultStore, SolutionStore, StoreError, StoreWarning
from pipelines.constructions import construct
from pipelines.exact_sup import _build, _cone, _parents, _signature, exact_sup
from pipelines.verify import certified_intervals, network_ops

pytestmark = pytest.mark.skipif(not {"highs", "scip"} <= set(general.available()), reason="needs HiGHS and SCIP")
HANG = 0.4242  # box upper bound whose models hang their worker (SLTH_TEST_HANG_ON_TARGET, test-only)


def built(layers, n, seed=0):
    torch.manual_seed(seed)
    t = nn.Sequential(*layers).double()
    c, _ = construct(t, n, construction="iclr", solver="exact", seed=seed)
    return t, c


def knapsack(seed, n=12):
    rng = np.random.default_rng(seed)
    w, v = rng.integers(1, 20, n).astype(float), rng.integers(1, 20, n).astype(float)
    m = general.Model()
    xs = [m.var(0, 1, integer=True) for _ in range(n)]
    y = m.var(0, 5)  # a continuous variable too
    m.row(xs + [y], list(w) + [1.0], hi=float(w.sum()) / 2)
    m.maximize(xs + [y], list(v) + [0.5])
    return m


def sup_models(t, c, shape, lo=0.0, hi=1.0):
    """The MILPs exact_sup builds for target t and ticket c (one per border class and sign)."""
    f, g = t.double().eval(), c.effective().double().eval()
    from pipelines.bounds import interval_bounds

    fo, go = network_ops(f), network_ops(g)
    bounds, pars = interval_bounds(fo, go, shape, lo, hi), _parents(fo, shape)
    out, seen = [], set()
    for e in range(int(np.prod(pars[-1][2]))):
        cone = _cone(fo, pars, e)
        sig = _signature(fo, pars, cone, e)
        if sig not in seen:
            seen.add(sig)
            out += [_build(fo, go, pars, bounds, cone, e, s, lo, hi)[0] for s in (1, -1)]
    return out


def same_result(a, b):
    assert a.status == b.status and a.solver == b.solver
    assert a.primal == pytest.approx(b.primal, rel=1e-9, abs=1e-9)
    assert a.dual == pytest.approx(b.dual, rel=1e-9, abs=1e-9)
    assert (a.x is None) == (b.x is None)


def same_exact(a, b):
    assert (a["lower"], a["upper"], a["closed"], a["milps"]) == (b["lower"], b["upper"], b["closed"], b["milps"])
    for ra, rb in zip(a["records"], b["records"]):
        assert (ra["status"], ra["lower"], ra["upper"], ra["sign"], ra["entries"]) == \
               (rb["status"], rb["lower"], rb["upper"], rb["sign"], rb["entries"])


# --------------------------------------------------------------------------- solve_models
def test_results_through_the_batch_equal_in_process_solves():
    t, c = built([nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)], 4)
    models = [knapsack(s) for s in range(3)] + sup_models(t, c, (1, 6, 6))[:4]
    solvers = ["highs", "scip"] * (len(models) // 2) + ["highs"] * (len(models) % 2)
    seen = []
    got = solve_models(models, solvers, time_limit=20, progress=False, on_result=lambda i, r: seen.append(i))
    assert sorted(seen) == list(range(len(models)))
    for m, s, r in zip(models, solvers, got):
        same_result(r, general.solve(m, s, time_limit=20, seed=instance_seed(0, m.content_hash())))
        assert r.status == "optimal" and r.violation <= 1e-6
    # in this process (no time limit, one job) too, and duplicates solved once and returned as copies
    again = solve_models(models[:2] + models[:1], ["highs", "scip", "highs"], progress=False)
    same_result(again[0], got[0])
    same_result(again[1], got[1])
    assert again[2] is not again[0] and np.array_equal(again[2].x, again[0].x)


def test_solve_models_refuses_bad_arguments_in_one_line():
    m = knapsack(0)
    with pytest.raises(ValueError, match="solver: expected one of"):
        solve_models([m], "gurobi", progress=False)
    with pytest.raises(ValueError, match="2 solver names for 1 models"):
        solve_models([m], ["highs", "scip"], progress=False)
    with pytest.raises(TypeError, match=r"models\[0\] must be a milp.general.Model"):
        solve_models(["x"], progress=False)
    with pytest.raises(ValueError, match="total_time"):
        solve_models([m], total_time=-1, progress=False)


def test_total_time_leaves_the_rest_unstarted_and_unstored(tmp_path):
    models = [knapsack(s) for s in range(4)]
    got = solve_models(models, time_limit=5, total_time=0, store=tmp_path / "r.sqlite", progress=False)
    assert [r.status for r in got] == ["not_solved"] * 4
    assert all(r.x is None and r.dual == float("inf") and "total_time" in r.message for r in got)
    with ResultStore(tmp_path / "r.sqlite") as db:
        assert len(db) == 0


def test_a_rerun_with_a_store_solves_nothing_and_stored_points_are_checked(tmp_path, monkeypatch):
    store = tmp_path / "results.sqlite"
    models = [knapsack(s) for s in range(3)]
    first = solve_models(models, ["highs", "scip", "highs"], time_limit=10, store=store, progress=False)
    calls = []
    real = batch._execute
    monkeypatch.setattr(batch, "_execute", lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
    second = solve_models(models, ["highs", "scip", "highs"], time_limit=10, store=store, progress=False)
    assert calls == []
    for a, b in zip(first, second):
        same_result(a, b)
        assert np.array_equal(a.x, b.x) and a.seconds == b.seconds
    # other options are other keys: solved again
    solve_models(models[:1], "highs", time_limit=11, store=store, progress=False)
    assert calls == [1]
    # a tampered point (outside the model's bounds) is treated as missing and solved again
    con = sqlite3.connect(store)
    key, text = con.execute("SELECT key, result FROM results WHERE solver = 'scip'").fetchone()
    d = json.loads(text)
    d["x"][0] = 7.0
    con.execute("UPDATE results SET result = ? WHERE key = ?", (json.dumps(d), key))
    con.commit()
    con.close()
    with pytest.warns(StoreWarning, match="does not satisfy the model"):
        third = solve_models(models, ["highs", "scip", "highs"], time_limit=10, store=store, progress=False)
    assert calls == [1, 1]
    same_result(third[1], first[1])


def test_result_and_solution_stores_refuse_each_other(tmp_path):
    with SolutionStore(tmp_path / "s.sqlite"):
        pass
    with pytest.raises(StoreError, match="not an slth model result store"):
        ResultStore(tmp_path / "s.sqlite")
    with ResultStore(tmp_path / "r.sqlite"):
        pass
    with pytest.raises(StoreError, match="not an slth solution store"):
        SolutionStore(tmp_path / "r.sqlite")


# --------------------------------------------------------------------------- exact_sup on the engine
def test_exact_sup_gives_the_same_numbers_with_one_and_two_workers():
    t, c = built([nn.Conv2d(2, 3, 3, stride=2), nn.ReLU(), nn.Conv2d(3, 2, 2)], 4, seed=1)
    one = exact_sup(t, c.effective(), (2, 5, 5), time_limit=20, n_jobs=1)
    two = exact_sup(t, c.effective(), (2, 5, 5), time_limit=20, n_jobs=2)
    same_exact(one, two)
    assert one["closed"] and one["milps"] >= 1
    everything = exact_sup(t, c.effective(), (2, 5, 5), time_limit=20, n_jobs=2, prune=False)
    assert everything["milps"] == 2 * everything["classes"]
    assert everything["lower"] == pytest.approx(one["lower"], rel=1e-6) and everything["closed"]


def test_a_rerun_of_exact_sup_with_a_store_solves_nothing(tmp_path, monkeypatch):
    t, c = built([nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2)], 4)
    store = tmp_path / "exact.sqlite"
    first = exact_sup(t, c.effective(), (1, 6, 6), time_limit=20, store=store)
    calls = []
    real = batch._execute
    monkeypatch.setattr(batch, "_execute", lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
    second = exact_sup(t, c.effective(), (1, 6, 6), time_limit=20, store=store)
    assert calls == []
    same_exact(first, second)
    assert first["closed"]


def test_a_tiny_time_limit_stops_in_time_and_is_never_reported_closed():
    shape = (2, 7, 7)
    t, c = built([nn.Conv2d(2, 4, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2, stride=1), nn.Conv2d(4, 2, 1)], 10)
    t0 = time.perf_counter()
    ex = exact_sup(t, c.effective(), shape, time_limit=0.05, n_jobs=1)
    elapsed = time.perf_counter() - t0
    solved = [r for r in ex["records"] if r["status"] not in ("skipped", "not_solved")]
    assert solved and any("time_limit" in r["status"] for r in solved)
    budget = batch.WATCHDOG_SLACK + len(solved) * 2 * batch._budget(0.05, False)
    assert elapsed < budget
    assert not ex["closed"] and all(not r["closed"] for r in solved if "time_limit" in r["status"])
    f = t.double().eval()
    cert = certified_intervals(f, c.effective().double().eval(), shape, 0.0, 1.0)["abs"]
    X = torch.rand((500, *shape), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sampled = float((f(X) - c.effective().double()(X)).abs().amax())
    assert sampled <= ex["upper"] <= cert * (1 + 1e-9) and ex["lower"] <= ex["upper"]


def test_the_watchdog_stops_a_hung_milp_and_its_entry_keeps_the_cheap_bound(monkeypatch):
    monkeypatch.setattr(batch, "WATCHDOG_OVERHEAD", 1.0)
    monkeypatch.setattr(batch, "WATCHDOG_SLACK", 2.0)
    monkeypatch.setenv(batch.HANG_ENV, str(HANG))
    t, c = built([nn.Conv2d(1, 1, 3)], 4)  # 3x3 input: one output entry, one class, two signs
    t0 = time.perf_counter()
    ex = exact_sup(t, c.effective(), (1, 3, 3), 0.0, HANG, time_limit=0.2, confirm_with=None, lower_bound=0.0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2 * (batch._budget(0.2, True) + 5)  # two solves, each killed within its budget
    assert ex["milps"] == 2 and not ex["closed"]
    for r in ex["records"]:
        assert r["status"] == "time_limit" and not r["closed"] and r["upper"] == r["cheap"]
        assert r["lower"] == -np.inf and "watchdog" in r["messages"][0]
    assert ex["upper"] == pytest.approx(max(r["cheap"] for r in ex["records"]), rel=1e-11)
    assert ex["lower"] == 0.0 and ex["argmax"] is None


KILLED = """
import sys
import numpy as np
from milp import general
from milp.batch import solve_models

def market_split(seed, m=4, n=40):  # Cornuejols-Dawande: hours for branch and bound
    rng = np.random.default_rng(seed)
    A = rng.integers(0, 100, (m, n)).astype(float)
    model = general.Model()
    xs = [model.var(0, 1, integer=True) for _ in range(n)]
    slack = []
    for i in range(m):
        sp, sm = model.var(0, 1e4), model.var(0, 1e4)
        model.row(xs + [sp, sm], list(A[i]) + [1.0, -1.0], lo=A[i].sum() // 2, hi=A[i].sum() // 2)
        slack += [sp, sm]
    model.maximize(slack, [-1.0] * len(slack))
    return model

solve_models([market_split(s) for s in range(4)], "highs", n_jobs=2, chunk_size=1, progress=False)
"""


def test_kill_9_of_a_model_batch_leaves_no_worker_computing(tmp_path):
    """The engine's guarantee holds for general MILPs too: HiGHS without a time limit inside two workers,
    the batch process killed with SIGKILL, every worker gone within seconds."""
    import os
    import signal
    import subprocess
    import sys

    from test_batch_hardening import _alive, _children, _cpu_ticks, _descendants

    (tmp_path / "run.py").write_text(KILLED)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    family: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while True:  # both workers computing
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the workers did not start computing in time"
            workers = _children(proc.pid)
            if len(workers) == 2:
                before = [_cpu_ticks([w]) for w in workers]
                time.sleep(0.5)
                if all(_cpu_ticks([w]) > b for w, b in zip(workers, before)):
                    break
            time.sleep(0.1)
        family = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        proc.wait()
        while any(_alive(p) for p in family) and time.monotonic() - t_kill < 10:
            time.sleep(0.02)
        survivors = [p for p in family if _alive(p)]
        assert not survivors and time.monotonic() - t_kill < 5, f"still alive after kill -9: {survivors}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in family:  # never leave a CPU hog behind, whatever failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
