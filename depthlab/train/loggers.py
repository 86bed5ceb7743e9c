"""Loggers: where a run's hyperparameters, curves and final metrics go while it trains.

A logger is any object with the three methods of :class:`Logger`; ``fit(..., loggers=[...])``
calls, in order:

* ``start(hparams)`` before the first step, with the run's hyperparameters as flat
  ``{"arch.depth": 8, "train.lr": 0.1, ...}`` (see :func:`hparams_of`);
* ``log_metrics(row, step)`` after every epoch with that epoch's history row (``train_loss``,
  ``lr``, the val/test metrics of evaluated epochs, ...) and ``step`` = the epoch (1, 2, ...);
* ``finish(metrics, state)`` once the run is over, also when it diverged: the final metrics
  (``test_accuracy``, ...; NaN/inf possible) and ``"COMPLETE"`` or ``"DIVERGED"``.

A logger may also have ``log_histogram(tag, values, step)`` and ``log_text(tag, text, step)``;
:func:`log_diagnosis` uses them for a diagnosis's per-layer numbers and verdict. Two loggers
ship here — :class:`CSVHistory` (``history.csv``, row by row) and :class:`TensorBoard` — and a
user's own (MLflow, Weights & Biases) is a class of a few lines with the same three methods.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from depthlab._optional import require
from depthlab.spec import RunSpec, TrainSpec
from depthlab.train.callbacks import Callback, TrainState

__all__ = [
    "CSVHistory",
    "HParam",
    "Logger",
    "TensorBoard",
    "hparams_of",
    "log_diagnosis",
    "write_history_csv",
]

#: A hyperparameter value as loggers receive it (lists and mappings arrive as compact JSON text).
HParam = bool | int | float | str


@runtime_checkable
class Logger(Protocol):
    """What ``fit`` calls; see the module doc for when and with what."""

    def start(self, hparams: Mapping[str, HParam]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def finish(self, metrics: Mapping[str, float], state: str) -> None: ...


def hparams_of(run_spec: RunSpec | None, train: TrainSpec) -> dict[str, HParam]:
    """The run's spec flattened to ``section.field`` (the run's name left out), or, for a bare
    ``fit`` without a run spec, its ``train.*`` fields. Lists become compact JSON text and
    ``None`` the text ``"none"``, the types every logger (TensorBoard's HParams too) accepts."""
    import json

    data = run_spec.to_dict() if run_spec is not None else {"train": train.to_dict()}
    out: dict[str, HParam] = {}
    for section, fields in data.items():
        if not isinstance(fields, Mapping):
            continue
        for name, value in fields.items():
            if isinstance(value, bool | int | float | str):
                out[f"{section}.{name}"] = value
            elif value is None:
                out[f"{section}.{name}"] = "none"
            else:
                out[f"{section}.{name}"] = json.dumps(value, separators=(",", ":"), default=str)
    return out


class LoggerFeed(Callback):
    """Feeds ``fit``'s loggers from the loop: ``start`` and one ``log_metrics`` per epoch; the
    loop calls :meth:`finish` with the result."""

    def __init__(self, loggers: Sequence[Logger], hparams: Mapping[str, HParam]) -> None:
        for logger in loggers:
            if not isinstance(logger, Logger):
                raise TypeError(
                    f"{logger!r} is not a logger: it needs start, log_metrics and finish methods"
                )
        self.loggers = list(loggers)
        self.hparams = dict(hparams)

    def on_train_start(self, state: TrainState) -> None:
        for logger in self.loggers:
            logger.start(self.hparams)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, state.epoch + 1)

    def finish(self, metrics: Mapping[str, float], state: str) -> None:
        for logger in self.loggers:
            logger.finish(metrics, state)


# -- history.csv ----------------------------------------------------------------------------------

_FIRST = ("epoch", "step", "lr")


def _columns(rows: Sequence[Mapping[str, float]]) -> list[str]:
    keys = {k for row in rows for k in row}
    return [k for k in _FIRST if k in keys] + sorted(keys - set(_FIRST))


def write_history_csv(path: str | Path, rows: Sequence[Mapping[str, float]]) -> None:
    """``epoch, step, lr``, then the other fields in name order; empty where a row has none."""
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_columns(rows))
        writer.writeheader()
        writer.writerows(rows)


