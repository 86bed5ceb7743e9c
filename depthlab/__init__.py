"""depthlab: will this network train, why not, and how far from optimal is it?

Build networks of any depth, width and shape from a spec, train them with the techniques that
make deep networks trainable, and measure them with principled probes.
"""

from importlib import metadata as _metadata

from depthlab import data, layers, loggers, models, probes, train  # noqa: F401  (fills the registries)
from depthlab.data import Dataset, load_data, register_dataset
from depthlab.diagnosis.api import diagnose
from depthlab.diagnosis.result import Diagnosis
from depthlab.exceptions import (
    DataError,
    DepthlabError,
    MissingDependencyError,
    ProbeError,
    SpecError,
    StoreError,
    UnknownComponentError,
)
from depthlab.models import build_model, register_arch
from depthlab.results import Runs, load_runs
from depthlab.spec import ArchSpec, DataSpec, RunSpec, TrainSpec
from depthlab.train import (
    Callback,
    RunState,
    Technique,
    TrainResult,
    fit,
    register_technique,
    run,
)

try:
    # The one source of the version is pyproject.toml, read back from the installed metadata.
    __version__ = _metadata.version("depthlab")
except _metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> object:
    # Monitor lives in depthlab.watch, imported on first use (it pulls in the verdict engine).
    if name == "Monitor":
        from depthlab.watch import Monitor

        return Monitor
    raise AttributeError(f"module 'depthlab' has no attribute {name!r}")


__all__ = [
    "ArchSpec",
    "Callback",
    "DataError",
    "DataSpec",
    "Dataset",
    "DepthlabError",
    "Diagnosis",
    "MissingDependencyError",
    "Monitor",
    "ProbeError",
    "RunSpec",
    "RunState",
    "Runs",
    "SpecError",
    "StoreError",
    "Technique",
    "TrainResult",
    "TrainSpec",
    "UnknownComponentError",
    "build_model",
    "diagnose",
    "fit",
    "load_data",
    "load_runs",
    "loggers",
    "register_arch",
    "register_dataset",
    "register_technique",
    "run",
]
