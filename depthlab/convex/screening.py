"""Gap-safe screening for the group lasso of the convex programs (Ndiaye et al. 2017).

For the program min_u L(F u) + λ Σ_i ‖u_i‖ the dual is max_w −L*(w) subject to ‖F_iᵀw‖ ≤ λ for
every group i, and −L* is α-strongly concave: α = N for the squared loss
(1/(2N))‖p − y‖², α = 4N for the mean logistic loss (its curvature is at most 1/(4N)). For any
primal u and dual-feasible w the optimal dual point lies in the ball

    ‖w* − w‖ ≤ r = √(2 (P(u) − D(w)) / α),

so a group with ‖F_iᵀw‖ + r σ_i < λ, σ_i ≥ ‖F_i‖₂ the operator norm of D_iX̃, has
‖F_iᵀw*‖ < λ and, by the optimality condition, weight zero at the optimum: it can be dropped
for good. σ_i is bounded by min(σ_max(X̃), ‖D_iX̃‖_F), both cheap. The rule is safe for the ReLU
program too: there a group's dual constraint is a supremum over a cone inside the unit ball, at
most ‖F_iᵀw‖, and the ReLU dual function is the same −L*.
"""

from __future__ import annotations

import math

import torch

from depthlab.convex.losses import Loss, best_scale

__all__ = ["DualPoint", "dual_point", "group_norm_bounds", "strong_concavity", "safe_to_drop"]


def strong_concavity(loss: Loss) -> float:
    """α with −L* α-strongly concave: N (squared), 4N (logistic)."""
    n = len(loss.y)
    return float(n) if loss.name == "squared" else 4.0 * n


def group_norm_bounds(x: torch.Tensor, d: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """σ_i ≥ ‖D_iX̃‖₂ per group (P,): min(σ_max(X̃), ‖D_iX̃‖_F)."""
    fro = torch.sqrt(d.T @ (x * x).sum(1))
    return fro.clamp(max=sigma_max)


class DualPoint:
    """A dual-feasible t·w built from a loss gradient w and the groups' norms ‖F_iᵀw‖.

    ``lower`` = −L*(t w) is a lower bound on the optimum of the program whose groups ``norms``
    covers (weak duality); ``scale`` is t."""

    def __init__(self, loss: Loss, w: torch.Tensor, norms: torch.Tensor, lam: float) -> None:
        top = float(norms.max()) if norms.numel() else 0.0
        t_max = lam / top if top > 0 else 1e12
        self.scale, self.lower = best_scale(loss, w, t_max)
        self.norms = norms
        self.w = w


def dual_point(loss: Loss, w: torch.Tensor, norms: torch.Tensor, lam: float) -> DualPoint:
    return DualPoint(loss, w, norms, lam)


def safe_to_drop(
    dual: DualPoint, upper: float, sigma: torch.Tensor, lam: float, loss: Loss
) -> torch.Tensor:
    """Boolean (P,): groups certain to be zero at the optimum (the gap-safe sphere test)."""
    gap = max(upper - dual.lower, 0.0)
    if not math.isfinite(gap):
        return torch.zeros_like(dual.norms, dtype=torch.bool)
    radius = math.sqrt(2.0 * gap / strong_concavity(loss))
    return dual.scale * dual.norms + radius * sigma < lam
