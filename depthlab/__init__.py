"""depthlab: will this network train, why not, and how far from optimal is it?

Build networks of any depth, width and shape from a spec, train them with the techniques that
make deep networks trainable, and measure them with principled probes.
"""

from depthlab import data, layers, models, probes, train  # noqa: F401  (fills the registries)
from depthlab.data import Dataset, load_data, register_dataset
from depthlab.diagnosis.api import diagnose
from depthlab.diagnosis.result import Diagnosis
from depthlab.exceptions import (
    DataError,
    DepthlabError,
    ProbeError,
    SpecError,
    StoreError,
    UnknownComponentError,
)
from depthlab.models import build_model, register_arch
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

__version__ = "0.1.0"

__all__ = [
    "ArchSpec",
    "Callback",
    "DataError",
    "DataSpec",
    "Dataset",
    "DepthlabError",
    "Diagnosis",
    "ProbeError",
    "RunSpec",
    "RunState",
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
    "register_arch",
    "register_dataset",
    "register_technique",
    "run",
]
