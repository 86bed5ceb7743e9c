"""DataFrames on demand: pandas (and polars) are imported only when a frame is asked for.

pandas comes with the ``frames`` extra (``pip install "depthlab[frames]"``), not the core: every
table depthlab makes is plain rows first (what ``depthlab runs --format csv|jsonl`` writes), so
pandas is needed only to hand those rows to pandas, and a core requirement on pandas would also
constrain the numpy of every environment depthlab is installed into.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from depthlab._optional import require

__all__ = ["history_frame", "pandas_frame", "polars_frame"]

#: History fields that count (epochs, optimiser steps): integers in a frame.
_COUNTS = ("epoch", "step")
#: The order of a history's columns (a stored history comes back with its keys sorted).
_ORDER = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
)


def pandas_frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], what: str) -> Any:
    """A ``pandas.DataFrame`` with exactly ``columns`` in that order (missing cells: NaN/None)."""
    pd = require("pandas", what)
    return pd.DataFrame.from_records([dict(r) for r in rows], columns=list(columns))


def polars_frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], what: str) -> Any:
    """A ``polars.DataFrame`` with exactly ``columns``; every row is read to infer the types."""
    pl = require("polars", what)
    data = [{c: r.get(c) for c in columns} for r in rows]
    if not data:
        return pl.DataFrame({c: [] for c in columns})
    return pl.DataFrame(data, infer_schema_length=None)


def history_frame(history: Sequence[Mapping[str, float]]) -> Any:
    """One run's curves: a row per epoch, ``epoch`` and ``step`` as integers, then ``lr``,
    ``train_loss`` (and ``train_accuracy``), and the val/test metrics of evaluated epochs (NaN
    on the others); any other field after those, in the order the history first has it."""
    columns = [k for k in _ORDER if any(k in row for row in history)]
    for row in history:
        columns += [k for k in row if k not in columns]
    frame = pandas_frame(history, columns, "history_frame()")
    for name in _COUNTS:
        if name in frame and len(frame) and frame[name].notna().all():
            frame[name] = frame[name].astype("int64")
    return frame
