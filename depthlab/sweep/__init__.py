"""Sweeps: a ``SweepSpec`` (base run × axes × seeds) and its expansion into runs."""

from depthlab.sweep.expand import expand, planned_records
from depthlab.sweep.spec import STRATEGIES, SweepSpec, axis_paths

__all__ = ["STRATEGIES", "SweepSpec", "axis_paths", "expand", "planned_records"]
