"""PNG figures and static HTML pages, built from results (never from a live model)."""

from depthlab.report.figures import write_figures
from depthlab.report.html import write_report
from depthlab.report.sweep import write_sweep_report

__all__ = ["write_figures", "write_report", "write_sweep_report"]