class CSVHistory:
    """``history.csv`` written as the run goes: a row per epoch, appended (the file is rewritten
    only when a row brings a new column, e.g. the first evaluated epoch with ``eval_every``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []
        self._columns: list[str] = []

    def start(self, hparams: Mapping[str, HParam]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows, self._columns = [], []

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.rows.append(dict(metrics))
        columns = _columns(self.rows)
        if columns != self._columns:
            self._columns = columns
            write_history_csv(self.path, self.rows)
            return
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=columns).writerow(self.rows[-1])

    def finish(self, metrics: Mapping[str, float], state: str) -> None:
        if not self.rows:  # a run that diverged in its first epoch still leaves a header
            self.path.write_text("epoch,step,lr\n")


# -- TensorBoard ----------------------------------------------------------------------------------


class TensorBoard:
    """TensorBoard event files in ``log_dir`` (one run; point TensorBoard at its parent to
    compare runs). Each epoch's history row becomes scalars (tag = field name, step = epoch);
    at the end the final metrics are scalars ``final/<metric>`` and the hyperparameters, with
    the run's ``state``, go to the HParams tab against those metrics (``add_hparams``'s summary,
    written into this run's own event file). Needs ``pip install "depthlab[tensorboard]"``.
    """

    def __init__(self, log_dir: str | Path) -> None:
        require("tensorboard", "the TensorBoard logger")
        self.log_dir = Path(log_dir)
        self.hparams: dict[str, HParam] = {}
        self._writer: Any = None

    @property
    def writer(self) -> Any:
        """The ``torch.utils.tensorboard.SummaryWriter`` (opened on first use)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        return self._writer

    def start(self, hparams: Mapping[str, HParam]) -> None:
        self.hparams = dict(hparams)
        _ = self.writer

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for tag, value in metrics.items():
            if tag not in ("epoch", "step") and isinstance(value, int | float):
                self.writer.add_scalar(tag, float(value), step)
        self.writer.flush()  # a crashed run keeps its curve so far

    def log_histogram(self, tag: str, values: Sequence[float], step: int = 0) -> None:
        import numpy as np

        finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
        if finite.size:
            self.writer.add_histogram(tag, finite, step)

    def log_text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, step)

    def finish(self, metrics: Mapping[str, float], state: str) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        final = {f"final/{k}": float(v) for k, v in metrics.items()}
        for tag, value in final.items():
            self.writer.add_scalar(tag, value, 0)
        params = {**self.hparams, "state": state}
        file_writer = self.writer._get_file_writer()
        for summary in hparams_summary(params, final):
            file_writer.add_summary(summary)
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# -- a diagnosis ----------------------------------------------------------------------------------


def log_diagnosis(logger: Any, diagnosis: Mapping[str, Any], step: int = 0) -> None:
    """A diagnosis (``dl.diagnose``'s dict) as ``diagnosis/...`` scalars: ``p_trains`` and every
    number a probe reported (``diagnosis/signal/second_moment_ratio``); per-layer numbers
    (``signal``'s ``layers[i].second_moment``, ...) as one histogram each over the layers
    (``diagnosis/signal/layers/second_moment``) when the logger has ``log_histogram``; the
    verdict as text when it has ``log_text``."""
    scalars: dict[str, float] = {}
    if isinstance(diagnosis.get("p_trains"), int | float):
        scalars["diagnosis/p_trains"] = float(diagnosis["p_trains"])
    histogram = getattr(logger, "log_histogram", None)
    for probe in diagnosis.get("probes") or {}:
        result = diagnosis.get(probe)
        if not isinstance(result, Mapping):
            continue
        for key, value in result.items():
            tag = f"diagnosis/{probe}/{key}"
            if isinstance(value, int | float) and not isinstance(value, bool):
                scalars[tag] = float(value)
            elif histogram is not None and _records(value):
                for field, values in _per_layer(value).items():
                    histogram(f"{tag}/{field}", values, step)
    logger.log_metrics(scalars, step)
    text = getattr(logger, "log_text", None)
    if text is not None and "verdict" in diagnosis:
        why = "; ".join(
            f"{f.get('verdict', '')}: {f.get('evidence', '')}"
            for f in diagnosis.get("findings") or []
            if isinstance(f, Mapping)
        )
        text("diagnosis/verdict", f"{diagnosis['verdict']}" + (f": {why}" if why else ""), step)


def _records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _per_layer(layers: list[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Each numeric field of a per-layer list, its values in layer order."""
    out: dict[str, list[float]] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out.setdefault(key, []).append(float(value))
    return out
