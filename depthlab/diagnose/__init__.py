"""Diagnosis: run the probes on a network and turn their numbers into a verdict."""

from depthlab.diagnose.run import DEFAULT_PROBES, DiagnoseOptions, check_input, diagnose
from depthlab.diagnose.verdict import Finding, judge

__all__ = ["DEFAULT_PROBES", "DiagnoseOptions", "Finding", "check_input", "diagnose", "judge"]
