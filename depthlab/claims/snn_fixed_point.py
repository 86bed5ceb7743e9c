"""``snn-fixed-point``: a SELU MLP keeps zero mean and unit variance through 64 layers.

Klambauer et al. 2017 prove that with SELU (λ ≈ 1.0507, α ≈ 1.6733) and LeCun-normal weights
(Var W = 1/fan_in) the map from one layer's (mean, variance) of activations to the next has a
stable fixed point at (0, 1). The experiment measures, at every hidden layer of freshly
initialised networks, the mean and variance of the post-activation values over all units and
all inputs, and compares them with that fixed point. A ReLU net of the same shape and init has
no such fixed point: its mean is positive and its variance halves at every layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.models import build_model
from depthlab.spec import ArchSpec

__all__ = ["SNNFixedPoint", "layer_moments"]

DEPTH = 64
MEAN_TOL = 0.1
VAR_LO, VAR_HI = 0.8, 1.25


@torch.no_grad()
def layer_moments(act: str, *, width: int, depth: int, n_inputs: int, seed: int) -> list[tuple]:
    """``(mean, var)`` of the post-activation values at each hidden layer, one network.

    The network is depthlab's ``mlp`` (Linear → act per layer, LeCun init, zero biases) fed
    ``n_inputs`` Gaussian inputs standardised per feature (mean 0, variance 1 over the batch).
    Mean and variance are taken over all units and inputs of a layer (shape ``(n, width)``).
    """
    spec = ArchSpec(family="mlp", depth=depth, width=width, act=act, init="lecun")
    model = build_model(spec, in_shape=(width,), out_dim=1, seed=seed)
    gen = torch.Generator().manual_seed(10_000 + seed)
    x = torch.randn(n_inputs, width, generator=gen)
    x = (x - x.mean(0)) / x.std(0, unbiased=False)
    out = []
    for block in list(model.children())[:-1]:  # every hidden block; the last module is the readout
        x = block(x)
        out.append((float(x.mean()), float(x.var(unbiased=False))))
    return out


def _criterion_checks(label: str, moments: list[list[tuple]]) -> list[Check]:
    """The criterion on every layer of every network: |mean| <= 0.1, 0.8 <= var <= 1.25."""
    means = [abs(m) for net in moments for m, _ in net]
    vars_ = [v for net in moments for _, v in net]
    worst_mean, lo, hi = max(means), min(vars_), max(vars_)
    return [
        Check(
            f"{label}: max |mean| over layers", worst_mean, f"<= {MEAN_TOL}", worst_mean <= MEAN_TOL
        ),
        Check(f"{label}: min variance over layers", lo, f">= {VAR_LO}", lo >= VAR_LO),
        Check(f"{label}: max variance over layers", hi, f"<= {VAR_HI}", hi <= VAR_HI),
    ]


@register_claim
class SNNFixedPoint(Claim):
    name = "snn-fixed-point"
    paper = "Klambauer, Unterthiner, Mayr & Hochreiter 2017, Self-Normalizing Neural Networks"
    statement = (
        "A SELU MLP with LeCun-normal init keeps activations near mean 0 and variance 1 at every "
        "one of 64 layers on standardised inputs; a ReLU net with the same init does not."
    )
    criterion = (
        "SELU/LeCun, width >= 256, 64 layers, every layer of every seed: |mean| <= 0.1 and "
        "0.8 <= variance <= 1.25; the same criterion on ReLU/LeCun of the same shape fails"
    )
    experiment_doc = (
        "depthlab `mlp` nets (Linear -> act, LeCun-normal weights, zero biases), 64 hidden "
        "layers, fed Gaussian inputs standardised per feature; mean and variance of each "
        "layer's post-activations over all units and inputs. Quick: width 256, 512 inputs, "
        "3 seeds. Full: width 1024, 512 inputs, 5 seeds. The ReLU net of the same "
        "shape is measured alongside and must fail the criterion."
    )
    control_doc = "the same per-layer criterion applied to the ReLU/LeCun nets (must fail)"
    full_time = "about 15 s on 2 cores (quick about 1 s)"

    def experiment(self, ctx: Context) -> Evidence:
        width, n_inputs, n_seeds = (256, 512, 3) if ctx.quick else (1024, 512, 5)
        seeds = ctx.seeds(n_seeds)
        runs: dict[str, list[list[tuple]]] = {"selu": [], "relu": []}
        for act in runs:
            for s in seeds:
                ctx.progress(f"{act} seed {s}: {DEPTH} layers, width {width}")
                runs[act].append(
                    layer_moments(act, width=width, depth=DEPTH, n_inputs=n_inputs, seed=s)
                )
        selu = _criterion_checks("SELU", runs["selu"])
        relu = _criterion_checks("ReLU", runs["relu"])
        relu_fails = not all(c.ok for c in relu)
        if ctx.control:
            checks = relu  # the claim's criterion on the net that should not satisfy it
        else:
            checks = [
                *selu,
                Check(
                    "ReLU/LeCun net fails the same criterion",
                    "fails" if relu_fails else "holds",
                    "fails",
                    relu_fails,
                ),
            ]
        table: list[dict[str, Any]] = []
        for act, nets in runs.items():
            for s, net in zip(seeds, nets, strict=True):
                table.append(
                    {
                        "act": act,
                        "seed": s,
                        "max |mean|": max(abs(m) for m, _ in net),
                        "min var": min(v for _, v in net),
                        "max var": max(v for _, v in net),
                        "var at layer 64": net[-1][1],
                    }
                )
        data = {
            "width": width,
            "depth": DEPTH,
            "seeds": seeds,
            "mean": {a: [[m for m, _ in net] for net in nets] for a, nets in runs.items()},
            "var": {a: [[v for _, v in net] for net in nets] for a, nets in runs.items()},
        }
        return Evidence(checks=checks, table=table, data=data)

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        d = evidence.data
        layers = list(range(1, d["depth"] + 1))
        with claim_figure(path, 1, 3, figsize=(15, 4.2), dpi=110) as (fig, (ax_m, ax_z, ax_v)):
            colors = {"selu": "tab:blue", "relu": "tab:red"}
            for act, color in colors.items():
                for k, (means, vars_) in enumerate(zip(d["mean"][act], d["var"][act], strict=True)):
                    label = f"{act.upper()} / LeCun" if k == 0 else None
                    for ax, ys in ((ax_m, means), (ax_z, vars_), (ax_v, vars_)):
                        ax.plot(layers, ys, color=color, alpha=0.7, lw=1, label=label)
            ax_m.axhspan(-MEAN_TOL, MEAN_TOL, color="tab:green", alpha=0.15, label="criterion")
            for ax in (ax_z, ax_v):
                ax.axhspan(VAR_LO, VAR_HI, color="tab:green", alpha=0.15, label="criterion")
                ax.axhline(1.0, color="k", lw=0.6)
            ax_m.axhline(0.0, color="k", lw=0.6)
            ax_z.set_ylim(0.6, 1.4)
            ax_v.set_yscale("log")
            ax_m.set(xlabel="layer", ylabel="mean of activations", title="mean per layer")
            ax_z.set(xlabel="layer", ylabel="variance of activations", title="variance (zoom)")
            ax_v.set(xlabel="layer", ylabel="variance of activations", title="variance (log scale)")
            for ax in (ax_m, ax_z, ax_v):
                ax.legend(fontsize=8)
            fig.suptitle(f"SELU fixed point (0, 1): width {d['width']}, {len(d['seeds'])} seeds")
        return path
