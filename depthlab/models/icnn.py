"""``icnn``: input-convex neural networks (Amos, Xu & Kolter 2017).

z₁ = σ(A₀x + b₀), z_{l+1} = σ(W_l z_l + A_l x + b_l), f(x) = W_L z_L + A_L x + b_L, with every
W_l ≥ 0 elementwise and σ convex and non-decreasing: then each output of f is convex in x
(a non-negative sum of convex functions, composed with a convex non-decreasing one, stays
convex; the skip connections A_l x are affine). Non-negativity is a parametrisation,
W = softplus(V), so any optimiser keeps it; the A_l are ordinary ``Linear`` layers (the spec's
init applies to them), V starts at softplus(V) = 1/fan-in.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from depthlab.exceptions import SpecError
from depthlab.models.base import Parts, flat_dim, register_arch
from depthlab.spec import ArchSpec

# Convex and non-decreasing on all of R (leaky_relu with slope ≤ 1, elu with α ≤ 1).
CONVEX_ACTS = ("relu", "softplus", "leaky_relu", "elu")


class NonNegLinear(nn.Module):
    """x ↦ softplus(V) x: a linear map with non-negative weights, by parametrisation."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__()
        start = math.log(math.expm1(1.0 / fan_in))  # softplus(start) = 1/fan_in
        self.raw = nn.Parameter(torch.full((fan_out, fan_in), start))

    @property
    def weight(self) -> torch.Tensor:
        return F.softplus(self.raw)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight.T


class ICNN(nn.Module):
    """f(x), convex in x for each output."""

    def __init__(self, in_dim: int, widths: tuple[int, ...], out_dim: int, parts: Parts) -> None:
        super().__init__()
        self.skips = nn.ModuleList()
        self.hidden = nn.ModuleList()
        self.acts = nn.ModuleList()
        prev = 0
        for width in (*widths, out_dim):
            self.skips.append(nn.Linear(in_dim, width, bias=True))
            self.hidden.append(NonNegLinear(prev, width) if prev else nn.Identity())
            prev = width
        self.acts = nn.ModuleList(parts.act() for _ in widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), -1)
        z: torch.Tensor | None = None
        for i, skip in enumerate(self.skips):
            pre = skip(x) if z is None else skip(x) + self.hidden[i](z)
            z = self.acts[i](pre) if i < len(self.acts) else pre
        assert z is not None
        return z


@register_arch("icnn")
def icnn(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """Input-convex network: non-negative hidden-to-hidden weights, skips from the input."""
    name = parts.act_def.name
    if name not in CONVEX_ACTS:
        raise SpecError(
            "act",
            f"{name!r} is not convex and non-decreasing; an icnn needs one of: "
            f"{', '.join(CONVEX_ACTS)}",
        )
    if spec.norm != "none" or spec.residual != "none" or spec.dropout:
        raise SpecError("norm", "an icnn takes no norm, residual or dropout (they break convexity)")
    return ICNN(flat_dim(in_shape), spec.widths(), out_dim, parts)
