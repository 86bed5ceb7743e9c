"""The infinite-width NNGP and neural tangent kernels of a fully connected network, any activation.

The network, in the NTK parametrisation (Jacot, Gabriel & Hongler 2018), has ``depth`` = L hidden
layers of width n → ∞, input x ∈ ℝᵈ and one output::

    h¹ = (σ_w/√d) W¹ x + σ_b b¹,    h^{l+1} = (σ_w/√n) W^{l+1} φ(h^l) + σ_b b^{l+1},    f = h^{L+1}

with every entry of W and b drawn from N(0, 1) and trained. Its kernels follow the recursion

- Σ¹(x, x′) = σ_w² x·x′/d + σ_b²,  Θ¹ = Σ¹;
- Σ^{l+1} = σ_w² E[φ(u)φ(v)] + σ_b²,  Σ̇^{l+1} = σ_w² E[φ′(u)φ′(v)],
  (u, v) ~ N(0, [[Σ^l(x, x), Σ^l(x, x′)], [Σ^l(x, x′), Σ^l(x′, x′)]]);
- Θ^{l+1} = Θ^l · Σ̇^{l+1} + Σ^{l+1};

and the kernels of the net are Σ^{L+1} (NNGP) and Θ^{L+1} (NTK). E[φ(u)φ(v)] as a function of
the covariance is the *dual activation* of φ (Daniely, Frostig & Singer 2016).

Quadrature. Write (u, v) = (√q₁ r cos ψ, √q₂ r cos(ψ − θ)) with cos θ the correlation, r with
density r e^{−r²/2} on [0, ∞) and ψ uniform on [0, 2π): the pair has the right covariance, and
an activation with a kink at 0 (ReLU and relatives) is smooth inside the angular pieces cut at
the zeros of cos ψ and cos(ψ − θ). Each piece gets a Gauss–Legendre rule in ψ; r gets a
Gauss–Legendre rule on [0, √80] (the tail beyond carries e^{−40} of the mass). For ReLU this is
exact to roundoff (≈ 1e-14 against the arc-cosine kernels); for smooth φ it converges
exponentially in the node counts. φ′ comes from autograd, so any elementwise φ works.

Speed. When all inputs of both sets have the same Σ^l(x, x) (inputs of equal norm, the usual
setting on the sphere), the dual activation at layer l is a function of θ alone: it is evaluated
once on ``grid`` angles in [0, π] and interpolated by a cubic spline in θ (smooth in θ even at a
kink, unlike in cos θ). Otherwise every pair is integrated directly, N₁·N₂ times the rule.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from scipy.interpolate import CubicSpline

from depthlab.exceptions import SpecError
from depthlab.layers.activations import resolve_activation

__all__ = ["NTKKernels", "dual_activation", "infinite_ntk", "kernels_by_depth"]

Elementwise = Callable[[torch.Tensor], torch.Tensor]

_R_MAX = math.sqrt(80.0)  # e^{−r²/2} < 5e-18 beyond
_EQUAL_RTOL = 1e-12  # diagonals equal to this relative tolerance use the θ-table


@dataclasses.dataclass(frozen=True)
class NTKKernels:
    """Σ^{L+1} (``nngp``) and Θ^{L+1} (``ntk``) between two input sets, float64 ``(N₁, N₂)``."""

    depth: int
    nngp: torch.Tensor
    ntk: torch.Tensor


@lru_cache(maxsize=8)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    z, w = np.polynomial.legendre.leggauss(n)
    return z, w


def _radial_rule(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes r and weights for ∫₀^∞ g(r) r e^{−r²/2} dr (the weights include the density)."""
    z, w = _legendre(n)
    r = (z + 1) * _R_MAX / 2
    wr = w * _R_MAX / 2 * r * np.exp(-(r**2) / 2)
    return torch.from_numpy(r), torch.from_numpy(wr)


