"""Diagnosis: run the probes on a network and turn their numbers into a verdict."""

from depthlab.diagnosis.run import (
    ALL_PROBES,
    DEFAULT_PROBES,
    DiagnoseOptions,
    check_input,
    diagnose,
)
from depthlab.diagnosis.verdict import Assessment, Finding, assess, judge

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
