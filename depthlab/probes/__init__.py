"""Probes: principled measurements of any ``nn.Module``, each registered by name."""

from depthlab.probes import gradients, jacobian, meanfield, signal  # noqa: F401  (registers)
from depthlab.probes.base import Probe, ProbeBatch, preserved, register_probe
from depthlab.probes.collapse import Collapse
from depthlab.probes.weights import Weights

__all__ = ["Collapse", "Probe", "ProbeBatch", "Weights", "preserved", "register_probe"]
