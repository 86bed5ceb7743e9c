"""``kan-scaling``: KANs' test error falls faster with parameter count than MLPs'.

Liu et al. 2024 (*KAN: Kolmogorov-Arnold Networks*, §3.1) fit smooth symbolic functions such as
f(x₁, x₂) = exp(sin(πx₁) + x₂²) and report test RMSE ∝ N^(−α) in the parameter count N with α
near the spline theory's k + 1 = 4 for KANs and far smaller exponents for MLPs. Here KANs
[2, 5, 1] with grids G ∈ {3, 5, 10, 20} (N = 15 (G + k + 1)) and ReLU-free MLPs (tanh,
[2, w, w, 1]) of comparable sizes are trained from scratch with Adam for the same number of
full-batch steps; α is the least-squares slope of −log RMSE on log N over all sizes and seeds,
its 90 % interval from the slope's standard error (Student t).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.spec import ArchSpec

GRIDS = (3, 5, 10, 20)
WIDTHS = (8, 12, 20, 32)
T90 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 8: 1.860, 10: 1.812,
       14: 1.761, 18: 1.734, 22: 1.717, 30: 1.697}  # fmt: skip


def sizes(quick: bool) -> dict[str, Any]:
    """The experiment's scale; tests shrink it."""
    if quick:
        return {"seeds": 2, "steps": 1500, "n_train": 1000, "grids": GRIDS, "widths": WIDTHS}
    return {"seeds": 4, "steps": 6000, "n_train": 3000, "grids": GRIDS, "widths": WIDTHS}


def target(x: torch.Tensor) -> torch.Tensor:
    """f(x₁, x₂) = exp(sin(πx₁) + x₂²), Liu et al.'s first toy function."""
    return torch.exp(torch.sin(math.pi * x[:, :1]) + x[:, 1:] ** 2)


def fit_one(spec: ArchSpec, size: dict[str, Any], seed: int, shuffle: bool) -> dict[str, Any]:
    """Train one net full batch (Adam, lr 1e-2 decayed to 1e-4); its size and test RMSE."""
    from depthlab.models import build_model

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(size["n_train"], 2, generator=g) * 2 - 1
    xt = torch.rand(1000, 2, generator=g) * 2 - 1
    y, yt = target(x), target(xt)
    if shuffle:  # the control: labels with no function behind them
        y = y[torch.randperm(len(y), generator=g)]
        yt = yt[torch.randperm(len(yt), generator=g)]
    model = build_model(spec, in_shape=(2,), out_dim=1, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.01 ** (1 / size["steps"]))
    for _ in range(size["steps"]):
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        rmse = float(((model(xt) - yt) ** 2).mean().sqrt())
    return {"params": sum(p.numel() for p in model.parameters()), "rmse": rmse}


def exponent(points: list[tuple[int, float]]) -> tuple[float, float, float]:
    """α and its 90 % interval: least squares of −log RMSE on log N (module doc)."""
    xs = [math.log(n) for n, _ in points]
    ys = [-math.log(max(r, 1e-12)) for _, r in points]
    m = len(xs)
    mx, my = sum(xs) / m, sum(ys) / m
    sxx = sum((a - mx) ** 2 for a in xs)
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True)) / sxx
    resid = [b - my - slope * (a - mx) for a, b in zip(xs, ys, strict=True)]
    dof = max(m - 2, 1)
    se = math.sqrt(sum(r * r for r in resid) / dof / sxx)
    t = T90[max(k for k in T90 if k <= dof)]
    return slope, slope - t * se, slope + t * se


@register_claim
class KANScaling(Claim):
    name = "kan-scaling"
    paper = "Liu, Wang, Vaidya, Ruehle, Halverson, Soljačić, Hou & Tegmark 2024, KAN"
    statement = (
        "On a smooth symbolic function, KANs' test RMSE falls with parameter count N as "
        "N^(−α) with a larger exponent α than MLPs'."
    )
    criterion = (
        "f = exp(sin(πx₁) + x₂²); the 90 % interval of α_KAN lies wholly above that of α_MLP "
        "(lower end of α_KAN > upper end of α_MLP) and α_KAN > 0"
    )
    experiment_doc = (
        "KAN [2, 5, 1] (silu base, cubic splines on [−2, 2]) at G = 3, 5, 10, 20; tanh MLP "
        "[2, w, w, 1] at w = 8, 12, 20, 32 (105–1,185 parameters against 105–360); each trained "
        "from scratch, full batch, Adam lr 1e-2 decayed exponentially to 1e-4; test RMSE on "
        "1,000 fresh points. Quick: 1,000 training points, 1,500 steps, 2 seeds. Full: 3,000 "
        "points, 6,000 steps, 4 seeds."
    )
    control_doc = (
        "the same fit on shuffled targets (no function to learn): neither error falls with N, "
        "the intervals overlap, the criterion must fail"
    )
    full_time = "not timed; about 25 min estimated from the quick mode (quick: 59 s of CPU)"
    threads = 1

    def experiment(self, ctx: Context) -> Evidence:
        size = sizes(ctx.quick)
        rows: list[dict[str, Any]] = []
        for seed in ctx.seeds(size["seeds"]):
            for grid in size["grids"]:
                ctx.progress(f"seed {seed}: KAN G = {grid}")
                spec = ArchSpec(family="kan", depth=1, width=5, act="silu", grid=grid)
                rows.append({"model": "kan", "size": grid, "seed": seed,
                             **fit_one(spec, size, seed, ctx.control)})  # fmt: skip
            for width in size["widths"]:
                ctx.progress(f"seed {seed}: MLP width {width}")
                spec = ArchSpec(family="mlp", depth=2, width=width, act="tanh", init="xavier")
                rows.append({"model": "mlp", "size": width, "seed": seed,
                             **fit_one(spec, size, seed, ctx.control)})  # fmt: skip
        fits = {
            m: exponent([(r["params"], r["rmse"]) for r in rows if r["model"] == m])
            for m in ("kan", "mlp")
        }
        (ak, ak_lo, ak_hi), (am, am_lo, am_hi) = fits["kan"], fits["mlp"]
        checks = [
            Check("α_KAN lower end − α_MLP upper end (90 %)", ak_lo - am_hi, "> 0", ak_lo > am_hi),
            Check("α_KAN", ak, "> 0", ak > 0),
        ]
        notes = [
            f"α_KAN = {ak:.2f} [{ak_lo:.2f}, {ak_hi:.2f}], "
            f"α_MLP = {am:.2f} [{am_lo:.2f}, {am_hi:.2f}] (90 %)"
        ]
        data = {"rows": rows, "fits": {m: list(v) for m, v in fits.items()}}
        return Evidence(checks=checks, table=rows, data=data, notes=notes)

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        d = evidence.data
        with claim_figure(path, figsize=(6.5, 4.4), dpi=110) as (fig, ax):
            for model, color in (("kan", "tab:blue"), ("mlp", "tab:red")):
                sel = [r for r in d["rows"] if r["model"] == model]
                alpha, lo, hi = d["fits"][model]
                ax.scatter(
                    [r["params"] for r in sel], [r["rmse"] for r in sel], color=color,
                    label=f"{model.upper()}: α = {alpha:.2f} [{lo:.2f}, {hi:.2f}]",
                )  # fmt: skip
            ax.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="test RMSE",
                   title="exp(sin(πx₁) + x₂²)")  # fmt: skip
            ax.legend(fontsize=8)
        return path
