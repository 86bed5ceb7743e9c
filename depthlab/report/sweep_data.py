"""The sweep report's data: runs grouped into configurations, the varying axes, the metric.

Runs are grouped into *configurations*: runs whose specs agree on every field but ``name`` and
``train.seed``. The fields that differ between runs are the sweep's *axes*. A configuration's
value is the mean of the metric over its COMPLETE runs with a finite metric.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from typing import Any

from depthlab.report.html import COLUMNS
from depthlab.store.base import RunRecord, RunState

__all__ = [
    "DEPTH",
    "IGNORED",
    "WIDTH",
    "Config",
    "Key",
    "canon",
    "choose_metric",
    "diagnosed",
    "fixed_settings",
    "flatten",
    "format_value",
    "group_configs",
    "higher_is_better",
    "loss_curve",
    "mean_curve",
    "probe_columns",
    "probe_value",
    "run_label",
    "short_axis",
    "varying_axes",
]

DEPTH, WIDTH = "arch.depth", "arch.width"
#: Fields that tell runs of one configuration apart; never axes.
IGNORED = frozenset({"name", "train.seed"})
#: Settings the summary names when no run differs in them.
HEADLINE = (
    "arch.family",
    "arch.depth",
    "arch.width",
    "arch.act",
    "arch.init",
    "arch.norm",
    "data.name",
    "train.optimizer",
    "train.lr",
    "train.epochs",
)

Key = tuple[str, ...]


def flatten(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested spec dict as ``{"arch.depth": 4, ...}``; empty dicts stay values."""
    flat: dict[str, Any] = {}
    for k, v in spec.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            flat.update(flatten(v, f"{path}."))
        else:
            flat[path] = v
    return flat


def canon(value: Any) -> str:
    """A value as a hashable, comparable label: strings bare, everything else compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def _sort_key(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order first, then everything else in text order."""
    try:
        number = float(label)
    except ValueError:
        return (1, 0.0, label)
    return (0, number, label) if math.isfinite(number) else (1, 0.0, label)


def varying_axes(flats: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each field whose value differs between runs, with its sorted distinct values."""
    paths: list[str] = []
    for flat in flats:
        paths += [p for p in flat if p not in paths]
    axes = {}
    for path in paths:
        if path in IGNORED:
            continue
        values = {canon(flat.get(path)) for flat in flats}
        if len(values) > 1:
            axes[path] = sorted(values, key=_sort_key)
    return axes


def short_axis(axis: str) -> str:
    """An axis without its section: ``arch.depth`` -> ``depth``."""
    return axis.split(".", 1)[-1]


class Config:
    """Runs of one configuration (all seeds) and their aggregate metric."""

    def __init__(self, key: Key, axes: list[str]) -> None:
        self.key, self.axes = key, axes
        self.runs: list[RunRecord] = []
        self.values: list[float] = []

    def value(self, axis: str) -> str:
        return self.key[self.axes.index(axis)]

    @property
    def label(self) -> str:
        return (
            ", ".join(f"{short_axis(a)}={v}" for a, v in zip(self.axes, self.key, strict=True))
            or "all runs"
        )

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else math.nan

    def count(self, state: RunState) -> int:
        return sum(r.state == state for r in self.runs)

    @property
    def status(self) -> str:
        """``ok`` if any seed has a value, else what went wrong with the runs."""
        if self.values:
            return "ok"
        if self.count(RunState.DIVERGED):
            return "div"
        if self.count(RunState.FAILED):
            return "fail"
        return "n/a"

    @property
    def states(self) -> str:
        return ", ".join(f"{self.count(s)} {s.value}" for s in RunState if self.count(s))


def _metric_value(record: RunRecord, metric: str) -> float:
    if record.state != RunState.COMPLETE:
        return math.nan
    value = record.metrics.get(metric, math.nan)
    return value if math.isfinite(value) else math.nan


def group_configs(records: Sequence[RunRecord], axes: list[str], metric: str) -> list[Config]:
    """The records grouped by their values on ``axes``, in grid order (numbers numerically)."""
    configs: dict[Key, Config] = {}
    for record in records:
        flat = flatten(record.spec)
        key = tuple(canon(flat.get(a)) for a in axes)
        config = configs.setdefault(key, Config(key, axes))
        config.runs.append(record)
        value = _metric_value(record, metric)
        if not math.isnan(value):
            config.values.append(value)
    return sorted(configs.values(), key=lambda c: [_sort_key(v) for v in c.key])


def choose_metric(records: Sequence[RunRecord], metric: str | None) -> str:
    """``metric`` if given, else ``test_accuracy`` if any run reports it, else ``train_loss``."""
    if metric:
        return metric
    if any("test_accuracy" in r.metrics for r in records):
        return "test_accuracy"
    return "train_loss"


def higher_is_better(metric: str) -> bool:
    return "accuracy" in metric


def format_value(value: float, metric: str = "") -> str:
    """A metric value for a table or a heatmap cell; ``–`` for a missing one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3f}" if higher_is_better(metric) else f"{value:.3g}"


def run_label(record: RunRecord) -> str:
    name = record.spec.get("name") if isinstance(record.spec, dict) else None
    return str(name) if name else f"{record.run_id} (seed {record.seed})"


def loss_curve(record: RunRecord) -> list[tuple[float, float]]:
    """(epoch, train_loss) for each epoch with a finite, positive loss (log axis)."""
    points = []
    for row in record.history:
        epoch, loss = row.get("epoch"), row.get("train_loss")
        if isinstance(epoch, int | float) and isinstance(loss, int | float):
            if math.isfinite(epoch) and math.isfinite(loss) and loss > 0:
                points.append((float(epoch), float(loss)))
    return points


def mean_curve(curves: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The mean over seeds of each epoch's loss, over the curves that reach that epoch."""
    by_epoch: dict[float, list[float]] = {}
    for curve in curves:
        for epoch, loss in curve:
            by_epoch.setdefault(epoch, []).append(loss)
    return [(e, statistics.fmean(v)) for e, v in sorted(by_epoch.items())]


def fixed_settings(records: Sequence[RunRecord], axes: dict[str, list[str]]) -> str:
    """The headline settings shared by every run."""
    first = flatten(records[0].spec)
    return ", ".join(f"{p}={canon(first[p])}" for p in HEADLINE if p in first and p not in axes)


def diagnosed(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """The runs' diagnoses at initialisation, each with its run's label as ``name``."""
    diagnoses = []
    for r in records:
        d = r.probes.get("diagnose")
        if isinstance(d, dict) and "verdict" in d:
            diagnoses.append({**d, "name": run_label(r)})
    return diagnoses


def probe_value(diagnosis: dict[str, Any], probe: str, key: str) -> float:
    """A probe's number in a diagnosis (the first of a list); NaN if it has none."""
    value = (diagnosis.get(probe) or {}).get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    return float(value) if isinstance(value, int | float) else math.nan


def probe_columns(diagnoses: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The diagnosis table's columns some diagnosis has: a sweep usually runs a few cheap probes."""
    return [
        (p, k, label)
        for p, k, label in COLUMNS
        if any(not math.isnan(probe_value(d, p, k)) for d in diagnoses)
    ]
