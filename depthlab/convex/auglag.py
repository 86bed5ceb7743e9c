"""The ReLU program by an augmented Lagrangian on its cone constraints, warm-started from the
gated solution, with a lower bound built from its own multipliers.

min_U L(Σ_i D_iX̃(u_i − u'_i)) + λ Σ_i (‖u_i‖ + ‖u'_i‖)  s.t.  c_i = (2D_i − I)X̃u_i ≥ 0, same u'_i.

For multipliers μ ≥ 0 (one per constraint row, shape (2, N, P)) and a penalty ρ the inner problem

    min_U L(F U) + (ρ/2) Σ ‖(μ/ρ − c(U))_+‖² + λ Σ ‖·‖

is a group lasso with a smooth part, solved by ``apg`` (all patterns at once: c = S ⊙ X̃Uᵀ);
then μ ← (μ − ρc)_+ and ρ grows tenfold when the violation stalls (Hestenes–Powell; Bertsekas
1982, ch. 2). The inner solve stops on the norm of the composite
gradient mapping, a tolerance that tightens every round.

The multipliers certify. For any w and any μ_i ≥ 0, a pattern's dual constraint
sup_{u ∈ C_i, ‖u‖ ≤ 1} ∓wᵀD_iX̃u is at most ‖∓X̃ᵀD_iw + X̃ᵀ(S_i ⊙ μ_i)‖ (``certify``), so the
multipliers of u_i and u'_i, refined by a few projected-gradient steps on that norm (all
patterns at once), give a dual-feasible scaling of the loss gradient at the *network's*
predictions and with it a lower bound for the ReLU program over the same patterns. The upper
bound is the objective of the ReLU network the weights define (``network_objective``), true
whatever the remaining violation.
"""

from __future__ import annotations

import math
import time

import torch

from depthlab.convex.apg import Image, apg
from depthlab.convex.certify import dual_bound
from depthlab.convex.gated import GatedSmooth, curvature_bound
from depthlab.convex.programs import Program, group_prox

__all__ = ["ALSmooth", "relu_auglag", "multiplier_norms"]


class ALSmooth:
    """U ↦ L(F U) + (ρ/2)Σ‖(μ/ρ − S ⊙ X̃U_kᵀ)_+‖², U of shape (2, P, d); its image is
    Z = (X̃U_0ᵀ, X̃U_1ᵀ), (2, N, P)."""

    def __init__(self, prog: Program, mu: torch.Tensor, rho: float) -> None:
        self.x, self.d, self.s, self.loss = prog.x, prog.d, prog.sign, prog.loss
        self.mu, self.rho = mu, rho

    def image(self, u: torch.Tensor) -> Image:
        return (torch.stack([self.x @ u[0].T, self.x @ u[1].T]),)

    def _pred(self, z: torch.Tensor) -> torch.Tensor:
        return (self.d * (z[0] - z[1])).sum(1)

    def value(self, a: Image) -> float:
        z = a[0]
        pen = torch.relu(self.mu / self.rho - self.s * z)
        return self.loss.value(self._pred(z)) + self.rho / 2 * float((pen * pen).sum())

    def grad(self, a: Image) -> torch.Tensor:
        z = a[0]
        r = self.d * self.loss.grad(self._pred(z))[:, None]
        pen = self.s * torch.relu(self.mu - self.rho * self.s * z)
        return torch.stack([(r - pen[0]).T @ self.x, (-r - pen[1]).T @ self.x])


def multiplier_norms(
    x: torch.Tensor,
    d: torch.Tensor,
    w: torch.Tensor,
    mu: torch.Tensor,
    *,
    refine: int = 50,
) -> torch.Tensor:
    """Per pattern (P,), a rigorous upper bound on max_± sup_{u ∈ C_i, ‖u‖ ≤ 1} ±wᵀD_iX̃u:
    min(‖g_i‖, ‖∓g_i + X̃ᵀ(S_i ⊙ μ_ki)‖) per sign, g_i = X̃ᵀD_iw, with μ_k ≥ 0 started from
    the given multipliers and improved by ``refine`` accelerated projected-gradient steps on
    ½‖∓g + X̃ᵀ(S ⊙ μ)‖² (every iterate is a valid μ ≥ 0)."""
    s = 2 * d - 1
    g = (d * w[:, None]).T @ x  # (P, d)
    plain = g.norm(dim=1)
    step = 1.0 / max(float(torch.linalg.matrix_norm(x, ord=2)) ** 2, 1e-300)
    out = []
    for k, h in ((0, -g), (1, g)):
        m = mu[k].clone()
        best = (h + (s * m).T @ x).norm(dim=1)
        prev, t = m, 1.0
        for _ in range(refine):
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            y = m + (t - 1) / t_new * (m - prev)
            r = h + (s * y).T @ x  # (P, d)
            prev, m = m, torch.relu(y - step * s * (x @ r.T))
            t = t_new
            best = torch.minimum(best, (h + (s * m).T @ x).norm(dim=1))
        out.append(torch.minimum(plain, best))
    return torch.maximum(out[0], out[1])


