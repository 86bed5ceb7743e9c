"""Diagnosis: run the probes on a network and turn their numbers into a verdict."""

from depthlab.diagnose.run import (
    ALL_PROBES,
    DEFAULT_PROBES,
    DiagnoseOptions,
    check_input,
    diagnose,
)
from depthlab.diagnose.verdict import Assessment, Finding, assess, judge

__all__ = [
    "ALL_PROBES",
    "DEFAULT_PROBES",
    "Assessment",
    "DiagnoseOptions",
    "Finding",
    "assess",
    "check_input",
    "diagnose",
    "judge",
]
