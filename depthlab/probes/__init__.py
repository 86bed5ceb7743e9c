"""Probes: principled measurements of any ``nn.Module``, each registered by name."""

from depthlab.probes.base import Probe, ProbeBatch, preserved, register_probe

__all__ = ["Probe", "ProbeBatch", "preserved", "register_probe"]
