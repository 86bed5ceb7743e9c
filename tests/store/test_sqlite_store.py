"""SQLiteStore: the conformance suite plus WAL, integrity, bad files and crash safety."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import sqlite3
import time
import warnings
from pathlib import Path

import pytest

from depthlab.exceptions import StoreError
from depthlab.store import RunState, SQLiteStore
from depthlab.store.sqlite import SCHEMA_VERSION
from depthlab.testing.store import StoreTestCase, make_records


class TestSQLite(StoreTestCase):
    def make_store(self, tmp_path: Path) -> SQLiteStore:
        return SQLiteStore(tmp_path / "runs.db")


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "runs.db") as store:
        store.add_pending(make_records(2))
        assert store.journal_mode() == "wal"
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert (tmp_path / "runs.db-wal").exists()
    # WAL is a property of the file: a plain connection sees it too.
    raw = sqlite3.connect(tmp_path / "runs.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        raw.close()


def test_integrity_check_ok(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "runs.db") as store:
        assert store.integrity_check() == "ok"
        store.add_pending(make_records(5))
        store.finish(dataclasses.replace(store.claim("h0-s0", "h"), state=RunState.COMPLETE))
        assert store.integrity_check() == "ok"


def _open_error(path: Path) -> str:
    with pytest.raises(StoreError) as info:
        SQLiteStore(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_corrupt_file_is_one_line_store_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is not an SQLite database\n" * 200)
    assert "not a database" in _open_error(path)


def test_missing_directory_and_directory_path(tmp_path: Path) -> None:
    assert "no directory" in _open_error(tmp_path / "missing" / "runs.db")
    (tmp_path / "adir").mkdir()
    assert "not a file" in _open_error(tmp_path / "adir")


def test_foreign_sqlite_file_and_newer_schema(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    raw = sqlite3.connect(other)
    with raw:
        raw.execute("CREATE TABLE users (name TEXT)")
    raw.close()
    assert "not a depthlab run store" in _open_error(other)

    newer = tmp_path / "newer.db"
    SQLiteStore(newer).close()
    raw = sqlite3.connect(newer)
    with raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    assert "newer" in _open_error(newer)


# -- crash safety -------------------------------------------------------------------------------


def _child_finishes_runs(path: Path, run_ids: list[str], out_fd: int) -> None:
    """The driver under test: finish each run, then report its id (only after the commit)."""
    store = SQLiteStore(path)
    for i, run_id in enumerate(run_ids):
        claimed = store.claim(run_id, f"pid{os.getpid()}")
        store.finish(
            dataclasses.replace(claimed, state=RunState.COMPLETE, metrics={"val_loss": float(i)})
        )
        os.write(out_fd, f"{run_id}\n".encode())  # unbuffered: a flush per line


def _read_lines(fd: int, buf: bytearray, want: int | None) -> list[str]:
    """Read whole lines from ``fd`` until ``want`` lines are in ``buf`` (or EOF if None)."""
    while want is None or buf.count(b"\n") < want:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf.extend(chunk)
    return [line for line in buf.decode().split("\n")[: buf.count(b"\n")] if line]


def test_sigkill_mid_loop_loses_no_finished_run(tmp_path: Path) -> None:
    """SIGKILL a driver at a random moment; every run it reported finished is COMPLETE.

    The child is forked from this process (it already has depthlab imported, so a repetition
    costs milliseconds, not the seconds a fresh interpreter needs to import torch). It writes
    each run id to its stdout pipe right after ``finish`` commits; the kill lands after a random
    number of reports plus a random delay, often inside a commit.
    """
    rng = random.Random(1234)
    n_runs, repeats, killed_mid_loop = 12, 16, 0
    t0 = time.perf_counter()
    for rep in range(repeats):
        path = tmp_path / f"crash{rep}.db"
        run_ids = [r.run_id for r in make_records(n_runs, spec_hash=f"r{rep}")]
        with SQLiteStore(path) as store:  # closed before the fork: no connection crosses it
            store.add_pending(make_records(n_runs, spec_hash=f"r{rep}"))
        read_fd, write_fd = os.pipe()
        with warnings.catch_warnings():
            # Python >= 3.12 warns about fork() in a process with threads; the child only
            # runs SQLite on its own fresh connection and leaves with os._exit.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(read_fd)
                _child_finishes_runs(path, run_ids, write_fd)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        buf = bytearray()
        try:
            _read_lines(read_fd, buf, rng.randrange(0, n_runs - 1))
            time.sleep(rng.uniform(0.0, 0.004))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            reported = _read_lines(read_fd, buf, None)  # whatever it wrote before dying
        finally:
            os.close(read_fd)
        if os.WIFSIGNALED(status):
            assert os.WTERMSIG(status) == signal.SIGKILL
            killed_mid_loop += 1
        else:
            assert os.WEXITSTATUS(status) == 0 and len(reported) == n_runs

        with SQLiteStore(path) as store:
            assert store.integrity_check() == "ok"
            for i, run_id in enumerate(reported):
                run = store.get(run_id)
                assert run.state is RunState.COMPLETE, (rep, run_id, run.state)
                assert run.metrics == {"val_loss": float(i)}
            complete = [r.run_id for r in store.runs(RunState.COMPLETE)]
            # In order, and at most one commit the child did not live to report.
            assert complete[: len(reported)] == reported
            assert len(complete) - len(reported) in (0, 1)
            assert store.counts()[RunState.RUNNING] <= 1
            # The resumed driver: stale claims back to PENDING, then finish the rest.
            store.reset_running()
            for run in store.runs(RunState.PENDING):
                claimed = store.claim(run.run_id, "resumed")
                store.finish(dataclasses.replace(claimed, state=RunState.COMPLETE))
            assert store.counts()[RunState.COMPLETE] == n_runs
            assert store.integrity_check() == "ok"
    assert killed_mid_loop >= repeats // 2, killed_mid_loop
    assert time.perf_counter() - t0 < 20.0


def test_a_version_1_file_is_upgraded_to_admit_stopped_runs(tmp_path: Path) -> None:
    """A store written before the STOPPED state existed (its CHECK lists the old states)."""
    path = tmp_path / "runs.db"
    with SQLiteStore(path) as store:
        store.add_pending(make_records(3))
    raw = sqlite3.connect(path)
    try:
        with raw:
            sql = raw.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
            old = sql.replace(", 'STOPPED'", "")
            assert old != sql
            raw.execute("ALTER TABLE runs RENAME TO runs_new")
            raw.execute(old)
            raw.execute("INSERT INTO runs SELECT * FROM runs_new")
            raw.execute("DROP TABLE runs_new")
            raw.execute("UPDATE schema_version SET version = 1")
    finally:
        raw.close()
    with SQLiteStore(path) as store:
        assert [r.run_id for r in store.runs()] == [r.run_id for r in make_records(3)]
        store.claim("h0-s1", "host-a")
        done = store.finish(dataclasses.replace(store.get("h0-s1"), state=RunState.STOPPED))
        assert done.state is RunState.STOPPED
        assert store.conn.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]
