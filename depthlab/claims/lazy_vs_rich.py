"""High-rank initial weights learn lazily, low-rank ones richly (Liu et al. 2023).

A ReLU MLP 64 → 64 → 64 → 10 on digits whose hidden-to-hidden matrix W starts either at full
rank (Gaussian) or at rank 2 (a product of Gaussian 64×2 and 2×64 factors), rescaled to the
same Frobenius norm; every other parameter is identical across the pair. Both train with the
same full-batch SGD on MSE to one-hot targets. Measured: the relative change of W,
‖W_T − W_0‖_F/‖W_0‖_F, and of the empirical NTK on 32 training inputs,
‖Θ_T − Θ_0‖_F/‖Θ_0‖_F (:func:`depthlab.probes.ntk.empirical_ntk`). Lazier = smaller changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.data import load_data
from depthlab.probes.ntk import empirical_ntk
from depthlab.spec import DataSpec

MARGIN = 0.9  # high-rank change <= MARGIN × low-rank change counts as "smaller"


def _hidden(net: nn.Sequential) -> nn.Linear:
    layer = net[2]
    assert isinstance(layer, nn.Linear)
    return layer


def _net(rank: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    gen = torch.Generator().manual_seed(1000 + seed + 7919 * rank)
    w = _hidden(net).weight
    full = torch.randn(64, 64, generator=gen)
    if rank < 64:
        a, b = torch.randn(64, rank, generator=gen), torch.randn(rank, 64, generator=gen)
        full = a @ b
    with torch.no_grad():
        # equal Frobenius norm: that of a He-scaled Gaussian matrix, √(2·64)
        w.copy_(full / full.norm() * (2.0 * 64) ** 0.5)
    return net


def _changes(rank: int, seed: int, steps: int) -> dict[str, float]:
    ds = load_data(DataSpec(name="digits", seed=0, val_fraction=0.0, test_fraction=0.2))
    x, y = ds.x_train[:300], ds.y_train[:300]
    target = nn.functional.one_hot(y, 10).float()
    net = _net(rank, seed)
    probe = x[:32]
    w0 = _hidden(net).weight.detach().clone()
    theta0, _ = empirical_ntk(net, probe)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(steps):
        loss = ((net(x) - target) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    theta1, _ = empirical_ntk(net, probe)
    return {
        "weight_change": float((_hidden(net).weight.detach() - w0).norm() / w0.norm()),
        "ntk_change": float((theta1 - theta0).norm() / theta0.norm()),
        "final_loss": loss.item(),
    }


@register_claim
class LazyVsRich(Claim):
    name = "lazy-vs-rich"
    paper = (
        "Liu et al. 2023, How connectivity structure shapes rich and lazy learning in neural "
        "circuits"
    )
    statement = (
        "A high-rank initial weight matrix yields smaller relative changes of the weights and of "
        "the NTK during training (lazier learning) than a low-rank one of equal norm."
    )
    criterion = (
        "In a majority of seeds, the full-rank init's relative weight change <= 0.9 x the rank-2 "
        "init's, and (separately) its relative NTK change <= 0.9 x the rank-2 init's"
    )
    experiment_doc = (
        "ReLU MLP 64-64-64-10 on 300 digits samples; hidden matrix full rank vs rank 2, equal "
        "Frobenius norm sqrt(128); full-batch SGD lr 0.01 on MSE; NTK on 32 inputs. Quick: 3 "
        "seeds, 300 steps. Full: 7 seeds, 600 steps."
    )
    control_doc = "Both sides full rank (two independent Gaussian draws of equal norm)."
    full_time = "about 25 s on 2 cores"

    def experiment(self, ctx: Context) -> Evidence:
        seeds = ctx.seeds(3 if ctx.quick else 7)
        steps = 300 if ctx.quick else 600
        low_rank = 64 if ctx.control else 2
        table: list[dict[str, Any]] = []
        wins_w = wins_k = 0
        for seed in seeds:
            ctx.progress(f"seed {seed}")
            hi = _changes(64, seed, steps)
            lo = _changes(low_rank, seed + (10_000 if ctx.control else 0), steps)
            ww = hi["weight_change"] <= MARGIN * lo["weight_change"]
            wk = hi["ntk_change"] <= MARGIN * lo["ntk_change"]
            wins_w += ww
            wins_k += wk
            table.append(
                {
                    "seed": seed,
                    "low_rank": low_rank,
                    "high_weight": hi["weight_change"],
                    "low_weight": lo["weight_change"],
                    "high_ntk": hi["ntk_change"],
                    "low_ntk": lo["ntk_change"],
                    "high_loss": hi["final_loss"],
                    "low_loss": lo["final_loss"],
                }
            )
        need = len(seeds) // 2 + 1
        checks = [
            Check(
                "seeds with high-rank weight change <= 0.9 x low-rank",
                wins_w,
                f">= {need} of {len(seeds)}",
                wins_w >= need,
            ),
            Check(
                "seeds with high-rank NTK change <= 0.9 x low-rank",
                wins_k,
                f">= {need} of {len(seeds)}",
                wins_k >= need,
            ),
        ]
        return Evidence(checks=checks, table=table, data={"rows": table})

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        rows = evidence.data["rows"]
        with claim_figure(path, 1, 2, figsize=(8, 3.6)) as (_, axes):
            for ax, key, title in (
                (axes[0], "weight", "relative weight change"),
                (axes[1], "ntk", "relative NTK change"),
            ):
                lo = [r[f"low_{key}"] for r in rows]
                hi = [r[f"high_{key}"] for r in rows]
                ax.scatter(lo, hi)
                top = max(lo + hi) * 1.1
                ax.plot([0, top], [0, top], color="grey", lw=1)
                ax.plot([0, top], [0, MARGIN * top], color="grey", ls="--", lw=1)
                ax.set(
                    xlabel=f"rank {rows[0]['low_rank']} init", ylabel="full-rank init", title=title
                )
        return path
