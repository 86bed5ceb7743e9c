"""The convex programs of a two-layer ReLU network (Pilanci & Ergen 2020), as linear operators.

Data X̃ (N, d) with the bias as a column, targets y (N,), patterns D (N, P) as 0/1 columns.

* gated ReLU: weights U (P, d); predictions F U = Σ_i D_i X̃ u_i; objective
  L(F U) + λ Σ_i ‖u_i‖ — an unconstrained group lasso.
* ReLU: weights U (2, P, d) for (u_i, u'_i); predictions Σ_i D_i X̃ (u_i − u'_i); the same
  penalty over both; cone constraints (2D_i − I) X̃ u_i ≥ 0 and the same for u'_i.
"""

from __future__ import annotations

import dataclasses

import torch

from depthlab.convex.losses import Loss

__all__ = ["Program", "MODELS"]

MODELS = ("relu", "gated")


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
    """One convex program: data, loss, λ, the patterns and which model (``relu`` or ``gated``)."""

    x: torch.Tensor  # (N, d) float64, bias column included
    d: torch.Tensor  # (N, P) float64 0/1
    loss: Loss
    lam: float
    model: str

    @property
    def sign(self) -> torch.Tensor:
        """2D − 1: +1 where a pattern is on, −1 where off (the cone constraints' signs)."""
        return 2 * self.d - 1

    @property
    def shape(self) -> tuple[int, ...]:
        p, dim = self.d.shape[1], self.x.shape[1]
        return (p, dim) if self.model == "gated" else (2, p, dim)

    def zeros(self) -> torch.Tensor:
        return torch.zeros(self.shape, dtype=self.x.dtype, device=self.x.device)

    # --- the linear operator F and its adjoint ---------------------------------------------
    def predict(self, u: torch.Tensor) -> torch.Tensor:
        """F u: the convex model's predictions (N,)."""
        w = u if self.model == "gated" else u[0] - u[1]
        return (self.d * (self.x @ w.T)).sum(1)

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """Fᵀ r, shaped like u."""
        g = (self.d * r[:, None]).T @ self.x
        return g if self.model == "gated" else torch.stack([g, -g])

    # --- objective pieces ------------------------------------------------------------------
    def penalty(self, u: torch.Tensor) -> float:
        return self.lam * float(u.norm(dim=-1).sum())

    def objective(self, u: torch.Tensor) -> float:
        """L(F u) + λ Σ‖u_i‖ (for ReLU, the constraints are not checked here)."""
        return self.loss.value(self.predict(u)) + self.penalty(u)

    def network_predict(self, u: torch.Tensor) -> torch.Tensor:
        """Predictions of the ReLU network u stands for, Σ_i relu(X̃u_i) − relu(X̃u'_i): what the
        recovered network computes, whether or not u meets the cone constraints."""
        if self.model == "gated":
            raise ValueError("a gated model has no ReLU network of its own")
        relu = torch.relu
        return relu(self.x @ u[0].T).sum(1) - relu(self.x @ u[1].T).sum(1)

    def network_objective(self, u: torch.Tensor) -> float:
        """The non-convex objective of the recovered network: a true upper bound on the optimum."""
        return self.loss.value(self.network_predict(u)) + self.penalty(u)

    def violation(self, u: torch.Tensor) -> float:
        """Largest cone-constraint violation max(0, −(2D_i − I)X̃u_i) over all blocks (ReLU)."""
        if self.model == "gated":
            return 0.0
        s = self.sign
        worst = min(float((s * (self.x @ u[k].T)).min()) for k in (0, 1))
        return max(0.0, -worst)


def group_prox(u: torch.Tensor, t: float) -> torch.Tensor:
    """Block soft-thresholding: argmin_v t Σ‖v_i‖ + ½‖v − u‖² (blocks along the last axis)."""
    norms = u.norm(dim=-1, keepdim=True)
    return u * torch.clamp(1 - t / torch.clamp(norms, min=1e-300), min=0.0)
