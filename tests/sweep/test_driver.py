"""The sweep driver: every run recorded once, resume, failures recorded, executors agree."""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from depthlab.spec import RunSpec
from depthlab.store import RunState, SQLiteStore
from depthlab.sweep import LocalExecutor, SweepSpec, planned_records, run_sweep, sweep_records
from depthlab.train import run

BASE = {
    "arch": {"family": "mlp", "depth": 1, "width": 8, "act": "relu", "init": "he"},
    "data": {"name": "iris", "seed": 0},
    "train": {"optimizer": "adam", "lr": 0.01, "epochs": 3, "batch_size": 16},
}


def small_sweep(**changes: object) -> SweepSpec:
    data = {
        "base": BASE,
        "axes": {"arch.depth": [1, 3], "arch.act": ["relu", "tanh"]},
        "seeds": [0, 1],
    }
    data.update(changes)
    return SweepSpec.from_dict(data)


def test_runs_every_planned_run_once_and_matches_the_trainer(tmp_path: Path) -> None:
    sweep = small_sweep()
    with SQLiteStore(tmp_path / "runs.db") as store:
        summary = run_sweep(sweep, store, LocalExecutor(2), progress=False)
        records = store.runs()
    assert summary.planned == summary.executed == summary.added == 8
    assert summary.finished and summary.counts[RunState.COMPLETE] == 8
    assert sorted(r.run_id for r in records) == sorted(r.run_id for r in planned_records(sweep))
    assert all(r.state is RunState.COMPLETE and r.attempt == 1 for r in records)
    for r in records:
        assert len(r.history) == 3 and r.history[-1]["epoch"] == 3.0
        assert r.seconds is not None and 0 < r.seconds < 60
    # Same spec and seed in a worker process and here: the same numbers, to the bit.
    direct = run(RunSpec.from_dict(records[5].spec), progress=False)
    assert records[5].metrics == direct.metrics


