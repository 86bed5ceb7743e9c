"""Probes: principled measurements of any ``nn.Module``, each registered by name."""

from depthlab.probes import gradients, jacobian, meanfield, signal, smoothing  # noqa: F401
from depthlab.probes.base import Probe, ProbeBatch, preserved, register_probe
from depthlab.probes.collapse import Collapse
from depthlab.probes.hessian import HessianProbe
from depthlab.probes.ntk import NTKProbe
from depthlab.probes.weights import Weights

__all__ = [
    "Collapse",
    "HessianProbe",
    "NTKProbe",
    "Probe",
    "ProbeBatch",
    "Weights",
    "preserved",
    "register_probe",
]
