"""The default run store: one SQLite file, safe against a crash at any moment.

Durability choices, each at the line that makes it:

* ``journal_mode=WAL``: readers (a report, ``depthlab sweep --status``) never block the writer
  and the writer never blocks them; a reader sees the last committed state, never a half-written
  transaction.
* ``synchronous=FULL``: in WAL mode NORMAL already survives the *process* being killed, but a
  power loss or OS crash may roll back the last few commits. A run costs seconds to hours and an
  fsync per commit costs milliseconds, so FULL: once ``finish`` returns, the run is on disk.
* Every mutation is one transaction opened with ``BEGIN IMMEDIATE`` inside ``with conn:``: the
  write lock is taken before the read that decides the write (no lost update between two
  workers), and an exception rolls the whole mutation back.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from depthlab.exceptions import StoreError
from depthlab.store.base import (
    RETRYABLE,
    TERMINAL_STATES,
    AbstractStore,
    RunRecord,
    RunState,
    from_json,
)
from depthlab.store.base import to_json as _to_json

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

#: Version of the table layout below; a file written by a newer layout is refused. Version 2
#: admits the STOPPED state; a version-1 file is upgraded in place when opened.
SCHEMA_VERSION = 2

_COLUMNS = (
    "run_id",
    "spec_hash",
    "spec",
    "seed",
    "state",
    "metrics",
    "probes",
    "error",
    "started_at",
    "finished_at",
    "seconds",
    "host",
    "attempt",
    "history",
)
_JSON_COLUMNS = ("spec", "metrics", "probes", "history")
_STATES = ", ".join(f"'{s.value}'" for s in RunState)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order
    run_id      TEXT NOT NULL UNIQUE,
    spec_hash   TEXT NOT NULL,
    spec        TEXT NOT NULL,                      -- JSON
    seed        INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ({_STATES})),
    metrics     TEXT NOT NULL,                      -- JSON
    probes      TEXT NOT NULL,                      -- JSON
    error       TEXT NOT NULL,
    started_at  REAL,
    finished_at REAL,
    seconds     REAL,
    host        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    history     TEXT NOT NULL                       -- JSON: one row per epoch
);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
"""


def _upgrade(conn: sqlite3.Connection) -> None:
    """Rebuild the runs table so that its state check admits every current state (SQLite cannot
    alter a CHECK constraint); rows, their order and ids are kept. Inside the caller's
    transaction: a crash leaves the old file as it was."""
    conn.execute("ALTER TABLE runs RENAME TO runs_old")
    conn.execute("DROP INDEX IF EXISTS runs_state")
    for stmt in _SCHEMA.split(";"):
        if "CREATE TABLE IF NOT EXISTS runs" in stmt or "CREATE INDEX" in stmt:
            conn.execute(stmt)
    columns = ", ".join(("seq", *_COLUMNS))
    conn.execute(f"INSERT INTO runs ({columns}) SELECT {columns} FROM runs_old")
    conn.execute("DROP TABLE runs_old")
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))


