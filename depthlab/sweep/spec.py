"""``SweepSpec``: a base run, the axes to vary over it, the seeds, and how to pick the points.

A sweep file::

    base:  {arch: {family: mlp, depth: 8}, data: {name: digits}, train: {lr: 0.001}}
    axes:  {arch.depth: [2, 8, 32], arch.act: [relu, tanh, selu]}
    seeds: [0, 1]
    strategy: grid            # grid | random | tpe
    probes: [signal, gradients]   # optional: diagnose each run at init, stored with it
                                  # (optimality: the convex gap after training)
    watch: true                   # optional: judge each run on its own first steps and stop
                                  # it (STOPPED) when it won't train

Each axis is a dotted path ``section.field`` of :class:`~depthlab.spec.run.RunSpec` (``arch``,
``data``, ``train``) with a non-empty list of values. ``train.seed`` is not an axis: ``seeds``
sets it. ``grid`` runs every point of the Cartesian product of the axes; ``random`` runs
``budget`` points drawn without replacement from that grid, seeded by ``sample_seed``; ``tpe``
lets Optuna's Tree-structured Parzen Estimator pick ``budget`` distinct grid points one batch at a
time, steering by ``objective`` (a final metric such as ``val_loss`` or ``test_accuracy``, mean
over seeds) in ``direction`` (``minimize`` or ``maximize``). Every point runs once per seed.
Expansion lives in :mod:`depthlab.sweep.expand`, the tpe loop in :mod:`depthlab.sweep.driver`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from typing import Any

from depthlab import _registry as reg
from depthlab.exceptions import SpecError
from depthlab.spec.base import Spec, check_choice, plain
from depthlab.spec.run import RunSpec

__all__ = ["DIRECTIONS", "OBJECTIVES", "STRATEGIES", "SweepSpec", "axis_paths", "format_value"]

STRATEGIES = ("grid", "random", "tpe")
DIRECTIONS = ("minimize", "maximize")
#: Final metrics a run reports (accuracies for classifiers only); ``objective`` picks one.
OBJECTIVES = (
    "train_loss",
    "val_loss",
    "test_loss",
    "train_accuracy",
    "val_accuracy",
    "test_accuracy",
)

#: Paths a sweep may not vary, and what to use instead.
_RESERVED = {"train.seed": "set by 'seeds'"}


def axis_paths() -> tuple[str, ...]:
    """Every valid axis path: ``section.field`` for each field of RunSpec's sections."""
    paths = []
    hints = typing.get_type_hints(RunSpec)
    for section in dataclasses.fields(RunSpec):
        sub = hints[section.name]
        if not (isinstance(sub, type) and issubclass(sub, Spec)):
            continue
        for f in dataclasses.fields(sub):
            path = f"{section.name}.{f.name}"
            if path not in _RESERVED:
                paths.append(path)
    return tuple(paths)


