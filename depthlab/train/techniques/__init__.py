"""Techniques for training deep networks, each a registered callback."""

from depthlab.train.techniques.gradient_noise import GradientNoise, noise_variance
from depthlab.train.techniques.guidance import (
    Guidance,
    GuidanceParams,
    guidance_distance,
    hidden_layers,
    map_layers,
)

__all__ = [
    "GradientNoise",
    "Guidance",
    "GuidanceParams",
    "guidance_distance",
    "hidden_layers",
    "map_layers",
    "noise_variance",
]