def _angular_rule(theta: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-θ nodes ψ (T, 5n) and weights (summing to 1) for the uniform average over [0, 2π),
    with the pieces cut where cos ψ = 0 or cos(ψ − θ) = 0."""
    half = math.pi / 2
    cuts = torch.stack(
        [
            torch.full_like(theta, half),
            torch.full_like(theta, 3 * half),
            torch.remainder(theta + half, 2 * math.pi),
            torch.remainder(theta + 3 * half, 2 * math.pi),
        ],
        dim=1,
    )
    ends = torch.cat(
        [
            torch.zeros_like(theta)[:, None],
            cuts.sort(dim=1).values,
            torch.full_like(theta, 2 * math.pi)[:, None],
        ],
        dim=1,
    )  # (T, 6)
    lo, hi = ends[:, :-1], ends[:, 1:]  # (T, 5); a zero-length piece gets zero weight
    z, w = (torch.from_numpy(a) for a in _legendre(n))
    psi = lo[:, :, None] + (hi - lo)[:, :, None] * (z + 1) / 2  # (T, 5, n)
    wpsi = (hi - lo)[:, :, None] * w / 2 / (2 * math.pi)
    return psi.reshape(len(theta), -1), wpsi.reshape(len(theta), -1)


def _value_and_grad(phi: Elementwise, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        y = phi(x)
        (g,) = torch.autograd.grad(y.sum(), x, allow_unused=True)
    return y.detach(), (torch.zeros_like(x) if g is None else g.detach())


def dual_activation(
    act: str | Elementwise,
    q1: torch.Tensor,
    q2: torch.Tensor,
    cos_theta: torch.Tensor,
    *,
    angular: int = 24,
    radial: int = 48,
    chunk: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E[φ(u)φ(v)], E[φ′(u)φ′(v)])`` for (u, v) with variances q₁, q₂ and correlation cos θ,
    elementwise over 1-D float64 tensors of one length T (shape (T,) each)."""
    phi = resolve_activation(act).fn
    q1, q2, c = (torch.as_tensor(t, dtype=torch.float64).reshape(-1) for t in (q1, q2, cos_theta))
    theta = torch.arccos(c.clamp(-1.0, 1.0))
    r, wr = _radial_rule(radial)
    out_f, out_g = [], []
    for s in range(0, len(theta), chunk):
        th = theta[s : s + chunk]
        psi, wpsi = _angular_rule(th, angular)  # (t, P)
        a = torch.sqrt(q1[s : s + chunk])[:, None, None] * torch.cos(psi)[:, :, None]
        b = torch.sqrt(q2[s : s + chunk])[:, None, None] * torch.cos(psi - th[:, None])[:, :, None]
        fu, gu = _value_and_grad(phi, a * r)  # (t, P, R)
        fv, gv = _value_and_grad(phi, b * r)
        w = wpsi[:, :, None] * wr  # (t, P, R)
        out_f.append((w * fu * fv).sum(dim=(1, 2)))
        out_g.append((w * gu * gv).sum(dim=(1, 2)))
    return torch.cat(out_f), torch.cat(out_g)


_TABLE_CACHE: dict[tuple[Any, ...], tuple[CubicSpline, CubicSpline, float, float]] = {}
_TABLE_CACHE_SIZE = 16


class _Tables:
    """Splines in θ of E[φφ] and E[φ′φ′] at one variance q. Kept while q stays put, and cached
    across calls by (φ, q, node counts), so a sweep over datasets computes each table once."""

    def __init__(self, grid: int, angular: int, radial: int) -> None:
        self.grid, self.angular, self.radial = grid, angular, radial
        self.q = math.nan
        self.splines: tuple[CubicSpline, CubicSpline, float, float] | None = None

    def at(self, phi: Elementwise, q: float) -> tuple[CubicSpline, CubicSpline, float, float]:
        if self.splines is not None and abs(q - self.q) <= _EQUAL_RTOL * q:
            return self.splines
        key = (phi, q, self.grid, self.angular, self.radial)
        if key not in _TABLE_CACHE:
            th = torch.linspace(0.0, math.pi, self.grid, dtype=torch.float64)
            qq = torch.full_like(th, q)
            f, g = dual_activation(
                phi, qq, qq, torch.cos(th), angular=self.angular, radial=self.radial
            )
            tf = CubicSpline(th.numpy(), f.numpy())
            tg = CubicSpline(th.numpy(), g.numpy())
            if len(_TABLE_CACHE) >= _TABLE_CACHE_SIZE:
                _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))
            _TABLE_CACHE[key] = (tf, tg, float(f[0]), float(g[0]))
        self.q, self.splines = q, _TABLE_CACHE[key]
        return self.splines


