"""Dropout: standard, and alpha-dropout for self-normalizing (SELU) networks."""

from __future__ import annotations

import math

import torch
from torch import nn

from depthlab.layers.activations import SELU_ALPHA, SELU_LAMBDA


class AlphaDropout(nn.Module):
    """Alpha-dropout (Klambauer et al. 2017): keeps a SELU net's mean 0 and variance 1.

    With keep probability q = 1 − p, dropped units are set to α' = −λα, then every unit goes
    through a·x + b with a = (q + α'² q (1 − q))^(−1/2) and b = −a α' (1 − q).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability {p!r} is not in [0, 1)")
        self.p = p
        q = 1.0 - p
        alpha_prime = -SELU_LAMBDA * SELU_ALPHA
        self.alpha_prime = alpha_prime
        self.a = 1.0 / math.sqrt(q + alpha_prime**2 * q * (1.0 - q))
        self.b = -self.a * alpha_prime * (1.0 - q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x) >= self.p
        return self.a * torch.where(keep, x, torch.full_like(x, self.alpha_prime)) + self.b

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_dropout(p: float, kind: str, act_name: str) -> nn.Module:
    """``kind`` standard | alpha | auto (alpha for SELU networks, standard otherwise)."""
    if p == 0.0:
        return nn.Identity()
    if kind == "alpha" or (kind == "auto" and act_name == "selu"):
        return AlphaDropout(p)
    return nn.Dropout(p)