def _dumps(value: Any) -> str:
    # allow_nan=False: the column holds strict JSON, readable by SQLite's json functions too.
    return json.dumps(_to_json(value), allow_nan=False, sort_keys=True)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class SQLiteStore(AbstractStore):
    """A run store in the SQLite file ``path`` (created if missing; its directory must exist).

    ``timeout`` is how long (seconds) a call waits for another process's write lock. One store
    object belongs to one thread; other threads and processes open their own.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        if not self.path.parent.is_dir():
            raise StoreError(f"cannot open run store {self.path}: no directory {self.path.parent}")
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"cannot open run store {self.path}: not a file")
        try:
            # isolation_level=None: no implicit transactions; each mutation opens its own.
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open run store {self.path}: {_one_line(err)}") from None
        try:
            self._setup(conn)
        except (sqlite3.Error, StoreError) as err:
            conn.close()
            if isinstance(err, StoreError):
                raise
            raise StoreError(f"cannot open run store {self.path}: {_one_line(err)}") from None
        self._conn = conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        # The first statement reads the header: a non-SQLite file fails here.
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot open run store {self.path}: journal_mode is {mode}, not wal")
        conn.execute("PRAGMA synchronous=FULL")  # why FULL, not NORMAL: see the module doc
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            tables.discard("sqlite_sequence")
            if tables and "schema_version" not in tables:
                raise StoreError(
                    f"cannot open run store {self.path}: an SQLite file that is not a depthlab "
                    f"run store (tables: {', '.join(sorted(tables))})"
                )
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            if row[0] is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise StoreError(
                    f"cannot open run store {self.path}: schema version {row[0]} is newer than "
                    f"this depthlab's {SCHEMA_VERSION}; upgrade depthlab"
                )
            elif row[0] < SCHEMA_VERSION:
                _upgrade(conn)

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (for diagnostics and tests)."""
        if self._conn is None:
            raise StoreError(f"run store {self.path} is closed")
        return self._conn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite errors (locked, disk full, corruption) into one-line StoreErrors."""
        try:
            yield
        except sqlite3.Error as err:
            raise StoreError(f"run store {self.path}: {_one_line(err)}") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        with self._errors(), conn:  # commits on success, rolls back on any exception
            conn.execute("BEGIN IMMEDIATE")
            yield conn

    def _row_to_record(self, row: sqlite3.Row | tuple[Any, ...]) -> RunRecord:
        data = dict(zip(_COLUMNS, row, strict=True))
        for col in _JSON_COLUMNS:
            data[col] = from_json(json.loads(data[col]))
        return RunRecord(**data)

    def _fetch(self, conn: sqlite3.Connection, run_id: str) -> RunRecord:
        row = conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"run store {self.path}: no run {run_id!r}")
        return self._row_to_record(row)

    # -- AbstractStore --------------------------------------------------------------------------

    def add_pending(self, records: Iterable[RunRecord]) -> int:
        rows = []
        for r in records:
            if r.state is not RunState.PENDING:
                raise StoreError(f"add_pending takes PENDING runs; {r.run_id!r} is {r.state.value}")
            rows.append(
                (r.run_id, r.spec_hash, _dumps(r.spec), r.seed, r.state.value, _dumps(r.metrics))
                + (_dumps(r.probes), r.error, r.started_at, r.finished_at, r.seconds, r.host)
                + (r.attempt, _dumps(r.history))
            )
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                f"INSERT OR IGNORE INTO runs ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                rows,
            )
            return conn.total_changes - before

    def claim(
        self, run_id: str, host: str, *, stale_after: float | None = None, retry: bool = False
    ) -> RunRecord:
        now = time.time()
        with self._transaction() as conn:
            current = self._fetch(conn, run_id)
            stale = (
                current.state is RunState.RUNNING
                and stale_after is not None
                and (current.started_at is None or now - current.started_at >= stale_after)
            )
            retried = retry and current.state in RETRYABLE
            if current.state is not RunState.PENDING and not stale and not retried:
                raise StoreError(
                    f"run store {self.path}: cannot claim run {run_id!r} in state "
                    f"{current.state.value}; only PENDING, stale RUNNING or (with retry=True) "
                    "FAILED/DIVERGED/STOPPED runs can be claimed"
                )
            conn.execute(
                "UPDATE runs SET state = ?, host = ?, attempt = attempt + 1, started_at = ?, "
                "finished_at = NULL, seconds = NULL, error = '' WHERE run_id = ?",
                (RunState.RUNNING.value, host, now, run_id),
            )
            return self._fetch(conn, run_id)

    def finish(self, record: RunRecord) -> RunRecord:
        if record.state not in TERMINAL_STATES:
            valid = ", ".join(sorted(s.value for s in TERMINAL_STATES))
            raise StoreError(
                f"finish needs a terminal state ({valid}); run {record.run_id!r} "
                f"is {record.state.value}"
            )
        finished_at = record.finished_at if record.finished_at is not None else time.time()
        seconds = record.seconds
        if seconds is None and record.started_at is not None:
            seconds = finished_at - record.started_at
        metrics, probes = _dumps(record.metrics), _dumps(record.probes)
        history = _dumps(record.history)
        with self._transaction() as conn:
            current = self._fetch(conn, record.run_id)
            if current.state is RunState.COMPLETE:
                raise StoreError(
                    f"run store {self.path}: run {record.run_id!r} is already COMPLETE; "
                    f"refusing to overwrite it with {record.state.value}"
                )
            conn.execute(
                "UPDATE runs SET state = ?, metrics = ?, probes = ?, history = ?, error = ?, "
                "started_at = ?, finished_at = ?, seconds = ?, host = ? WHERE run_id = ?",
                (
                    record.state.value,
                    metrics,
                    probes,
                    history,
                    record.error,
                    record.started_at if record.started_at is not None else current.started_at,
                    finished_at,
                    seconds,
                    record.host or current.host,
                    record.run_id,
                ),
            )
            return self._fetch(conn, record.run_id)

    def get(self, run_id: str) -> RunRecord:
        with self._errors():
            return self._fetch(self.conn, run_id)

    def runs(self, state: RunState | None = None) -> list[RunRecord]:
        query = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        args: tuple[str, ...] = ()
        if state is not None:
            query += " WHERE state = ?"
            args = (RunState(state).value,)
        with self._errors():
            rows = self.conn.execute(query + " ORDER BY seq", args).fetchall()
        return [self._row_to_record(r) for r in rows]

    def reset_running(self) -> int:
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET state = ?, host = '', started_at = NULL WHERE state = ?",
                (RunState.PENDING.value, RunState.RUNNING.value),
            )
            return cur.rowcount

    def counts(self) -> dict[RunState, int]:
        with self._errors():
            rows = self.conn.execute("SELECT state, count(*) FROM runs GROUP BY state").fetchall()
        out = dict.fromkeys(RunState, 0)
        out.update({RunState(s): n for s, n in rows})
        return out

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- SQLite only ----------------------------------------------------------------------------

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"``, or the problems it found, one per line."""
        with self._errors():
            rows = self.conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)

    def journal_mode(self) -> str:
        """The connection's journal mode (``"wal"``)."""
        with self._errors():
            return str(self.conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"
