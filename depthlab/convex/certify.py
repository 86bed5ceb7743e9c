"""Lower bounds on the optimum from dual-feasible points (weak duality).

For any w ∈ R^N the Fenchel dual gives optimum ≥ −L*(t w) whenever t w is dual feasible:

* gated ReLU over gates {D_i}: ‖X̃ᵀD_i w‖ ≤ λ for every i;
* ReLU over patterns {D_i}: for every i and both signs, sup over the cone
  C_i = {u : (2D_i − I)X̃u ≥ 0}, ‖u‖ ≤ 1, of ±wᵀD_iX̃u is ≤ λ. Any μ ≥ 0 bounds that sup by
  ‖±X̃ᵀD_i w + X̃ᵀ(2D_i − I)μ‖ (for u ∈ C_i, hᵀu ≤ hᵀu + μᵀ(2D_i − I)X̃u), so the check is
  rigorous for every μ and tight for the best one (conic duality), found by NNLS.

Over all patterns the ReLU condition is max_{‖u‖≤1} |wᵀ(X̃u)_+| ≤ λ (formulas.md); it is checked
exactly by enumerating the patterns (rank ≤ 3), or bounded loosely for any rank by
‖w_+‖σ_max(X̃_+) and ‖w_−‖σ_max(X̃_−) (rows where w is positive or negative).
The natural w is the loss gradient at the solution's predictions (the scaled residual).
"""

from __future__ import annotations

import numpy as np
import torch

from depthlab.convex.losses import Loss, best_scale

__all__ = [
    "dual_bound",
    "gated_dual_norm",
    "gated_dual_norms",
    "relu_dual_norm",
    "relu_dual_norms",
    "loose_relu_dual_norm",
]


def gated_dual_norms(x: torch.Tensor, d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """‖X̃ᵀD_i w‖ for every pattern i, (P,)."""
    return ((d * w[:, None]).T @ x).norm(dim=1)


def gated_dual_norm(x: torch.Tensor, d: torch.Tensor, w: torch.Tensor) -> float:
    """max_i ‖X̃ᵀD_i w‖."""
    return float(gated_dual_norms(x, d, w).max()) if d.shape[1] else 0.0


def relu_dual_norm(x: torch.Tensor, d: torch.Tensor, w: torch.Tensor, lam: float) -> float:
    """A rigorous upper bound on max_i max_± sup_{u ∈ C_i, ‖u‖ ≤ 1} ±wᵀD_iX̃u."""
    norms = relu_dual_norms(x, d, w, lam)
    return float(norms.max()) if len(norms) else 0.0


def relu_dual_norms(x: torch.Tensor, d: torch.Tensor, w: torch.Tensor, lam: float) -> torch.Tensor:
    """Per pattern (P,), an upper bound on max_± sup_{u ∈ C_i, ‖u‖ ≤ 1} ±wᵀD_iX̃u.

    Patterns whose plain bound ‖X̃ᵀD_i w‖ is already ≤ λ keep it (μ = 0); the others get the
    exact min_{μ≥0} ‖±X̃ᵀD_i w + X̃ᵀ(2D_i − I)μ‖ by Lawson–Hanson NNLS, a d × N problem whose
    active set has at most d members (tens of microseconds each)."""
    from scipy.optimize import nnls

    g = (d * w[:, None]).T @ x  # (P, d)
    out = g.norm(dim=1)
    over = torch.nonzero(out > lam).flatten().tolist()
    if not over:
        return out
    xn, gn, sn = x.numpy(), g.numpy(), (2 * d - 1).numpy()
    res = out.numpy().copy()
    for i in over:
        a = (xn * sn[:, i : i + 1]).T  # (d, N): μ ↦ X̃ᵀ(2D_i − I)μ
        worst = 0.0
        for sign in (1.0, -1.0):
            h = sign * gn[i]
            mu, _ = nnls(a, -h, maxiter=50 * a.shape[1])
            worst = max(worst, float(np.linalg.norm(h + a @ mu)))
        res[i] = min(res[i], worst)
    return torch.from_numpy(res)


def loose_relu_dual_norm(x: torch.Tensor, w: torch.Tensor) -> float:
    """max(‖w_+‖σ_max(X̃_+), ‖w_−‖σ_max(X̃_−)) ≥ max_{‖u‖≤1} |wᵀ(X̃u)_+|, for data of any rank."""
    out = 0.0
    for rows in (w > 0, w < 0):
        if bool(rows.any()):
            sv = float(torch.linalg.matrix_norm(x[rows], ord=2))
            out = max(out, float(w[rows].norm()) * sv)
    return out


def dual_bound(loss: Loss, w: torch.Tensor, lam: float, norm: float) -> float:
    """The best lower bound −L*(t w) over t with t·norm ≤ λ (``norm`` bounds the constraint)."""
    t_max = lam / norm if norm > 0 else 1e12
    return best_scale(loss, w, t_max)[1]
