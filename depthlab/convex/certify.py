"""Lower bounds on the optimum from dual-feasible points (weak duality).

For any w ∈ R^N the Fenchel dual gives optimum ≥ −L*(t w) whenever t w is dual feasible:

* gated ReLU over gates {D_i}: ‖X̃ᵀD_i w‖ ≤ λ for every i;
* ReLU over patterns {D_i}: for every i and both signs, sup over the cone
  C_i = {u : (2D_i − I)X̃u ≥ 0}, ‖u‖ ≤ 1, of ±wᵀD_iX̃u is ≤ λ. Any μ ≥ 0 bounds that sup by
  ‖±X̃ᵀD_i w + X̃ᵀ(2D_i − I)μ‖ (for u ∈ C_i, hᵀu ≤ hᵀu + μᵀ(2D_i − I)X̃u), so the check is
  rigorous for every μ and tight for the best one, found by projected gradient.

Over all patterns the ReLU condition is max_{‖u‖≤1} |wᵀ(X̃u)_+| ≤ λ (formulas.md); it is checked
exactly by enumerating the patterns (rank ≤ 3), or bounded loosely for any rank by
‖w_+‖σ_max(X̃_+) and ‖w_−‖σ_max(X̃_−) (rows where w is positive or negative).
The natural w is the loss gradient at the solution's predictions (the scaled residual).
"""

from __future__ import annotations

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


def relu_dual_norm(
    x: torch.Tensor,
    d: torch.Tensor,
    w: torch.Tensor,
    lam: float,
    *,
    iters: int = 300,
    exact: int = 2000,
) -> float:
    """A rigorous upper bound on max_i max_± sup_{u ∈ C_i, ‖u‖ ≤ 1} ±wᵀD_iX̃u."""
    norms = relu_dual_norms(x, d, w, lam, iters=iters, exact=exact)
    return float(norms.max()) if len(norms) else 0.0


def relu_dual_norms(
    x: torch.Tensor,
    d: torch.Tensor,
    w: torch.Tensor,
    lam: float,
    *,
    iters: int = 300,
    exact: int = 2000,
    chunk: int = 20000,
) -> torch.Tensor:
    """Per pattern (P,), an upper bound on max_± sup_{u ∈ C_i, ‖u‖ ≤ 1} ±wᵀD_iX̃u.

    Patterns whose plain bound ‖X̃ᵀD_i w‖ is already ≤ λ keep it; the others get accelerated
    projected gradient on μ ≥ 0 (keeping the smallest norm any iterate reached) and, for the
    ``exact`` worst ones still above λ, an exact NNLS."""
    g = (d * w[:, None]).T @ x  # (P, d)
    out = g.norm(dim=1)
    active = torch.nonzero(out > lam).flatten()
    if len(active) == 0:
        return out
    step = 1.0 / float(torch.linalg.matrix_norm(x, ord=2)) ** 2
    for start in range(0, len(active), chunk):
        idx = active[start : start + chunk]
        s = 2 * d[:, idx] - 1  # (N, A)
        worst = torch.zeros(len(idx), dtype=x.dtype)
        for sign in (1.0, -1.0):
            h = sign * g[idx]
            best = h.norm(dim=1)
            mu = torch.zeros_like(s)
            z, t = mu, 1.0
            for _ in range(iters):
                r = h + (s * z).T @ x  # (A, d)
                best = torch.minimum(best, r.norm(dim=1))
                if float(best.max()) <= lam:
                    break
                mu_next = torch.clamp(z - step * s * (x @ r.T), min=0.0)
                t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
                z = mu_next + (t - 1) / t_next * (mu_next - mu)
                mu, t = mu_next, t_next
            r = h + (s * mu).T @ x
            best = torch.minimum(best, r.norm(dim=1))
            best = _exact_where_needed(x, s, h, best, lam, exact)
            worst = torch.maximum(worst, best)
        out[idx] = worst
    return out


def _exact_where_needed(
    x: torch.Tensor, s: torch.Tensor, h: torch.Tensor, best: torch.Tensor, lam: float, limit: int
) -> torch.Tensor:
    """min_{μ≥0} ‖h_i + X̃ᵀ(s_i ⊙ μ)‖ exactly (Lawson–Hanson NNLS) for the worst patterns still
    above λ, up to ``limit`` of them."""
    from scipy.optimize import nnls

    over = torch.nonzero(best > lam).flatten()
    if len(over) == 0 or limit <= 0:
        return best
    over = over[torch.argsort(best[over], descending=True)][:limit]
    xn = x.numpy()
    best = best.clone()
    for i in over.tolist():
        a = (xn * s[:, i].numpy()[:, None]).T  # (d, N)
        mu, _ = nnls(a, -h[i].numpy(), maxiter=50 * a.shape[1])
        r = h[i] + torch.from_numpy(a @ mu)
        best[i] = min(float(best[i]), float(r.norm()))
    return best


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
