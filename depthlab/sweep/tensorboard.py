"""A sweep's runs in TensorBoard: one sub-directory per run, its axes in the HParams tab.

``depthlab sweep SWEEP.yaml --store runs.db --tensorboard tb/`` writes each run as it finishes
(the driver holds its whole record: history, final metrics, diagnosis), so workers never touch
the event files and a Ray sweep writes them the same way. ``tensorboard --logdir tb/`` then
shows every run's curves, the HParams tab compares the runs by their axis values and seed
against their final metrics, and a diagnosed sweep adds each run's diagnosis
(``diagnosis/...`` scalars, per-layer histograms and the verdict as text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from depthlab.store.base import RunRecord
from depthlab.train.loggers import HParam, TensorBoard, log_diagnosis

__all__ = ["export_runs", "run_dir", "write_run"]


def run_dir(root: str | Path, record: RunRecord) -> Path:
    """``root/<run name>`` (``arch.depth=8,arch.act=tanh,seed=0``), characters a file name
    cannot hold replaced by ``_``; the run id when the run has no name."""
    name = str(record.spec.get("name") or record.run_id)
    return Path(root) / (re.sub(r"[^\w.,=+\-\[\]]", "_", name) or record.run_id)


def _hparams(record: RunRecord, axes: Sequence[str]) -> dict[str, HParam]:
    import json

    out: dict[str, HParam] = {}
    for path in axes:
        section, _, field = path.partition(".")
        value = (record.spec.get(section) or {}).get(field)
        out[path] = (
            value
            if isinstance(value, bool | int | float | str)
            else json.dumps(value, separators=(",", ":"))
        )
    out["seed"] = record.seed
    return out


def write_run(record: RunRecord, root: str | Path, axes: Sequence[str], logger: Any = None) -> Path:
    """Write one finished run under ``root`` (replacing what an earlier attempt wrote there).

    ``logger`` (default: a :class:`TensorBoard` on :func:`run_dir`) receives the run as ``fit``
    would have fed it: ``start`` with the axes and seed, ``log_metrics`` per history row,
    the diagnosis, and ``finish`` with the final metrics and state."""
    directory = run_dir(root, record)
    if logger is None:
        for old in directory.glob("events.out.tfevents.*"):
            old.unlink()
        logger = TensorBoard(directory)
    logger.start(_hparams(record, axes))
    for i, row in enumerate(record.history):
        logger.log_metrics(row, int(row.get("epoch", i + 1)))
    diagnosis = record.probes.get("diagnose")
    if isinstance(diagnosis, dict) and "verdict" in diagnosis:
        log_diagnosis(logger, diagnosis)
    logger.finish(record.metrics, record.state.value)
    return directory


def export_runs(
    records: Iterable[RunRecord], root: str | Path, axes: Sequence[str], *, missing_only: bool
) -> int:
    """Write every finished run (with ``missing_only``: those without a directory yet, e.g. the
    runs a resumed sweep skipped); how many were written."""
    written = 0
    for record in records:
        if not record.is_terminal or (missing_only and run_dir(root, record).exists()):
            continue
        write_run(record, root, axes)
        written += 1
    return written
