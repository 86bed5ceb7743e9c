"""``brenier-icnn``: the gradient of an input-convex network learns the optimal transport map.

Brenier's theorem: for the squared distance the optimal map between densities is the gradient
of a convex function; Makkuva et al. (2020) and the Monge-gap line of work fit it as ∇ICNN
(Amos et al. 2017). Between Gaussians the map is known in closed form (formulas.md), so the
learned map can be held against it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.convex.brenier import fit_brenier, gaussian_ot_map, icnn_gradient
from depthlab.models import build_model
from depthlab.spec import ArchSpec

__all__ = ["BrenierICNN"]

TOL = 0.12  # relative RMS error of the learned map against the closed form
M1, M2 = (0.0, 0.0), (1.0, -1.0)
S1 = ((1.0, 0.3), (0.3, 0.5))
S2 = ((2.0, -0.5), (-0.5, 1.0))


@register_claim
class BrenierICNN(Claim):
    name = "brenier-icnn"
    paper = (
        "Brenier 1991; Amos, Xu & Kolter 2017, Input Convex Neural Networks; Makkuva et al. "
        "2020, Optimal transport mapping via input convex neural networks"
    )
    statement = (
        "The gradient of an input-convex network, trained from samples on the semi-dual of "
        "optimal transport, recovers the optimal (Brenier) map between two Gaussians."
    )
    criterion = (
        "2-D Gaussians N(m₁, Σ₁) → N(m₂, Σ₂): relative RMS error of ∇f against the closed-form "
        "map m₂ + A(x − m₁) on 4,000 fresh source samples <= 0.12, for every seed"
    )
    experiment_doc = (
        "icnn (2 hidden layers of 32, softplus) trained with Adam (lr 0.01, batches of 256 "
        "fresh samples) on E_μ[f] + E_ν[f*], f* evaluated at an inner gradient-ascent "
        "maximiser; never shown the closed form. Quick: 800 steps, 1 seed. Full: 2,000 "
        "steps, 3 seeds."
    )
    control_doc = (
        "the same criterion for another linear map that also pushes μ onto ν, "
        "m₂ + L₂L₁⁻¹(x − m₁) with Cholesky factors (not a gradient of a convex function)"
    )
    full_time = "estimated 2 min on 2 cores, not timed (quick: about 20 s)"
    threads = 1

    def experiment(self, ctx: Context) -> Evidence:
        steps, n_seeds = (800, 1) if ctx.quick else (2000, 3)
        m1, m2 = torch.tensor(M1), torch.tensor(M2)
        s1, s2 = torch.tensor(S1), torch.tensor(S2)
        a = gaussian_ot_map(s1, s2)
        l1 = torch.linalg.cholesky(s1)
        errors: list[float] = []
        curves = {}
        for seed in ctx.seeds(n_seeds):
            gen = torch.Generator().manual_seed(10_000 + seed)
            x = m1 + torch.randn(4000, 2, generator=gen) @ l1.T
            t = m2 + (x - m1) @ a.T
            scale = float(((t - m2) ** 2).sum(1).mean().sqrt())
            if ctx.control:
                b = torch.linalg.cholesky(s2) @ torch.linalg.inv(l1)
                mapped = m2 + (x - m1) @ b.T
            else:
                ctx.progress(f"seed {seed}: fitting ∇ICNN, {steps} steps")
                spec = ArchSpec(family="icnn", depth=2, width=32, act="softplus")
                f = build_model(spec, in_shape=(2,), out_dim=1, seed=seed)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    fit_brenier(f, m1, s1, m2, s2, steps=steps, seed=seed)
                mapped = icnn_gradient(f, x)
            errors.append(float(((mapped - t) ** 2).sum(1).mean().sqrt()) / scale)
            curves[str(seed)] = {"x": x[:300].tolist(), "mapped": mapped[:300].tolist(),
                                 "ot": t[:300].tolist()}  # fmt: skip
        worst = max(errors)
        label = "Cholesky map" if ctx.control else "∇ICNN"
        checks = [Check(f"{label}: worst relative RMS error vs the OT map", worst, f"<= {TOL}",
                        worst <= TOL)]  # fmt: skip
        table = [{"seed": s, "relative error": e} for s, e in zip(ctx.seeds(n_seeds), errors,
                                                                    strict=True)]  # fmt: skip
        return Evidence(checks=checks, table=table, data={"maps": curves})

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        maps = evidence.data["maps"]
        first = next(iter(maps.values()))
        with claim_figure(path, figsize=(4.5, 4.0)) as (_, ax):
            ot = torch.tensor(first["ot"])
            mapped = torch.tensor(first["mapped"])
            ax.scatter(ot[:, 0], ot[:, 1], s=6, color="tab:gray", label="closed-form OT map")
            ax.scatter(mapped[:, 0], mapped[:, 1], s=6, color="tab:blue", label="learned map")
            for p, q in zip(ot[:60], mapped[:60], strict=True):
                ax.plot([p[0], q[0]], [p[1], q[1]], color="tab:red", lw=0.5)
            ax.set_title("T(x) for 300 source samples")
            ax.legend(fontsize=8)
        return path
