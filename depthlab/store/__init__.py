"""Run store: where a sweep records its runs, behind a small interface (SQLite by default)."""

from depthlab.store.base import TERMINAL_STATES, AbstractStore, RunRecord, RunState
from depthlab.store.sqlite import SQLiteStore

__all__ = ["TERMINAL_STATES", "AbstractStore", "RunRecord", "RunState", "SQLiteStore"]
