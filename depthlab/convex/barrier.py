"""A log-barrier interior-point method for the convex programs (second order, high accuracy).

Variables per block k (2P of them: u_i and u'_i) are u_k ∈ R^d and t_k ≥ ‖u_k‖. For a
barrier weight τ the centring problem is

    τ [L(F u) + λ Σ_k t_k] − Σ_k log(t_k² − ‖u_k‖²) − Σ_k Σ_n log s_kn,   s_k = (2D_i − I)X̃u_k,

solved by Newton's method; τ grows until the barrier's own bound on the gap, m/τ with
m = 2·2P + Σ (constraint rows), is below the tolerance (Boyd & Vandenberghe 2004, ch. 11).
The Hessian is block diagonal (one (d+1) × (d+1) block per neuron) plus τFᵀWF of rank ≤ N,
W the loss curvature; Woodbury turns every Newton step into batched small inverses and one
N × N Cholesky factor of I + W^{1/2}(Σ_k D_iX̃C_kX̃ᵀD_i)W^{1/2}, C_k the u-part of B_k⁻¹.
Cost per step O(P·N·(N + d)·d); a start strictly inside every cone comes from the gates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from depthlab.convex.programs import Program

__all__ = ["barrier"]

# Up to this many unknowns the Newton system is formed and factored densely.
DENSE_LIMIT = 4000


def _interior_start(prog: Program, gates: torch.Tensor) -> torch.Tensor:
    """u_k = a small multiple of the gate of its pattern: strictly inside the cone."""
    g = gates / gates.norm(dim=1, keepdim=True).clamp(min=1e-300)
    scale = 1e-2 / max(float(prog.x.norm(dim=1).max()), 1e-300)
    return torch.stack([g * scale] * (2 if prog.model == "relu" else 1))


def barrier(
    prog: Program,
    gates: torch.Tensor,
    *,
    tol: float = 1e-8,
    max_newton: int = 1000,
    growth: float = 4.0,
    deadline: float = math.inf,
    done: Callable[[torch.Tensor], bool] | None = None,
) -> tuple[torch.Tensor, int, bool]:
    """Minimise the ReLU (or gated) program; returns ``(u, newton steps, reached tol)``, ``u``
    shaped as the program's. For ReLU ``u`` is strictly feasible, so its convex and network
    objectives agree. The gated program is the same without the linear cones."""
    x, dmat, lam = prog.x, prog.d, prog.lam
    sign = prog.sign  # (N, P)
    n, p = dmat.shape
    dim = x.shape[1]
    cones = prog.model == "relu"
    nb = 2 if cones else 1  # blocks per pattern
    blocks = range(nb)

    def fwd(u: torch.Tensor) -> torch.Tensor:  # F u, u as (nb, P, d)
        return prog.predict(u if cones else u[0])

    def adj(r: torch.Tensor) -> torch.Tensor:  # Fᵀ r as (nb, P, d)
        return prog.adjoint(r) if cones else prog.adjoint(r)[None]

    def slack(u: torch.Tensor) -> torch.Tensor:  # (nb, N, P); empty without cones
        if not cones:
            return torch.ones(nb, n, 0, dtype=x.dtype)
        return torch.stack([sign * (x @ u[k].T) for k in blocks])

    u = _interior_start(prog, gates)  # (nb, P, d)
    s = slack(u)
    keep = (s > 0).all(dim=1).all(dim=0) if cones else torch.ones(p, dtype=torch.bool)
    if not bool(keep.all()):
        prog = Program(x, dmat[:, keep], prog.loss, lam, "relu")
        inner = barrier(
            prog,
            gates[keep],
            tol=tol,
            max_newton=max_newton,
            growth=growth,
            deadline=deadline,
            done=None if done is None else lambda v: done(_embed(v, keep, p, dim)),
        )
        return _embed(inner[0], keep, p, dim), inner[1], inner[2]
    t = 2 * u.norm(dim=-1) + 1e-3  # (nb, P)
    m = 2 * nb * p + (nb * n * p if cones else 0)
    obj0 = prog.loss.value(fwd(u)) + lam * float(t.sum())
    tau = m / max(obj0, 1e-6)

    def phi(u: torch.Tensor, t: torch.Tensor, tau: float) -> float:
        q = t * t - (u * u).sum(-1)
        s = slack(u)
        if bool((q <= 0).any()) or bool((t <= 0).any()) or bool((s <= 0).any()):
            return math.inf
        val = tau * (prog.loss.value(fwd(u)) + lam * float(t.sum()))
        return val - float(torch.log(q).sum()) - float(torch.log(s).sum())

    def system(
        u: torch.Tensor, t: torch.Tensor, tau: float
    ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """(gradient of the centring objective, r ↦ H⁻¹r) at (u, t)."""
        pred = fwd(u)
        root = torch.sqrt(tau * _curvature(prog, pred))  # √(τW), (N,)
        q = t * t - (u * u).sum(-1)  # (nb, P)
        gu = tau * adj(prog.loss.grad(pred)) + 2 * u / q[..., None]
        gt = tau * lam - 2 * t / q
        eye = torch.eye(dim, dtype=x.dtype)
        q2 = q[..., None, None]
        # Block Hessians (nb, P, d+1, d+1) of the barriers.
        blk = torch.zeros(nb, p, dim + 1, dim + 1, dtype=x.dtype)
        blk[..., :dim, :dim] = 2 * eye / q2 + 4 * u[..., :, None] * u[..., None, :] / q2**2
        if cones:
            inv_s = 1.0 / slack(u)  # (2, N, P)
            gu = gu - torch.stack([(sign * inv_s[k]).T @ x for k in blocks])
            blk[..., :dim, :dim] += torch.einsum("knp,ni,nj->kpij", inv_s**2, x, x)
        hut = -4 * t[..., None] * u / q[..., None] ** 2
        blk[..., :dim, dim] = hut
        blk[..., dim, :dim] = hut
        # = −2/q + 4t²/q², written without the cancellation
        blk[..., dim, dim] = 2 * (t * t + (u * u).sum(-1)) / q**2
        size = nb * p * (dim + 1)
        if size <= DENSE_LIMIT:
            # Small systems (a working set): the full Hessian, dense, is the accurate way.
            # F as a matrix: F[n, (k, i, j)] = σ_k D[n, i] x[n, j], zero on the t columns.
            feat = torch.zeros(n, nb, p, dim + 1, dtype=x.dtype)
            feat[..., :dim] = (dmat[:, :, None] * x[:, None, :])[:, None]
            if cones:
                feat[:, 1] = -feat[:, 1]
            fmat = feat.reshape(n, size)
            hess = torch.block_diag(*blk.reshape(-1, dim + 1, dim + 1))
            hess = hess + (fmat * (root**2)[:, None]).T @ fmat
            # Jacobi scaling first: barrier Hessians mix scales 1/s² apart; unit diagonal keeps
            # the factorisation exact where a plain Cholesky would need a jitter.
            scale = hess.diagonal().clamp(min=1e-300).rsqrt()
            hchol = _safe_cholesky(scale[:, None] * hess * scale[None, :])
            shape = blk.shape[:-1]

            def dense_solve(r: torch.Tensor) -> torch.Tensor:
                flat = torch.cholesky_solve((scale * r.reshape(-1))[:, None], hchol)[:, 0]
                return (scale * flat).reshape(shape)

            return torch.cat([gu, gt[..., None]], dim=-1), dense_solve
        binv = torch.cholesky_inverse(_safe_cholesky(blk))
        # Σ_k D_k X C_k Xᵀ D_k = Σ_k (D_k X L_k)(D_k X L_k)ᵀ, C_k = L_k L_kᵀ the u-part of B_k⁻¹
        lk = _safe_cholesky(binv[..., :dim, :dim])
        gram = torch.zeros(n, n, dtype=x.dtype)
        for k in blocks:
            for start in range(0, p, 4096):
                sl = slice(start, start + 4096)
                y = torch.einsum("nd,pde->pne", x, lk[k, sl]) * dmat[:, sl].T[..., None]
                y = y.permute(1, 0, 2).reshape(n, -1)
                gram += y @ y.T
        small = torch.eye(n, dtype=x.dtype) + root[:, None] * gram * root[None, :]
        small_chol = torch.linalg.cholesky(small)

        def solve(r: torch.Tensor) -> torch.Tensor:
            # H⁻¹r = B⁻¹r − B⁻¹Gᵀ(I + GB⁻¹Gᵀ)⁻¹GB⁻¹r, G = √(τW) F on the u part
            br = (binv @ r[..., None])[..., 0]
            gb = root * fwd(br[..., :dim].contiguous())
            rho = torch.cholesky_solve(gb[:, None], small_chol)[:, 0]
            back = torch.cat([adj(root * rho), torch.zeros(nb, p, 1, dtype=x.dtype)], -1)
            return br - (binv @ back[..., None])[..., 0]

        return torch.cat([gu, gt[..., None]], dim=-1), solve

    def max_step(u: torch.Tensor, t: torch.Tensor, du: torch.Tensor, dt: torch.Tensor) -> float:
        """The largest step in (0, 1] that keeps (u, t) strictly inside every cone."""
        s, ds = slack(u), slack(du)
        neg = ds < 0
        alpha = min(1.0, 0.99 * float((-s[neg] / ds[neg]).min())) if bool(neg.any()) else 1.0
        while alpha > 1e-14:
            t1, u1 = t + alpha * dt, u + alpha * du
            if bool((t1 > 0).all()) and bool((t1 * t1 - (u1 * u1).sum(-1) > 0).all()):
                return alpha
            alpha *= 0.5
        return 0.0

    def objective_grad(u: torch.Tensor) -> torch.Tensor:
        gu = adj(prog.loss.grad(fwd(u)))
        return torch.cat([gu, torch.full((nb, p, 1), lam, dtype=x.dtype)], dim=-1)

    steps = 0
    solve: Callable[[torch.Tensor], torch.Tensor] | None = None
    while steps < max_newton and time.perf_counter() < deadline:
        g_all, solve = system(u, t, tau)
        delta = -solve(g_all)
        decrement = -float((g_all * delta).sum())
        du, dt = delta[..., :dim], delta[..., dim]
        alpha = max_step(u, t, du, dt)
        f0 = phi(u, t, tau)
        # Armijo, with slack for round-off: at large τ, φ is huge and its last digits noise.
        noise = 1e-13 * abs(f0)
        while alpha > 1e-14:
            if phi(u + alpha * du, t + alpha * dt, tau) <= f0 - 0.25 * alpha * decrement + noise:
                break
            alpha *= 0.5
        u, t = u + alpha * du, t + alpha * dt
        steps += 1
        if decrement / 2 <= 1e-7 or alpha <= 1e-14:
            # Centred: stop if the certificate closes the gap, else move along the central path.
            if done is not None and done(u if cones else u[0]):
                return (u if cones else u[0]), steps, True
            obj = prog.loss.value(fwd(u)) + prog.penalty(u)
            if m / tau <= tol * max(abs(obj), 1e-12):
                return (u if cones else u[0]), steps, True
            new_tau = tau * growth
            # Predictor: the tangent of the central path, dx/dτ = −H⁻¹∇f₀, with H from here.
            tangent = -solve(objective_grad(u)) * (new_tau - tau)
            a = 0.9 * max_step(u, t, tangent[..., :dim], tangent[..., dim])
            if (
                a > 0
                and phi(u + a * tangent[..., :dim], t + a * tangent[..., dim], new_tau) < math.inf
            ):
                u, t = u + a * tangent[..., :dim], t + a * tangent[..., dim]
            tau = new_tau
    return (u if cones else u[0]), steps, False


def _safe_cholesky(a: torch.Tensor) -> torch.Tensor:
    """Batched Cholesky; a block that round-off left indefinite gets a relative jitter."""
    chol, info = torch.linalg.cholesky_ex(a)
    jitter = 1e-14
    while bool((info != 0).any()) and jitter < 1e-4:
        scale = a.diagonal(dim1=-2, dim2=-1).abs().amax(-1)[..., None, None]
        eye = torch.eye(a.shape[-1], dtype=a.dtype)
        bad = (info != 0)[..., None, None]
        a = torch.where(bad, a + jitter * scale * eye, a)
        chol, info = torch.linalg.cholesky_ex(a)
        jitter *= 100
    return chol


def _curvature(prog: Program, pred: torch.Tensor) -> torch.Tensor:
    """The diagonal W of the loss Hessian at ``pred``."""
    n = len(pred)
    if prog.loss.name == "squared":
        return torch.full_like(pred, 1.0 / n)
    sg = torch.sigmoid(-prog.loss.y * pred)
    return sg * (1 - sg) / n


def _embed(u: torch.Tensor, keep: torch.Tensor, p: int, dim: int) -> torch.Tensor:
    full = torch.zeros(2, p, dim, dtype=u.dtype)
    full[:, keep] = u
    return full