def relu_auglag(
    prog: Program,
    *,
    tol: float = 1e-6,
    u0: torch.Tensor | None = None,
    deadline: float = math.inf,
    max_outer: int = 60,
    max_iter: int = 200_000,
    inner: int = 500,
    rho_scale: float = 10.0,
    grow_if: float = 0.9,
    trace: list[tuple[float, float, float]] | None = None,
) -> tuple[torch.Tensor, float, float, int, bool]:
    """Returns ``(U, upper, lower, iterations, converged)``: U (2, P, d); upper the objective
    of the ReLU network U defines, lower a dual bound over the program's patterns.

    ρ starts at ``rho_scale`` × (loss curvature · ‖F‖²) / σ_max(X̃)², the two parts' step sizes
    in proportion, and grows tenfold when a round leaves the violation above ``grow_if`` × the
    last one's; each round runs at most ``inner`` iterations."""
    x, d, loss, lam = prog.x, prog.d, prog.loss, prog.lam
    n, p = d.shape
    u = prog.zeros() if u0 is None else u0.clone().to(x)
    sig2 = float(torch.linalg.matrix_norm(x, ord=2)) ** 2
    f_norm2 = GatedSmooth(x, d, loss).lipschitz(u[0]) / curvature_bound(loss)
    lip_loss = 2 * curvature_bound(loss) * f_norm2
    rho = rho_scale * lip_loss / max(sig2, 1e-300)
    mu = torch.zeros(2, n, p, dtype=x.dtype, device=x.device)
    best_u, upper, lower = u, prog.network_objective(u), -math.inf
    prev_viol, eps, its = math.inf, 1e-2, 0
    t0 = time.perf_counter()
    for _ in range(max_outer):
        smooth = ALSmooth(prog, mu, rho)
        lip = 1.1 * (lip_loss + rho * sig2)  # a bound: the step is fixed, f never evaluated

        def stop(v: torch.Tensor, a: Image, smooth: ALSmooth = smooth, lip: float = lip,
                 eps: float = eps) -> bool:  # fmt: skip
            # the composite gradient mapping at v, against the size of the gradient
            g = smooth.grad(a)
            mapped = lip * (v - group_prox(v - g / lip, lam / lip)).norm()
            return float(mapped) <= eps * max(float(g.norm()), lam)

        budget = min(inner, max_iter - its)
        u, a, n_it, _ = apg(
            smooth, lam, u, lip, stop=stop, max_iter=budget, deadline=deadline, line_search=False
        )
        its += n_it
        c = prog.sign * a[0]
        mu = torch.relu(mu - rho * c)
        viol = float(torch.relu(-c).max())
        obj = prog.network_objective(u)
        w = loss.grad(prog.network_predict(u))
        late = time.perf_counter() > deadline  # past the budget: the bound as it stands
        norms = multiplier_norms(x, d, w, mu, refine=0 if late else 50)
        low = dual_bound(loss, w, lam, float(norms.max()))
        if obj < upper:
            best_u, upper = u, obj
        lower = max(lower, low)
        if trace is not None:
            trace.append((time.perf_counter() - t0, obj, low))
        if (upper - lower) <= tol * max(abs(upper), 1e-12):
            break
        if time.perf_counter() > deadline or its >= max_iter:
            break
        if viol > grow_if * prev_viol:
            rho *= 10.0
        prev_viol = viol
        eps = max(eps * 0.2, 1e-12)
    ok = (upper - lower) <= tol * max(abs(upper), 1e-12)
    return best_u, upper, lower, its, ok
