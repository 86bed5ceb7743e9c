"""A run store as a table: one row per run, the form pandas, polars, a spreadsheet or parquet reads.

::

    import depthlab as dl
    df = dl.load_runs("runs.db").to_pandas()

Columns, in this order (a column appears when some run has it):

* ``name``, ``run_id``;
* the axes: ``arch.depth``, ``train.lr``, ... — the paths the sweep varies (those its run names
  list, and any other field that differs between runs), read from each run's spec, so typed as
  the spec holds them; a list such as ``arch.width: [64, 32]`` is compact JSON text;
* ``seed``, ``state`` (COMPLETE, DIVERGED, FAILED, ...);
* when the runs were diagnosed at initialisation (a sweep with ``probes``), the prediction
  ``verdict``, ``p_trains``, ``decided_by`` beside the outcome ``progress`` and ``trained``:
  progress = (test accuracy − chance) / (reference − chance), with chance the majority class of
  the test split and the sweep's best configuration on the same data (mean over seeds) standing
  in for the calibration's shallow reference net (:mod:`depthlab.diagnosis.calibration`);
  ``trained`` is True at progress ≥ 0.5, None in the ambiguous band (0.35, 0.65), False for a
  run that diverged;
* the final metrics: ``train_loss``, ``val_loss``, ``test_loss``, ``*_accuracy`` (fractions);
* ``seconds`` (the run's own wall-clock time), ``attempt``, ``host``, ``error``;
* every scalar a probe reported: ``probes.<probe>.<key>`` (``probes.signal.second_moment_ratio``,
  ``probes.gradients.max_ratio``, ``probes.optimality.gap``; nested keys joined with dots).
  Per-layer lists stay out; a run's curves are ``RunRecord.history_frame()``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
import statistics
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from depthlab import _json
from depthlab._frames import pandas_frame, polars_frame
from depthlab._optional import require
from depthlab.exceptions import DepthlabError, StoreError
from depthlab.store.base import AbstractStore, RunRecord, RunState
from depthlab.sweep.spec import OBJECTIVES

__all__ = ["Runs", "load_runs", "runs_table"]

_HEAD = ("name", "run_id")
_VERDICT = ("verdict", "p_trains", "decided_by", "progress", "trained")
#: The final metrics a run reports, in the order a sweep's ``objective`` lists them.
_METRICS = OBJECTIVES
_TAIL = ("seconds", "attempt", "host", "error")
_SECTIONS = ("arch", "data", "train")


@dataclasses.dataclass(frozen=True, eq=False)
class Runs:
    """The table of a store's runs (see the module doc); ``records`` are the runs themselves."""

    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    records: tuple[RunRecord, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def select(self, columns: Sequence[str]) -> Runs:
        """The same runs with only ``columns``, in that order; an unknown name lists the valid."""
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise DepthlabError(
                f"unknown column(s) {', '.join(map(repr, unknown))}; "
                f"choices: {', '.join(self.columns)}"
            )
        return Runs(tuple(columns), self.rows, self.records)

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per run with every column (None where a run has no value)."""
        return [{c: r.get(c) for c in self.columns} for r in self.rows]

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` (``pip install "depthlab[frames]"``), a row per run."""
        return pandas_frame(self.rows, self.columns, "Runs.to_pandas()")

    def to_polars(self) -> Any:
        """A ``polars.DataFrame`` (when polars is installed), a row per run."""
        return polars_frame(self.rows, self.columns, "Runs.to_polars()")

    def write_csv(self, stream: IO[str]) -> None:
        """CSV with a header row; empty cells for missing values, ``nan``/``inf`` as Python
        writes them."""
        writer = csv.writer(stream)
        writer.writerow(self.columns)
        for row in self.to_dicts():
            writer.writerow(["" if v is None else v for v in row.values()])

    def write_jsonl(self, stream: IO[str]) -> None:
        """One strict JSON object per line; non-finite floats as ``"NaN"``/``"Infinity"``."""
        for row in self.to_dicts():
            stream.write(json.dumps(_json.to_json(row), allow_nan=False) + "\n")

    def write_parquet(self, path: str | os.PathLike[str]) -> None:
        """A parquet file through pyarrow (``pip install "depthlab[frames]"``)."""
        pa = require("pyarrow", "parquet output")
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self.to_dicts())
        pq.write_table(table, str(path))