def format_value(value: Any) -> str:
    """A value as it appears in a run's name: strings bare, everything else compact JSON."""
    data = plain(value)
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class SweepSpec(Spec):
    """Many runs: ``base`` with each combination of ``axes`` values, once per seed in ``seeds``.

    ``budget`` is the number of grid points ``random`` samples or ``tpe`` tries (required for
    both, unused by ``grid``); the run count is ``grid points × len(seeds)`` or
    ``budget × len(seeds)``. ``base.train.seed`` is overridden by ``seeds``. ``probes`` names
    diagnose probes run on each network at initialisation; their summary is stored with the run
    and drawn in the report. ``optimality`` is the exception: it runs after training (the convex
    gap of a two-layer network at λ = ``train.weight_decay``, see :mod:`depthlab.sweep.task`).
    ``watch: true`` runs each run under ``depthlab.watch.fit.WatchCallback`` (as
    ``depthlab train --watch``): a run decided *won't train* ends STOPPED, its verdict stored
    under ``probes["watch"]``.
    """

    base: RunSpec = dataclasses.field(default_factory=RunSpec)
    axes: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    strategy: str = "grid"
    budget: int | None = None
    sample_seed: int = 0
    objective: str = ""
    direction: str = "minimize"
    probes: tuple[str, ...] = ()
    watch: bool = False
    name: str = ""

    def task_probes(self) -> tuple[str, ...]:
        """What a worker is asked to do besides training: ``probes``, and ``watch``."""
        return (*self.probes, "watch") if self.watch else tuple(self.probes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SweepSpec:
        if isinstance(data, Mapping) and "axes" in data and not isinstance(data["axes"], Mapping):
            raise SpecError(
                "axes", f"{data['axes']!r} is not valid; expected a mapping of path: [values]"
            )
        return super().from_dict(data)

    def _check(self) -> None:
        object.__setattr__(self, "axes", self._checked_axes())
        if not self.seeds:
            raise SpecError("seeds", "is an empty list; give at least one seed")
        for i, seed in enumerate(self.seeds):
            if seed in self.seeds[:i]:
                raise SpecError(f"seeds[{i}]", f"{seed!r} is a duplicate seed")
        check_choice("strategy", self.strategy, STRATEGIES)
        grid = self.grid_size()
        check_choice("direction", self.direction, DIRECTIONS)
        if self.strategy == "tpe" and not self.objective:
            raise SpecError(
                "objective",
                f"is required for strategy: tpe; choices: {', '.join(OBJECTIVES)}",
            )
        if self.objective:
            check_choice("objective", self.objective, OBJECTIVES)
        if self.probes:
            from depthlab import probes as _probes  # noqa: F401  (fills the probe registry)

            for i, probe in enumerate(self.probes):
                reg.PROBES.get(probe, field=f"probes[{i}]")
        if self.strategy in ("random", "tpe"):
            if self.budget is None:
                raise SpecError(
                    "budget", f"is required for strategy: {self.strategy} (points to run)"
                )
            if not 1 <= self.budget <= grid:
                raise SpecError(
                    "budget",
                    f"{self.budget!r} is not valid; expected 1 <= budget <= {grid} "
                    "(the number of grid points)",
                )
        elif self.budget is not None:
            raise SpecError("budget", f"{self.budget!r} is only used by strategies random and tpe")

    def grid_size(self) -> int:
        """Number of points in the Cartesian product of the axes (seeds not counted)."""
        return math.prod(len(v) for v in self.axes.values())

    def point(self, values: Mapping[str, Any], seed: int) -> RunSpec:
        """``base`` with each ``path: value`` applied, ``train.seed = seed`` and a name."""
        data = self.base.to_dict()
        for path, value in values.items():
            section, _, field = path.partition(".")
            data[section][field] = value
        data["train"]["seed"] = seed
        data["name"] = ",".join(
            [f"{p}={format_value(v)}" for p, v in values.items()] + [f"seed={seed}"]
        )
        return RunSpec.from_dict(data)

    def _checked_axes(self) -> dict[str, tuple[Any, ...]]:
        if not self.axes:
            raise SpecError("axes", "is empty; give at least one axis, e.g. {arch.depth: [2, 8]}")
        valid = axis_paths()
        out: dict[str, tuple[Any, ...]] = {}
        for path, values in self.axes.items():
            field = f"axes.{path}"
            if path in _RESERVED:
                raise SpecError(field, f"cannot be an axis: it is {_RESERVED[path]}")
            if path not in valid:
                raise SpecError(
                    field,
                    f"unknown axis path; valid paths: {', '.join(valid)} "
                    "(train.seed is set by 'seeds')",
                )
            if isinstance(values, str | bytes) or not isinstance(values, list | tuple):
                raise SpecError(field, f"{values!r} is not valid; expected a list of values")
            if not values:
                raise SpecError(field, "is an empty list; give at least one value")
            out[path] = tuple(_freeze(v) for v in values)
            self._check_values(path, out[path])
        return out

    def _check_values(self, path: str, values: tuple[Any, ...]) -> None:
        """Build the base run with each value, so a bad one fails here, not mid-sweep."""
        section, _, name = path.partition(".")
        seen: list[Any] = []
        for i, value in enumerate(values):
            field = f"axes.{path}[{i}]"
            try:
                run = self.point({path: value}, self.seeds[0] if self.seeds else 0)
            except SpecError as err:
                where = "" if err.field == path else f"{err.field}: "
                raise SpecError(field, f"{where}{err.detail}") from None
            built = plain(getattr(getattr(run, section), name))
            if built in seen:
                raise SpecError(field, f"{value!r} repeats {path}[{seen.index(built)}]")
            seen.append(built)


def _freeze(value: Any) -> Any:
    """Lists become tuples (recursively), so a spec holds no shared mutable lists."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): _freeze(v) for k, v in value.items()}
    return value
