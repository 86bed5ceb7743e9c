"""Diagnosis: run the probes on a network and turn their numbers into a verdict.

The one-call entry point is ``depthlab.diagnose`` (``depthlab.diagnosis.api``); this package is
named ``diagnosis`` so that importing any of its modules never replaces that function.
"""

from depthlab.diagnosis.engine import Curve, Decision, Setup, VerdictEngine
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
    "Curve",
    "Decision",
    "DiagnoseOptions",
    "Finding",
    "Setup",
    "VerdictEngine",
    "assess",
    "check_input",
    "diagnose",
    "judge",
]
