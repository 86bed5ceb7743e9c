"""Techniques for training deep networks, each a registered callback."""

from depthlab.train.techniques.gradient_noise import GradientNoise, noise_variance

__all__ = ["GradientNoise", "noise_variance"]
