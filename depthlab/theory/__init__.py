"""Closed-form and quadrature theory that probes and tests compare measurements against.

Mean-field signal propagation (Poole et al. 2016; Schoenholz et al. 2017) for any elementwise
activation, on top of Gauss–Hermite Gaussian expectations.
"""

from depthlab.theory.gaussian import DEFAULT_NODES, expect_1d, expect_2d
from depthlab.theory.meanfield import (
    CRITICAL_TOL,
    Activation,
    MeanFieldSummary,
    analyse,
    c_star,
    chi1,
    correlation_map,
    critical_sigma_w2,
    depth_scales,
    length_map,
    q_star,
)
from depthlab.theory.similarity import cka_distance, linear_cka

__all__ = [
    "CRITICAL_TOL",
    "DEFAULT_NODES",
    "Activation",
    "MeanFieldSummary",
    "analyse",
    "cka_distance",
    "c_star",
    "chi1",
    "correlation_map",
    "critical_sigma_w2",
    "depth_scales",
    "expect_1d",
    "expect_2d",
    "length_map",
    "linear_cka",
    "q_star",
]
