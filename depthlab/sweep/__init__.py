"""Sweeps: a ``SweepSpec`` (base run × axes × seeds), its runs, and the driver that runs them."""

from depthlab.sweep.driver import SweepSummary, run_sweep, sweep_records
from depthlab.sweep.executors import EXECUTORS, Executor, LocalExecutor, RayExecutor
from depthlab.sweep.expand import expand, planned_records
from depthlab.sweep.spec import STRATEGIES, SweepSpec, axis_paths

__all__ = [
    "EXECUTORS",
    "STRATEGIES",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "SweepSpec",
    "SweepSummary",
    "axis_paths",
    "expand",
    "planned_records",
    "run_sweep",
    "sweep_records",
]