def load_runs(
    store_or_path: AbstractStore | str | os.PathLike[str],
    sweep: Any = None,
    *,
    state: RunState | str | None = None,
) -> Runs:
    """The runs of a store (an open store, or the path of an SQLite run store) as a table.

    ``sweep`` (a :class:`~depthlab.sweep.SweepSpec` or the path of its YAML file) keeps only
    that sweep's runs and takes its axes as the axis columns; ``state`` keeps runs in one state.
    """
    spec = _sweep_spec(sweep)
    if isinstance(store_or_path, AbstractStore):
        records = _records(store_or_path, spec, state)
    else:
        from depthlab.store.sqlite import SQLiteStore

        path = Path(store_or_path)
        if not path.is_file():
            raise StoreError(f"no run store at {str(path)!r}")
        with SQLiteStore(path) as store:
            records = _records(store, spec, state)
    axes = list(spec.axes) if spec is not None else None
    return runs_table(records, axes=axes)


def _sweep_spec(sweep: Any) -> Any:
    if sweep is None:
        return None
    from depthlab.sweep.spec import SweepSpec

    if isinstance(sweep, SweepSpec):
        return sweep
    if not Path(sweep).is_file():
        raise DepthlabError(
            f"no sweep file {str(sweep)!r} (the sweep's YAML file selects its runs)"
        )
    return SweepSpec.load(sweep)


def _records(store: AbstractStore, sweep: Any, state: RunState | str | None) -> list[RunRecord]:
    if sweep is not None:
        from depthlab.sweep.driver import sweep_records

        records = sweep_records(store, sweep)
    else:
        records = store.runs()
    if state is not None:
        valid = [s.value for s in RunState]
        if str(getattr(state, "value", state)).upper() not in valid:
            raise DepthlabError(f"unknown state {state!r}; choices: {', '.join(valid)}")
        wanted = RunState(str(getattr(state, "value", state)).upper())
        records = [r for r in records if r.state is wanted]
    return records


def runs_table(records: Sequence[RunRecord], *, axes: Sequence[str] | None = None) -> Runs:
    """The table of ``records``; ``axes`` defaults to what the runs' names and specs show."""
    axes = list(axes) if axes is not None else axis_columns(records)
    rows = [_row(r, axes) for r in records]
    if any("verdict" in row for row in rows):
        _add_outcomes(records, rows, axes)
    metrics = [m for m in _METRICS if any(m in r.metrics for r in records)]
    metrics += sorted({k for r in records for k in r.metrics} - set(metrics))
    probes: list[str] = []
    for row in rows:
        probes += [k for k in row if k.startswith("probes.") and k not in probes]
    probes = [p for p in probes if any(row.get(p) is not None for row in rows)]
    verdict = [c for c in _VERDICT if any(c in row for row in rows)]
    columns = (*_HEAD, *axes, "seed", "state", *verdict, *metrics, *_TAIL, *probes)
    for column in columns:
        _one_type(rows, column)
    return Runs(tuple(columns), tuple(rows), tuple(records))


def axis_columns(records: Sequence[RunRecord]) -> list[str]:
    """The paths a sweep's run names list (``arch.depth=8,train.lr=0.1,seed=0``), in that order,
    then every other spec field whose value differs between the runs."""
    from depthlab.sweep.spec import axis_paths

    valid = set(axis_paths())
    axes: list[str] = []
    for r in records:
        for part in str(r.spec.get("name") or "").split(","):
            path = part.partition("=")[0]
            if "=" in part and path in valid and path not in axes:
                axes.append(path)
    flats = [
        _flatten({s: r.spec.get(s) for s in _SECTIONS if isinstance(r.spec.get(s), dict)})
        for r in records
    ]
    for path in dict.fromkeys(p for flat in flats for p in flat):
        if path in axes or path not in valid:
            continue
        if len({_canon(flat.get(path)) for flat in flats}) > 1:
            axes.append(path)
    return axes


