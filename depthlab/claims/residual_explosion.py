"""``residual-explosion``: unscaled residual stacks blow up with depth; 1/√L or ReZero do not.

For ``x_{l+1} = x_l + α f_l(x_l)`` with branches independent of the stream at init, the cross
term vanishes in expectation and ``Var(x_{l+1}) = (1 + α² g) Var(x_l)``, with ``g`` the branch's
gain ``E|f(x)|² / E|x|²``. In depthlab's ``resmlp`` without norm the branch is
``f(x) = W·ReLU(x)`` with He init (``W ~ N(0, 2/N)``), so ``E|f(x)|² = 2·E[ReLU(x)²] = E|x|²``
for a stream symmetric about 0: ``g = 1`` and the expansion's prediction is
``Var(x_L)/Var(x_0) = (1 + α²)^L``: ``2^L`` unscaled, ``(1 + 1/L)^L < e`` for α = 1/√L, and 1 for
ReZero (α = 0 at init) ("On residual network depth"; Bachlechner et al. 2020).

The experiment builds the nets with :func:`depthlab.models.build_model`, measures the variance
of the residual stream after the embedding (x_0) and after every block, and the gain and the
normalised cross term ``2 E[x·f(x)] / E|x|²`` of every branch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.layers import Residual
from depthlab.models import build_model
from depthlab.spec import ArchSpec

__all__ = ["ResidualExplosion", "stream_variances"]

GROWTH_TOL = 0.2  # log growth within 20 % of the expansion's L·log(1 + α²)
BOUND = 1.1 * math.e  # "stays bounded": Var(x_L)/Var(x_0) <= e, 10 % finite-width allowance
FIXED_ALPHA = 0.5
MODES = ("none", "fixed", "inv_sqrt_depth", "rezero")


def _alpha(mode: str, depth: int) -> float:
    return {"none": 1.0, "fixed": FIXED_ALPHA, "inv_sqrt_depth": depth**-0.5, "rezero": 0.0}[mode]


@torch.no_grad()
def stream_variances(
    mode: str, *, depth: int, width: int, n_inputs: int, seed: int
) -> dict[str, list[float]]:
    """One ``resmlp`` (ReLU, He init, no norm): per block Var(x_l)/Var(x_0), gain and cross term.

    Returns ``ratio`` (l = 1..depth), ``gain`` = E|f(x_l)|²/E|x_l|² and
    ``cross`` = 2 E[x_l·f(x_l)]/E|x_l|² for the branch f of each block (before its scale α),
    and ``out`` = Var(network output)/Var(x_0). Float64: 2^128 overflows float32.
    """
    spec = ArchSpec(
        family="resmlp",
        depth=depth,
        width=width,
        act="relu",
        init="he",
        norm="none",
        residual=mode,
        residual_alpha=FIXED_ALPHA,
    )
    model = build_model(spec, in_shape=(width,), out_dim=width, seed=seed).double()
    gen = torch.Generator().manual_seed(50_000 + seed)
    x = torch.randn(n_inputs, width, generator=gen, dtype=torch.float64)
    x = (x - x.mean(0)) / x.std(0, unbiased=False)
    modules = list(model.children())
    x = modules[0](x)  # embedding: x_0
    v0 = float(x.var(unbiased=False))
    ratio, gain, cross = [], [], []
    for block in modules[1 : 1 + depth]:
        assert isinstance(block, Residual)
        f = block.branch(x)
        sq = float((x * x).mean())
        gain.append(float((f * f).mean()) / sq)
        cross.append(2.0 * float((x * f).mean()) / sq)
        x = block.post(x + block.scale(f))  # the block's forward, reusing f
        ratio.append(float(x.var(unbiased=False)) / v0)
    y = x
    for m in modules[1 + depth :]:
        y = m(y)
    return {"ratio": ratio, "gain": gain, "cross": cross, "out": [float(y.var()) / v0]}


def _geo_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


@register_claim
class ResidualExplosion(Claim):
    name = "residual-explosion"
    paper = (
        "On residual network depth (residual expansion theorem); Bachlechner et al. 2020, "
        "ReZero is All You Need: Fast Convergence at Large Depth"
    )
    statement = (
        "An unscaled deep residual MLP's signal variance grows exponentially with depth as the "
        "residual expansion predicts, (1 + α²)^L for unit-gain branches; scaling the branches "
        "by 1/√L or gating them with ReZero keeps it bounded (<= e)."
    )
    criterion = (
        "resmlp (ReLU, He init, no norm; branch gain 1 by theory): at every depth L, "
        "log(Var(x_L)/Var(x_0)) within 20 % of L·log(1 + α²) for α = 1 (unscaled) and α = 0.5; "
        "Var(x_L)/Var(x_0) <= 1.1·e ≈ 2.99 at every depth for 1/√L scaling and for ReZero"
    )
    experiment_doc = (
        "depthlab `resmlp` nets (embedding, L blocks x + α·Linear(ReLU(x)), ReLU, readout; He "
        "init, zero biases, no norm) in float64 on standardised Gaussian inputs; variance of "
        "the residual stream after the embedding and after each block, geometric mean over "
        "seeds; each branch's gain E|f(x)|²/E|x|² and cross term 2E[x·f(x)]/E|x|² are measured "
        "too. Quick: width 256, 256 inputs, L in {8, 16, 32, 64}, 3 seeds. Full: width 512, "
        "512 inputs, L in {8, 16, 32, 64, 128}, 6 seeds."
    )
    control_doc = "the 'stays bounded (<= 1.1·e)' criterion applied to the unscaled net (must fail)"
    full_time = "about 60 s on 2 cores (quick about 4 s)"

    def experiment(self, ctx: Context) -> Evidence:
        depths: tuple[int, ...]
        if ctx.quick:
            width, n_inputs, depths, n_seeds = 256, 256, (8, 16, 32, 64), 3
        else:
            width, n_inputs, depths, n_seeds = 512, 512, (8, 16, 32, 64, 128), 6
        seeds = ctx.seeds(n_seeds)
        modes = ("none",) if ctx.control else MODES
        final: dict[str, dict[int, float]] = {m: {} for m in modes}
        curves: dict[str, list[float]] = {}
        gains: list[float] = []
        crosses: list[float] = []
        table: list[dict[str, Any]] = []
        for mode in modes:
            for depth in depths:
                ctx.progress(f"{mode}: depth {depth}, {n_seeds} seeds, width {width}")
                runs = [
                    stream_variances(mode, depth=depth, width=width, n_inputs=n_inputs, seed=s)
                    for s in seeds
                ]
                ratio = _geo_mean([r["ratio"][-1] for r in runs])
                final[mode][depth] = ratio
                alpha = _alpha(mode, depth)
                predicted = (1.0 + alpha**2) ** depth
                if mode == "none":
                    gains += [g for r in runs for g in r["gain"]]
                    crosses += [c for r in runs for c in r["cross"]]
                if depth == depths[-1]:
                    curves[mode] = [_geo_mean([r["ratio"][i] for r in runs]) for i in range(depth)]
                table.append(
                    {
                        "residual": mode,
                        "alpha": alpha,
                        "L": depth,
                        "Var(x_L)/Var(x_0)": ratio,
                        "predicted (1+α²)^L": predicted,
                        "Var(out)/Var(x_0)": _geo_mean([r["out"][0] for r in runs]),
                    }
                )
        checks: list[Check] = []
        if ctx.control:
            checks.append(_bounded_check("unscaled (α = 1)", final["none"]))
        else:
            for mode, label in (("none", "unscaled (α = 1)"), ("fixed", f"α = {FIXED_ALPHA}")):
                worst = max(
                    (
                        abs(math.log(v) / (d * math.log1p(_alpha(mode, d) ** 2)) - 1.0)
                        for d, v in final[mode].items()
                    )
                )
                checks.append(
                    Check(
                        f"{label}: max over L of |log growth / (L·log(1+α²)) − 1|",
                        worst,
                        f"<= {GROWTH_TOL}",
                        worst <= GROWTH_TOL,
                    )
                )
            checks.append(_bounded_check("1/√L scaling", final["inv_sqrt_depth"]))
            checks.append(_bounded_check("ReZero", final["rezero"]))
        mean_gain = sum(gains) / len(gains)
        mean_cross = sum(crosses) / len(crosses)
        notes = [
            f"branch gain E|f(x)|²/E|x|² of the unscaled blocks: mean {mean_gain:.4f} over "
            f"{len(gains)} blocks (theory 1: He init, ReLU, symmetric stream); normalised cross "
            f"term 2E[x·f(x)]/E|x|²: mean {mean_cross:.4f} (theory 0); predicted growth per "
            f"block 1 + α²·g = {1 + mean_gain:.4f} for α = 1 with the measured gain"
        ]
        data = {
            "width": width,
            "depths": list(depths),
            "seeds": seeds,
            "final": {m: [final[m][d] for d in depths] for m in modes},
            "curves": curves,
            "branch_gain": mean_gain,
            "cross_term": mean_cross,
        }
        return Evidence(checks=checks, table=table, data=data, notes=notes)

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        d = evidence.data
        depths = d["depths"]
        colors = {
            "none": "tab:red",
            "fixed": "tab:orange",
            "inv_sqrt_depth": "tab:blue",
            "rezero": "tab:green",
        }
        names = {
            "none": "unscaled (α = 1)",
            "fixed": f"α = {FIXED_ALPHA}",
            "inv_sqrt_depth": "α = 1/√L",
            "rezero": "ReZero (α = 0)",
        }
        with claim_figure(path, 1, 2, figsize=(11, 4.3), dpi=110) as (fig, (ax_l, ax_r)):
            lmax = depths[-1]
            for mode, curve in d["curves"].items():
                blocks = list(range(1, len(curve) + 1))
                alpha = _alpha(mode, lmax)
                ax_l.plot(blocks, curve, color=colors[mode], label=names[mode])
                ax_l.plot(
                    blocks, [(1 + alpha**2) ** b for b in blocks], color=colors[mode], ls="--"
                )
            for mode, values in d["final"].items():
                predicted = [(1 + _alpha(mode, L) ** 2) ** L for L in depths]
                ax_r.plot(depths, values, "o-", color=colors[mode], label=names[mode])
                ax_r.plot(depths, predicted, ls="--", color=colors[mode], lw=1)
            for ax in (ax_l, ax_r):
                ax.axhline(BOUND, color="k", ls=":", lw=0.8)
                ax.set_yscale("log")
                ax.legend(fontsize=8)
            ax_l.set(
                xlabel="block l",
                ylabel="Var(x_l) / Var(x_0)",
                title=f"per block, L = {lmax} (dashed: (1+α²)^l)",
            )
            ax_r.set_xscale("log")
            ax_r.set_xticks(depths, [str(L) for L in depths])
            ax_r.minorticks_off()
            ax_r.set(
                xlabel="depth L",
                ylabel="Var(x_L) / Var(x_0)",
                title="end of the stack vs depth (dotted: 1.1·e)",
            )
            fig.suptitle(
                f"Residual expansion: width {d['width']}, measured branch gain "
                f"{d['branch_gain']:.3f} (theory 1)"
            )
        return path


def _bounded_check(label: str, final: dict[int, float]) -> Check:
    worst = max(final.values())
    return Check(
        f"{label}: max over L of Var(x_L)/Var(x_0)",
        worst,
        f"<= 1.1·e = {BOUND:.3f}",
        worst <= BOUND,
    )
