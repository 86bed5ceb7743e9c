"""Residual branch scaling: x_{l+1} = x_l + α f_l(x_l).

With unit-gain branches independent at init, Var(x_L) ≈ (1 + α²)^L Var(x_0): exponential in
depth for a fixed α, bounded by e for α = 1/√L (Bachlechner et al. 2020; "On residual network
depth"). ``rezero`` makes α a learnable scalar starting at 0 (ReZero / SkipInit), so the
network starts as the identity.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from depthlab.exceptions import SpecError


class ResidualScale(nn.Module):
    """Multiplies a residual branch by α (a buffer) or by a learnable scalar (``rezero``)."""

    def __init__(self, mode: str, *, alpha: float = 1.0, depth: int = 1) -> None:
        super().__init__()
        self.mode = mode
        if mode == "rezero":
            self.alpha = nn.Parameter(torch.zeros(()))
        else:
            self.register_buffer("alpha", torch.tensor(residual_alpha(mode, alpha, depth)))

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        return self.alpha * branch

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


def residual_alpha(mode: str, alpha: float, depth: int) -> float:
    """The fixed α of a non-learnable scaling mode."""
    if mode == "none":
        return 1.0
    if mode == "fixed":
        return alpha
    if mode == "inv_sqrt_depth":
        return 1.0 / math.sqrt(max(depth, 1))
    raise SpecError("residual", f"{mode!r} has no fixed alpha")


class Residual(nn.Module):
    """``x + α f(x)``, and an optional norm after the sum (post-norm blocks)."""

    def __init__(self, branch: nn.Module, scale: ResidualScale, post: nn.Module | None = None):
        super().__init__()
        self.branch = branch
        self.scale = scale
        self.post = post if post is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(x + self.scale(self.branch(x)))