def _row(record: RunRecord, axes: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": str(record.spec.get("name") or ""), "run_id": record.run_id}
    for path in axes:
        section, _, field = path.partition(".")
        value = (record.spec.get(section) or {}).get(field)
        row[path] = value if _scalar(value) else _canon(value)
    row["seed"], row["state"] = record.seed, record.state.value
    diagnosis = record.probes.get("diagnose")
    if isinstance(diagnosis, dict) and "verdict" in diagnosis:
        for key in ("verdict", "p_trains", "decided_by"):
            row[key] = diagnosis.get(key)
    row.update(record.metrics)
    row.update(seconds=record.seconds, attempt=record.attempt, host=record.host, error=record.error)
    for name, result in record.probes.items():
        if name == "diagnose" and isinstance(result, dict):
            # a diagnosis lists the probes it ran; each one's result sits under its name
            for probe in result.get("probes") or {}:
                _scalars(result.get(probe), f"probes.{probe}", row)
        else:
            _scalars(result, f"probes.{name}", row)
    return row


def _scalars(value: Any, prefix: str, out: dict[str, Any]) -> None:
    """Numbers (and None) under ``prefix``, nested mappings joined with dots; lists left out."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            _scalars(v, f"{prefix}.{k}", out)
    elif value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        out[prefix] = value


def _add_outcomes(
    records: Sequence[RunRecord], rows: list[dict[str, Any]], axes: Sequence[str]
) -> None:
    """``progress`` and ``trained`` per run (see the module doc)."""
    from depthlab.diagnosis.calibration import label
    from depthlab.diagnosis.calibration import progress as progress_of

    by_data: dict[str, dict[tuple[str, ...], list[float]]] = {}
    for r, row in zip(records, rows, strict=True):
        acc = r.metrics.get("test_accuracy")
        if r.state is RunState.COMPLETE and isinstance(acc, float) and math.isfinite(acc):
            config = tuple(_canon(row.get(a)) for a in axes)
            by_data.setdefault(_canon(r.spec.get("data")), {}).setdefault(config, []).append(acc)
    for r, row in zip(records, rows, strict=True):
        row["progress"] = row["trained"] = None
        if r.state is RunState.DIVERGED:
            row["trained"] = False
            continue
        key = _canon(r.spec.get("data"))
        acc = r.metrics.get("test_accuracy")
        if r.state is not RunState.COMPLETE or acc is None or key not in by_data:
            continue
        chance = _chance(key)
        reference = max(statistics.fmean(v) for v in by_data[key].values())
        if chance is None or not reference > chance:
            continue
        row["progress"] = progress_of(acc, chance, reference)
        row["trained"] = label(row["progress"])


@functools.lru_cache(maxsize=16)
def _chance(data_key: str) -> float | None:
    """The majority class's share of the test split of a data spec (None: not a classifier, or
    the data cannot be loaded here)."""
    from depthlab.data import load_data
    from depthlab.diagnosis.calibration import chance_accuracy
    from depthlab.spec import DataSpec

    try:
        data = load_data(DataSpec.from_dict(json.loads(data_key)))
    except (DepthlabError, ValueError, OSError):
        return None
    if data.task != "classification":
        return None
    y, mask = data.y_test, data.mask("test")
    return chance_accuracy(y if mask is None else y[mask])


def _one_type(rows: list[dict[str, Any]], column: str) -> None:
    """One type per column, so parquet and polars can type it: text and numbers mixed become
    all text, integers among floats become floats."""
    values = [row.get(column) for row in rows if row.get(column) is not None]
    if any(isinstance(v, str) for v in values) and not all(isinstance(v, str) for v in values):
        for row in rows:
            if row.get(column) is not None:
                row[column] = _canon(row[column])
    elif any(isinstance(v, float) for v in values) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        for row in rows:
            if row.get(column) is not None:
                row[column] = float(row[column])


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _canon(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(_json.to_json(value), separators=(",", ":"), sort_keys=True)


def _flatten(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in spec.items():
        if isinstance(v, Mapping) and v:
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat
