"""Accelerated proximal gradient for φ(A u) + λ Σ_i ‖u_i‖, A linear, vectorised over patterns.

FISTA (Beck & Teboulle 2009) with a backtracking line search that also lets the step grow
back, and gradient-based adaptive restart of the momentum (O'Donoghue & Candès 2015: restart
when (y_k − x_{k+1})ᵀ(x_{k+1} − x_k) > 0). A is linear, so the image of the momentum point is
the same combination of images, A y = A x + β(A x − A x_prev): each iteration costs one
product with A (at the new iterate) and one with Aᵀ (the gradient), plus one more A per
rejected step. Every product is a masked matrix product over all patterns at once,
``D ⊙ (X̃ Uᵀ)`` and ``(D ⊙ r)ᵀ X̃`` — no loop over patterns — on the device of the data.

``Smooth`` is the interface: ``image(u)`` gives A u as a tuple of tensors, ``value(a)`` φ(a) and
``grad(a)`` Aᵀ∇φ(a). ``apg`` runs until ``stop(u, a)`` (checked every ``check_every``
iterations) says so, or the deadline or iteration budget runs out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import torch

from depthlab.convex.programs import group_prox

__all__ = ["Smooth", "apg", "operator_norm_sq"]

Image = tuple[torch.Tensor, ...]


class Smooth(Protocol):
    def image(self, u: torch.Tensor) -> Image: ...

    def value(self, a: Image) -> float: ...

    def grad(self, a: Image) -> torch.Tensor: ...


def _comb(a: Image, b: Image, beta: float) -> Image:
    """a + β(a − b), elementwise over the tuple."""
    return tuple(ai + beta * (ai - bi) for ai, bi in zip(a, b, strict=True))


def operator_norm_sq(
    apply: Callable[[torch.Tensor], torch.Tensor],
    like: torch.Tensor,
    iters: int = 30,
    seed: int = 0,
) -> float:
    """‖M‖² of a symmetric PSD operator's square root by power iteration on ``apply`` = MᵀM,
    started from a seeded random point shaped like ``like``; 1.05× the estimate (it is a lower
    bound and the line search fixes the rest)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(like.shape, generator=gen, dtype=like.dtype).to(like.device)
    v = v / v.norm()
    est = 0.0
    for _ in range(iters):
        w = apply(v)
        est = float(w.norm())
        if est == 0.0:
            return 0.0
        v = w / est
    return 1.05 * est


def apg(
    f: Smooth,
    lam: float,
    u0: torch.Tensor,
    lip: float,
    *,
    stop: Callable[[torch.Tensor, Image], bool],
    max_iter: int = 100_000,
    check_every: int = 10,
    deadline: float = math.inf,
    shrink: float = 0.9,
    line_search: bool = True,
) -> tuple[torch.Tensor, Image, int, float]:
    """Minimise f(u) + λ Σ‖u_i‖ (groups along the last axis) from ``u0``; ``lip`` a first guess
    of f's Lipschitz constant. Returns ``(u, A u, iterations, final Lipschitz estimate)``.

    ``line_search=False`` takes the fixed step 1/``lip`` (``lip`` must then be a true bound):
    no evaluation of f at all, for smooth parts whose value costs as much as their gradient."""
    x = u0.clone()
    ax = f.image(x)
    x_prev, ax_prev = x, ax
    t = 1.0
    lip = max(lip, 1e-12)
    it = 0
    for it in range(1, max_iter + 1):
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        beta = (t - 1) / t_new
        y = x + beta * (x - x_prev) if beta > 0 else x
        ay = _comb(ax, ax_prev, beta) if beta > 0 else ax
        g = f.grad(ay)
        if not line_search:
            x_new = group_prox(y - g / lip, lam / lip)
            ax_new = f.image(x_new)
        fy = f.value(ay) if line_search else 0.0
        while line_search:
            x_new = group_prox(y - g / lip, lam / lip)
            diff = x_new - y
            ax_new = f.image(x_new)
            f_new = f.value(ax_new)
            quad = fy + float((g * diff).sum()) + lip / 2 * float((diff * diff).sum())
            if f_new <= quad + 1e-12 * abs(fy):
                break
            lip *= 2.0
        # Adaptive restart: the momentum points away from the descent direction.
        if float(((y - x_new) * (x_new - x)).sum()) > 0:
            t_new = 1.0
        x_prev, ax_prev, x, ax, t = x, ax, x_new, ax_new, t_new
        if line_search:
            lip *= shrink  # let the step grow back; the line search catches it if it is too long
        if time.perf_counter() > deadline or (it % check_every == 0 and stop(x, ax)):
            break
    return x, ax, it, lip
