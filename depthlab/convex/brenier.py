"""∇ICNN as a Brenier map, checked against the closed-form Gaussian optimal transport map.

Brenier: the optimal transport map for the squared distance between densities is the gradient of
a convex function. Between N(m₁, Σ₁) and N(m₂, Σ₂) it is T(x) = m₂ + A(x − m₁) with
A = Σ₁^{−1/2}(Σ₁^{1/2}Σ₂Σ₁^{1/2})^{1/2}Σ₁^{−1/2}, the gradient of a convex quadratic
(formulas.md). ``fit_brenier`` learns f (an icnn with one output) from samples of the two
Gaussians on the semi-dual of optimal transport and never sees T; the result is compared with T
afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["gaussian_ot_map", "fit_brenier", "icnn_gradient"]


def _sqrtm(s: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(s)
    return vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T


def gaussian_ot_map(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """A with T(x) = m₂ + A(x − m₁), the optimal map N(m₁, Σ₁) → N(m₂, Σ₂)."""
    r1 = _sqrtm(s1)
    r1_inv = torch.linalg.inv(r1)
    return r1_inv @ _sqrtm(r1 @ s2 @ r1) @ r1_inv


def icnn_gradient(f: nn.Module, x: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
    """∇ₓ f(x) for a scalar-output network, per sample."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = f(x).sum()
        (g,) = torch.autograd.grad(out, x, create_graph=create_graph)
    return g


def _conjugate_argmax(f: nn.Module, y: torch.Tensor, iters: int) -> torch.Tensor:
    """argmax_z ⟨z, y⟩ − f(z) (concave in z) by gradient ascent from z = y: the point where
    ∇f(z) = y, so that f*(y) = ⟨z, y⟩ − f(z)."""
    z = y.clone()
    for _ in range(iters):
        z = z + 0.5 * (y - icnn_gradient(f, z))
    return z.detach()


def fit_brenier(
    f: nn.Module,
    m1: torch.Tensor,
    s1: torch.Tensor,
    m2: torch.Tensor,
    s2: torch.Tensor,
    *,
    steps: int = 1000,
    batch: int = 256,
    lr: float = 1e-2,
    inner: int = 30,
    seed: int = 0,
) -> nn.Module:
    """Train f on the Kantorovich semi-dual E_μ[f(x)] + E_ν[f*(y)], whose minimiser over convex
    f is the Brenier potential (its gradient the OT map μ → ν). f* is evaluated exactly at an
    inner maximiser z(y); by the envelope theorem ∇_θ f*(y) = −∇_θ f(z(y)), so the loss is
    mean f(x) − mean f(z(y)) with z held fixed. μ = N(m₁, Σ₁), ν = N(m₂, Σ₂), fresh samples
    every step."""
    gen = torch.Generator().manual_seed(seed)
    l1, l2 = torch.linalg.cholesky(s1), torch.linalg.cholesky(s2)
    dim = len(m1)
    opt = torch.optim.Adam(f.parameters(), lr=lr)
    for _ in range(steps):
        x = m1 + torch.randn(batch, dim, generator=gen) @ l1.T
        y = m2 + torch.randn(batch, dim, generator=gen) @ l2.T
        z = _conjugate_argmax(f, y, inner)
        loss = f(x).mean() - f(z).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return f