def test_resume_never_redoes_complete_and_adds_new_axis_values(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with SQLiteStore(path) as store:
        run_sweep(small_sweep(), store, LocalExecutor(1), progress=False)
        before = {r.run_id: r for r in store.runs()}
        again = run_sweep(small_sweep(), store, LocalExecutor(1), progress=False)
        assert again.executed == 0 and again.skipped == 8 and again.added == 0
        assert {r.run_id: r for r in store.runs()} == before
        grown = small_sweep(axes={"arch.depth": [1, 3, 5], "arch.act": ["relu", "tanh"]})
        summary = run_sweep(grown, store, LocalExecutor(1), progress=False)
        assert summary.added == summary.executed == 4 and summary.skipped == 8
        after = {r.run_id: r for r in store.runs()}
    assert all(after[k] == v for k, v in before.items())  # untouched, finished_at included
    assert len(after) == 12 and all(r.state is RunState.COMPLETE for r in after.values())


def test_running_runs_of_a_dead_driver_are_redone(tmp_path: Path) -> None:
    sweep = small_sweep()
    with SQLiteStore(tmp_path / "runs.db") as store:
        store.add_pending(planned_records(sweep))
        stuck = planned_records(sweep)[2].run_id
        store.claim(stuck, "dead-host")
        summary = run_sweep(sweep, store, LocalExecutor(1), progress=False)
        redone = store.get(stuck)
    assert summary.redone == 1 and summary.executed == 8
    assert redone.state is RunState.COMPLETE and redone.attempt == 2 and redone.host != "dead-host"


def test_failed_and_diverged_runs_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    sweep = SweepSpec.from_dict(
        {
            "base": {**BASE, "train": {**BASE["train"], "optimizer": "sgd"}},
            "axes": {
                "train.lr": [0.01, 1.0e8],
                "data.name": ["iris", "npz"],
            },
            "seeds": [0],
        }
    )
    with SQLiteStore(tmp_path / "runs.db") as store:
        summary = run_sweep(sweep, store, LocalExecutor(2), progress=False)
        by_name = {r.spec["name"]: r for r in store.runs()}
    assert summary.finished and summary.executed == 4
    ok = by_name["train.lr=0.01,data.name=iris,seed=0"]
    diverged = by_name["train.lr=100000000.0,data.name=iris,seed=0"]
    failed = by_name["train.lr=0.01,data.name=npz,seed=0"]
    assert ok.state is RunState.COMPLETE
    assert diverged.state is RunState.DIVERGED and "NaN/inf" in diverged.error
    assert failed.state is RunState.FAILED and "npz" in failed.error and "path" in failed.error
    assert summary.counts == {
        RunState.PENDING: 0, RunState.RUNNING: 0, RunState.COMPLETE: 1,
        RunState.FAILED: 2, RunState.DIVERGED: 1, RunState.STOPPED: 0,
    }  # fmt: skip
    # FAILED/DIVERGED stay as they are on resume unless asked to retry.
    with SQLiteStore(tmp_path / "runs.db") as store:
        assert run_sweep(sweep, store, LocalExecutor(1), progress=False).executed == 0
        retried = run_sweep(sweep, store, LocalExecutor(1), retry_failed=True, progress=False)
        assert retried.executed == 3
        assert store.get(failed.run_id).attempt == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_that_dies_fails_only_its_run(tmp_path: Path, workers: int) -> None:
    """A run whose worker is killed every time (as the OOM killer would) is FAILED; the runs
    that were in the same pool are re-run, and the sweep goes on."""
    # The victim trains long enough (300 epochs) that the kill always lands while it is held.
    sweep = small_sweep(axes={"train.epochs": [300, 3, 4, 5], "arch.act": ["relu", "tanh"]})
    killer = _KillRun(LocalExecutor(workers), planned_records(sweep)[0].run_id)
    with SQLiteStore(tmp_path / "runs.db") as store:
        summary = run_sweep(sweep, store, killer, progress=False)
        states = [r.state for r in store.runs()]
        errors = [r.error for r in store.runs() if r.state is RunState.FAILED]
    assert summary.finished and states.count(RunState.FAILED) == 1
    assert states.count(RunState.COMPLETE) == 15
    assert "worker process died" in errors[0]
    assert killer.kills == 2  # once with the others in flight, once alone


class _KillRun(LocalExecutor):
    """Kills a worker of the pool right after the run ``victim`` is submitted."""

    def __init__(self, inner: LocalExecutor, victim: str) -> None:
        super().__init__(inner.workers)
        self.victim = victim
        self.kills = 0

    def submit(self, key, spec, probes):  # type: ignore[no-untyped-def]
        super().submit(key, spec, probes)
        if key == self.victim:
            self.kills += 1
            time.sleep(0.1)
            assert self._pool is not None
            proc = next(iter(self._pool._processes.values()))  # a worker, not the driver
            os.kill(proc.pid, signal.SIGKILL)


def test_a_worker_that_dies_between_submits_loses_runs_not_the_sweep() -> None:
    """A worker can die while the driver is submitting: the next submit finds the pool broken.
    That run and every run in the pool come back LOST from the next wait; a new pool runs on."""
    spec = small_sweep(seeds=[0]).point({}, 0).to_dict()
    executor = LocalExecutor(1)
    executor.start()
    try:
        executor.submit("first", spec, ())
        assert executor._pool is not None
        worker = next(iter(executor._pool._processes.values()))
        os.kill(worker.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not executor._pool._broken and time.monotonic() < deadline:
            time.sleep(0.05)
        assert executor._pool._broken
        executor.submit("second", spec, ())  # must not raise
        lost = executor.wait(timeout=5)
        assert sorted(key for key, _ in lost) == ["first", "second"]
        assert all(outcome["state"] == "LOST" for _, outcome in lost)
        executor.submit("third", spec, ())
        ((key, outcome),) = executor.wait(timeout=60)
        assert key == "third" and outcome["state"] == "COMPLETE"
    finally:
        executor.close()


def test_ctrl_c_while_a_worker_starts_does_not_kill_it() -> None:
    """The pool spawns a worker inside submit; a Ctrl-C to the process group that lands while
    the worker is still starting (before it ignores SIGINT) must neither kill it nor print a
    traceback: the spawn happens with SIGINT held back, which the worker inherits."""
    spec = small_sweep(seeds=[0]).point({}, 0).to_dict()
    executor = LocalExecutor(2)
    executor.start()  # one worker, started and idle
    try:
        assert executor._pool is not None
        (first,) = executor._pool._processes
        executor.submit("a", spec, ())  # the idle worker takes it
        executor.submit("b", spec, ())  # no idle worker: a second one is spawned now
        (second,) = set(executor._pool._processes) - {first}
        os.kill(second, signal.SIGINT)  # at once: the new worker is still starting
        outcomes = {}
        deadline = time.monotonic() + 120
        while len(outcomes) < 2 and time.monotonic() < deadline:
            outcomes.update(executor.wait(timeout=1))
        assert {k: o["state"] for k, o in outcomes.items()} == {"a": "COMPLETE", "b": "COMPLETE"}
        assert second in executor._pool._processes  # the same worker, alive
    finally:
        executor.close()


def test_diagnose_probes_are_stored_with_each_run(tmp_path: Path) -> None:
    sweep = small_sweep(probes=["signal", "gradients"], seeds=[0])
    with SQLiteStore(tmp_path / "runs.db") as store:
        run_sweep(sweep, store, LocalExecutor(1), progress=False)
        records = store.runs()
    for r in records:
        diag = r.probes["diagnose"]
        assert diag["verdict"] and len(diag["signal"]["layers"]) == r.spec["arch"]["depth"] + 1
        assert all(math.isfinite(layer["grad_norm"]) for layer in diag["gradients"]["layers"])


def test_tpe_runs_budget_distinct_points_deterministically(tmp_path: Path) -> None:
    sweep = small_sweep(
        axes={"arch.depth": [1, 2, 3], "arch.width": [4, 8, 16]},
        seeds=[0],
        strategy="tpe",
        budget=5,
        objective="val_loss",
    )
    names = []
    for i in range(2):
        with SQLiteStore(tmp_path / f"runs{i}.db") as store:
            summary = run_sweep(sweep, store, LocalExecutor(1), progress=False)
            names.append([r.spec["name"] for r in store.runs()])
            assert summary.executed == 5 and summary.counts[RunState.COMPLETE] == 5
    assert names[0] == names[1] and len(set(names[0])) == 5
    # Resume with a larger budget: the 5 finished points are kept, 2 new ones are run.
    with SQLiteStore(tmp_path / "runs0.db") as store:
        more = run_sweep(
            dataclasses.replace(sweep, budget=7), store, LocalExecutor(1), progress=False
        )
        assert more.executed == 2 and more.skipped == 5
        assert len(sweep_records(store, sweep)) == 7


# -- kill -9 the driver -------------------------------------------------------------------------


def _driver(sweep_file: Path, store: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "depthlab.cli.main", "sweep", str(sweep_file)]
        + ["--store", str(store), "--workers", str(workers), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_for_progress(store_path: Path, proc: subprocess.Popen[bytes], complete: int) -> None:
    """Until more than ``complete`` runs are COMPLETE (or the driver exits, or 120 s pass)."""
    import sqlite3

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=5)
            try:
                n = conn.execute("SELECT count(*) FROM runs WHERE state = 'COMPLETE'").fetchone()
            finally:
                conn.close()
            if n[0] > complete:
                return
        except sqlite3.Error:
            pass  # not created yet
        time.sleep(0.05)


def _left_in_group(pgid: int, within: float) -> list[str]:
    """The processes of group ``pgid`` still alive ``within`` seconds from now (``pid: cmd``);
    polls, so it returns as soon as the group is empty. Zombies count as gone."""
    deadline = time.monotonic() + within
    while True:
        left = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
            state, group = fields[0], int(fields[2])
            if group == pgid and state != "Z":
                left.append(f"{entry.name}: {stat[stat.index('(') + 1 : stat.rindex(')')]}")
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_workers_die_with_a_killed_driver(tmp_path: Path) -> None:
    """``kill -9`` of the driver mid-run: its two workers (and every other process it started)
    are gone within seconds, not orphaned."""
    sweep_file = tmp_path / "sweep.yaml"
    data = {
        "base": {**BASE, "train": {**BASE["train"], "epochs": 40}},
        "axes": {"arch.depth": [1, 2, 3, 4, 5, 6]},
        "seeds": [0, 1],
    }
    sweep_file.write_text(yaml.safe_dump(data))
    store_path = tmp_path / "runs.db"
    proc = _driver(sweep_file, store_path, workers=2)
    try:
        _wait_for_progress(store_path, proc, 0)  # a run finished: the workers are up and busy
        assert proc.poll() is None, "the sweep ended before the kill; make its runs longer"
        workers = [p for p in _left_in_group(proc.pid, 0) if not p.startswith(f"{proc.pid}:")]
        assert len(workers) >= 2, workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        start = time.monotonic()
        left = _left_in_group(proc.pid, within=10.0)
        assert not left, f"processes outlived the killed driver: {left}"
        assert time.monotonic() - start < 5.0
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_kill_9_the_driver_at_random_moments_then_resume(tmp_path: Path) -> None:
    """Twelve SIGKILLs of the driver at random moments; then a resume finishes the sweep.

    After every kill the file passes ``PRAGMA integrity_check`` and every run that was COMPLETE
    before is still COMPLETE with the very same record. At the end every planned run is
    COMPLETE exactly once. No worker outlives its killed driver by more than a few seconds.
    """
    sweep_file = tmp_path / "sweep.yaml"
    data = {
        "base": {**BASE, "train": {**BASE["train"], "epochs": 30}},
        "axes": {"arch.depth": [1, 2, 3, 4], "arch.width": [8, 16, 32]},
        "seeds": [0, 1],
    }
    sweep_file.write_text(yaml.safe_dump(data))
    sweep = SweepSpec.from_dict(data)
    planned = {r.run_id for r in planned_records(sweep)}
    store_path = tmp_path / "runs.db"
    rng = random.Random(1234)
    finished: dict[str, object] = {}
    kills_mid_sweep = 0
    for i in range(12):
        proc = _driver(sweep_file, store_path)
        if i % 4 == 3:  # during start-up: before, while or just after the store is set up
            time.sleep(rng.uniform(0.05, 2.0))
        else:  # mid-sweep: a random moment after this driver finished its first run
            _wait_for_progress(store_path, proc, len(finished))
            time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = _left_in_group(proc.pid, within=15.0)
        if left:  # clean up before failing, so no worker outlives the test either
            os.killpg(proc.pid, signal.SIGKILL)
        assert not left, f"processes outlived the killed driver: {left}"
        if not store_path.exists():
            continue
        with SQLiteStore(store_path) as store:
            assert store.integrity_check() == "ok"
            records = {r.run_id: r for r in store.runs()}
        for run_id, record in finished.items():
            assert records[run_id] == record, f"finished run {run_id} changed after a kill"
        finished.update({k: r for k, r in records.items() if r.state is RunState.COMPLETE})
        if 0 < len(finished) < len(planned) and any(
            r.state is RunState.RUNNING for r in records.values()
        ):
            kills_mid_sweep += 1
    assert kills_mid_sweep >= 3, kills_mid_sweep
    proc = _driver(sweep_file, store_path)
    assert proc.wait(timeout=300) == 0
    with SQLiteStore(store_path) as store:
        assert store.integrity_check() == "ok"
        records = store.runs()
    assert sorted(r.run_id for r in records) == sorted(planned)  # each planned run exactly once
    assert all(r.state is RunState.COMPLETE for r in records)
    for r in records:
        if r.run_id in finished:
            assert r == finished[r.run_id]
    assert any(r.attempt > 1 for r in records)  # some run was redone after a kill


@pytest.mark.slow
def test_ray_and_local_executors_agree(tmp_path: Path) -> None:
    """The same sweep on a local Ray instance (2 CPUs, started here) and on the process pool."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    from depthlab.sweep import RayExecutor

    sweep = small_sweep(seeds=[0])
    results = {}
    for name, executor in (("local", LocalExecutor(2)), ("ray", RayExecutor(2))):
        with SQLiteStore(tmp_path / f"{name}.db") as store:
            summary = run_sweep(sweep, store, executor, progress=False)
            assert summary.finished and summary.counts[RunState.COMPLETE] == 4
            results[name] = {r.run_id: (r.metrics, r.history) for r in store.runs()}
    assert results["ray"] == results["local"]
