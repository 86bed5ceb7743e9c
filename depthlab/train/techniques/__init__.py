"""Techniques for training deep networks, each a registered callback."""

from depthlab.train.techniques.gradient_noise import GradientNoise, noise_variance
from depthlab.train.techniques.grid_extension import GridExtension
from depthlab.train.techniques.guidance import (
    Guidance,
    GuidanceParams,
    guidance_distance,
    hidden_layers,
    map_layers,
)
from depthlab.train.techniques.lottery import IterativeMagnitude, round_boundaries
from depthlab.train.techniques.masks import attach_mask, rescale_factors, sparsity_summary
from depthlab.train.techniques.pruning import PruneAtInit, apply_at_init, prune

__all__ = [
    "GradientNoise",
    "GridExtension",
    "Guidance",
    "GuidanceParams",
    "IterativeMagnitude",
    "PruneAtInit",
    "apply_at_init",
    "attach_mask",
    "guidance_distance",
    "hidden_layers",
    "map_layers",
    "noise_variance",
    "prune",
    "rescale_factors",
    "round_boundaries",
    "sparsity_summary",
]
