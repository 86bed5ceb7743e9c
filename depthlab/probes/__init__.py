"""Probes: principled measurements of any ``nn.Module``, each registered by name."""

import depthlab.probes.convexity  # noqa: F401  (registers)
import depthlab.probes.optimality  # noqa: F401  (registers)
from depthlab.probes import (  # noqa: F401  (registers)
    correlation,
    gradients,
    jacobian,
    meanfield,
    oversquashing,
    signal,
    smoothing,
    trial,
)
from depthlab.probes.base import Probe, ProbeBatch, preserved, register_probe
from depthlab.probes.collapse import Collapse
from depthlab.probes.hessian import HessianProbe
from depthlab.probes.ntk import NTKProbe
from depthlab.probes.proxies import ProxiesProbe, zero_cost_proxies
from depthlab.probes.weights import Weights

__all__ = [
    "Collapse",
    "HessianProbe",
    "NTKProbe",
    "Probe",
    "ProbeBatch",
    "ProxiesProbe",
    "Weights",
    "preserved",
    "register_probe",
    "zero_cost_proxies",
]
