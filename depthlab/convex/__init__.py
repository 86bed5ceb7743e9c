"""Convex reformulations of two-layer ReLU networks with global-optimality certificates.

``fit_convex`` solves the convex program of Pilanci & Ergen (2020) and says what it certifies;
``patterns`` enumerates or samples activation patterns; ``recover`` turns a solution into an
``nn.Module``; ``gap`` holds a trained network against the optimum. The solvers: ``barrier`` and
``solvers.working_set`` (interior point, small problems); ``apg``, ``gated``, ``screening`` and
``auglag`` (first order, vectorised over patterns, problems of ordinary size); ``path`` solves a
warm-started λ path.
"""

from depthlab.convex.fit import ConvexResult, fit_convex, targets
from depthlab.convex.patterns import PatternSet, exact_patterns, sampled_patterns
from depthlab.convex.recover import GatedReLU, TwoLayerReLU, two_layer_objective

__all__ = [
    "ConvexResult",
    "GatedReLU",
    "PatternSet",
    "TwoLayerReLU",
    "exact_patterns",
    "fit_convex",
    "sampled_patterns",
    "targets",
    "two_layer_objective",
]
