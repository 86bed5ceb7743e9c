"""Frozen, validated specs with an exact YAML round-trip and a stable content hash."""

from depthlab.spec.arch import ArchSpec
from depthlab.spec.base import Spec, callable_name, import_callable
from depthlab.spec.data import DataSpec
from depthlab.spec.run import RunSpec
from depthlab.spec.train import TrainSpec

__all__ = [
    "ArchSpec",
    "DataSpec",
    "RunSpec",
    "Spec",
    "TrainSpec",
    "callable_name",
    "import_callable",
]
