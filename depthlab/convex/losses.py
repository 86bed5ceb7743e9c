"""The two losses of the convex programs, with what the solvers and certificates need of them.

Scaling as in the non-convex objective (Pilanci & Ergen 2020): squared
L(p) = (1/(2N))‖p − y‖², logistic L(p) = (1/N) Σ_n log(1 + exp(−y_n p_n)) with y_n ∈ {−1, +1}.
``dual(w)`` is −L*(w), the loss part of the Fenchel dual, so that for any dual-feasible w the
optimum is ≥ dual(w); it is −inf where L* is infinite.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

__all__ = ["Loss", "SquaredLoss", "LogisticLoss", "make_loss", "LOSSES"]

LOSSES = ("squared", "logistic")


class Loss(Protocol):
    name: str
    y: torch.Tensor

    def value(self, p: torch.Tensor) -> float: ...

    def grad(self, p: torch.Tensor) -> torch.Tensor: ...

    def dual(self, w: torch.Tensor) -> float: ...

    def prox(self, v: torch.Tensor, t: float) -> torch.Tensor: ...


class SquaredLoss:
    """L(p) = (1/(2N))‖p − y‖²; −L*(w) = −wᵀy − (N/2)‖w‖²."""

    name = "squared"

    def __init__(self, y: torch.Tensor) -> None:
        self.y = y
        self.n = len(y)

    def value(self, p: torch.Tensor) -> float:
        return float(((p - self.y) ** 2).sum()) / (2 * self.n)

    def grad(self, p: torch.Tensor) -> torch.Tensor:
        return (p - self.y) / self.n

    def dual(self, w: torch.Tensor) -> float:
        return -float(w @ self.y) - self.n / 2 * float(w @ w)

    def prox(self, v: torch.Tensor, t: float) -> torch.Tensor:
        """argmin_z L(z) + ‖z − v‖²/(2t)."""
        return (t * self.y + self.n * v) / (t + self.n)


class LogisticLoss:
    """L(p) = (1/N) Σ log(1 + exp(−y p)); −L*(w) = (1/N) Σ H(s_n), s_n = −N w_n y_n ∈ [0, 1],
    H the binary entropy in nats."""

    name = "logistic"

    def __init__(self, y: torch.Tensor) -> None:
        self.y = y
        self.n = len(y)

    def value(self, p: torch.Tensor) -> float:
        return float(torch.nn.functional.softplus(-self.y * p).sum()) / self.n

    def grad(self, p: torch.Tensor) -> torch.Tensor:
        return -self.y * torch.sigmoid(-self.y * p) / self.n

    def dual(self, w: torch.Tensor) -> float:
        s = -self.n * w * self.y
        if bool((s < -1e-12).any()) or bool((s > 1 + 1e-12).any()):
            return -math.inf
        s = s.clamp(0.0, 1.0)
        ent = -(torch.xlogy(s, s) + torch.xlogy(1 - s, 1 - s))
        return float(ent.sum()) / self.n

    def prox(self, v: torch.Tensor, t: float) -> torch.Tensor:
        """argmin_z L(z) + ‖z − v‖²/(2t), coordinate-wise by safeguarded Newton steps."""
        z = v.clone()
        for _ in range(30):
            sig = torch.sigmoid(-self.y * z)
            g = -self.y * sig / self.n + (z - v) / t
            h = sig * (1 - sig) / self.n + 1 / t
            step = g / h
            z = z - step
            if float(step.abs().max()) < 1e-13 * (1 + float(z.abs().max())):
                break
        return z


def make_loss(name: str, y: torch.Tensor) -> Loss:
    if name == "squared":
        return SquaredLoss(y)
    if name == "logistic":
        return LogisticLoss(y)
    from depthlab.exceptions import SpecError

    raise SpecError("loss", f"unknown loss {name!r}; choices: {', '.join(LOSSES)}")


def best_scale(loss: Loss, w: torch.Tensor, t_max: float) -> tuple[float, float]:
    """max over t ∈ [0, t_max] of the concave −L*(t w): ``(t, value)``."""
    if isinstance(loss, SquaredLoss):
        ww = float(w @ w)
        t = 0.0 if ww == 0 else min(max(-float(w @ loss.y) / (loss.n * ww), 0.0), t_max)
        return t, loss.dual(t * w)
    # Golden-section search on a concave function of one variable.
    lo, hi = 0.0, t_max
    phi = (math.sqrt(5) - 1) / 2
    a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
    fa, fb = loss.dual(a * w), loss.dual(b * w)
    for _ in range(60):
        if fa < fb:
            lo, a, fa = a, b, fb
            b = lo + phi * (hi - lo)
            fb = loss.dual(b * w)
        else:
            hi, b, fb = b, a, fa
            a = hi - phi * (hi - lo)
            fa = loss.dual(a * w)
    cands = [(t, loss.dual(t * w)) for t in (lo, hi, t_max)]
    return max(cands, key=lambda c: c[1])