def _layer(
    phi: Elementwise,
    d1: torch.Tensor,
    d2: torch.Tensor,
    cross: torch.Tensor,
    tables: _Tables,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of the recursion without the σ factors: E[φφ] and E[φ′φ′] on the two diagonals
    and on the cross block."""
    angular, radial = tables.angular, tables.radial
    q_all = torch.cat([d1, d2])
    q0 = float(q_all[0])
    c = cross / torch.sqrt(d1[:, None] * d2[None, :])
    if torch.allclose(q_all, torch.full_like(q_all, q0), rtol=_EQUAL_RTOL, atol=0.0):
        # One table over θ serves every pair: the dual depends on θ alone.
        tf, tg, f0v, g0v = tables.at(phi, q0)
        t = torch.arccos(c.clamp(-1.0, 1.0)).numpy()
        fc, gc = torch.from_numpy(tf(t)), torch.from_numpy(tg(t))
        f0, g0 = torch.full_like(d1, f0v), torch.full_like(d1, g0v)
        f0b, g0b = torch.full_like(d2, f0v), torch.full_like(d2, g0v)
        return f0, g0, f0b, g0b, fc, gc
    n1, n2 = len(d1), len(d2)
    ones1, ones2 = torch.ones_like(d1), torch.ones_like(d2)
    f1, g1 = dual_activation(phi, d1, d1, ones1, angular=angular, radial=radial)
    f2, g2 = dual_activation(phi, d2, d2, ones2, angular=angular, radial=radial)
    qa = d1[:, None].expand(n1, n2).reshape(-1)
    qb = d2[None, :].expand(n1, n2).reshape(-1)
    fc, gc = dual_activation(phi, qa, qb, c.reshape(-1), angular=angular, radial=radial)
    return f1, g1, f2, g2, fc.reshape(n1, n2), gc.reshape(n1, n2)


def kernels_by_depth(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    act: str | Elementwise = "relu",
    depths: Iterable[int] = (1,),
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    *,
    grid: int = 1025,
    angular: int = 24,
    radial: int = 48,
) -> dict[int, NTKKernels]:
    """Σ and Θ between ``x1`` (N₁, d) and ``x2`` (N₂, d; default ``x1``) for a net with each of
    ``depths`` hidden layers, from one pass of the recursion up to the largest depth."""
    wanted = sorted(set(int(d) for d in depths))
    if not wanted or wanted[0] < 0:
        raise SpecError("depths", f"need hidden-layer counts >= 0; got {wanted!r}")
    if not (math.isfinite(sigma_w2) and sigma_w2 > 0):
        raise SpecError("sigma_w2", f"weight variance must be finite and > 0; got {sigma_w2!r}")
    if not (math.isfinite(sigma_b2) and sigma_b2 >= 0):
        raise SpecError("sigma_b2", f"bias variance must be finite and >= 0; got {sigma_b2!r}")
    if grid < 4:
        raise SpecError("grid", f"need at least 4 table angles; got {grid!r}")
    a = torch.as_tensor(x1, dtype=torch.float64).reshape(len(x1), -1)
    b = a if x2 is None else torch.as_tensor(x2, dtype=torch.float64).reshape(len(x2), -1)
    if a.shape[1] != b.shape[1]:
        raise SpecError("x2", f"has {b.shape[1]} features but x1 has {a.shape[1]}")
    phi = resolve_activation(act).fn
    d = a.shape[1]
    # Layer 1 (the input layer is linear): Σ¹ = σ_w² x·x′/d + σ_b², Θ¹ = Σ¹.
    s11 = sigma_w2 * (a * a).sum(1) / d + sigma_b2
    s22 = sigma_w2 * (b * b).sum(1) / d + sigma_b2
    s12 = sigma_w2 * (a @ b.T) / d + sigma_b2
    t12 = s12.clone()
    tables = _Tables(grid, angular, radial)
    out: dict[int, NTKKernels] = {}
    for layer in range(wanted[-1] + 1):
        if layer in wanted:
            out[layer] = NTKKernels(layer, s12.clone(), t12.clone())
        if layer == wanted[-1]:
            break
        f1, g1, f2, g2, fc, gc = _layer(phi, s11, s22, s12, tables)
        t12 = t12 * sigma_w2 * gc + sigma_w2 * fc + sigma_b2
        s11, s22, s12 = sigma_w2 * f1 + sigma_b2, sigma_w2 * f2 + sigma_b2, sigma_w2 * fc + sigma_b2
    return out


def infinite_ntk(
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    act: str | Elementwise = "relu",
    depth: int = 1,
    sigma_w2: float = 2.0,
    sigma_b2: float = 0.0,
    **quadrature: Any,
) -> torch.Tensor:
    """Θ^{depth+1}(x1, x2), float64 ``(N₁, N₂)``: the NTK of the module docstring's network with
    ``depth`` hidden layers. ``quadrature``: ``grid``, ``angular``, ``radial`` node counts."""
    return kernels_by_depth(x1, x2, act, (depth,), sigma_w2, sigma_b2, **quadrature)[depth].ntk
