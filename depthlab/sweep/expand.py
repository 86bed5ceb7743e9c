"""Expand a :class:`SweepSpec` into its runs, and those runs into PENDING store records.

Order is deterministic: grid points in Cartesian-product order over the axes as written (the
last axis varies fastest), each point once per seed in ``seeds`` order. ``random`` keeps that
order for the points it samples. A run's name lists its axis values and seed
(``arch.depth=8,arch.act=tanh,seed=1``) and does not depend on the other values of an axis, so
adding a value to an axis adds runs and leaves the ids of the existing ones unchanged (a resumed
sweep finds its finished runs).
"""

from __future__ import annotations

import random
from typing import Any

from depthlab.exceptions import SpecError
from depthlab.spec.run import RunSpec
from depthlab.store.base import RunRecord
from depthlab.sweep.spec import SweepSpec

__all__ = ["expand", "grid_point", "pending_record", "planned_records", "point_indices"]


def point_indices(sweep: SweepSpec) -> list[int]:
    """Indices (in grid order) of the points the sweep runs: all, or a sorted seeded sample."""
    n = sweep.grid_size()
    if sweep.strategy == "tpe":
        raise SpecError("strategy", "tpe picks its points while the sweep runs (run_sweep)")
    if sweep.strategy == "random":
        assert sweep.budget is not None  # SweepSpec checks this
        # range() is sampled lazily, so a huge grid is never materialised.
        return sorted(random.Random(sweep.sample_seed).sample(range(n), sweep.budget))
    return list(range(n))


def grid_point(sweep: SweepSpec, index: int) -> dict[str, Any]:
    """The ``path: value`` map of grid point ``index`` (mixed radix, last axis fastest)."""
    values: dict[str, Any] = {}
    for path, options in reversed(sweep.axes.items()):
        index, i = divmod(index, len(options))
        values[path] = options[i]
    return {path: values[path] for path in sweep.axes}


def expand(sweep: SweepSpec) -> list[RunSpec]:
    """Every run of the sweep, in deterministic order (see the module doc).

    Each axis value was checked on its own when the sweep was built; a combination that is
    invalid together (``arch.depth: [2, 3]`` with ``arch.width: [[64, 32]]``) raises a
    ``SpecError`` on ``axes`` naming the combination.
    """
    runs = []
    for index in point_indices(sweep):
        values = grid_point(sweep, index)
        for seed in sweep.seeds:
            try:
                runs.append(sweep.point(values, seed))
            except SpecError as err:
                combo = ",".join(f"{p}={v!r}" for p, v in values.items())
                raise SpecError("axes", f"the combination {combo} is not valid: {err}") from None
    return runs


def pending_record(run: RunSpec) -> RunRecord:
    """The PENDING store record of one run: id ``{spec hash}-s{seed}``."""
    return RunRecord.pending(run.content_hash(), run.to_dict(), run.train.seed)


def planned_records(sweep: SweepSpec) -> list[RunRecord]:
    """A PENDING record per run, in expansion order, de-duplicated by ``run_id``."""
    records: dict[str, RunRecord] = {}
    for run in expand(sweep):
        record = pending_record(run)
        records.setdefault(record.run_id, record)
    return list(records.values())
