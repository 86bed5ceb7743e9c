"""Public conformance checks: every registered architecture must pass ``check_arch``."""

from depthlab.testing.conformance import ConformanceError, check_arch, check_module

__all__ = ["ConformanceError", "check_arch", "check_module"]
