"""Infinitely wide and deep NTK classifiers tend to 1-NN or majority vote (Radhakrishnan et al.).

The classifier is kernel interpolation with the infinite-width NTK Θ of a fully connected net
(:mod:`depthlab.theory.ntk_kernel`) on one-hot labels: ŷ(x) = argmax_c [Θ(x, X) Θ(X, X)⁻¹ Y]_c.
Inputs are put on the sphere of radius √d (so Σ¹(x, x) = σ_w²) and the activation is normalised
so that the diagonal of Σ stays put: then the kernel is a function of the angle alone and its
depth limit is set by the dual activation φ̌(c) = E[φ(u)φ(v)] (unit variances, correlation c).

Which limit, from the recursion Θ^{l+1} = Θ^l φ̌′(c_l) + φ̌(c_l), c_{l+1} = φ̌(c_l):

- ReLU with σ_w² = 2 (φ̌(1) = φ̌′(1) = 1): every pair's correlation tends to 1 and Θ^L/L tends
  to one constant off the diagonal, below the diagonal's 1 — a constant plus a ridge, whose
  interpolant predicts the training class counts: **majority vote**. The residual dependence on
  the inputs decays only polynomially in L, so the limit needs depths far beyond the sample count.
- φ = He₃/√6 = (z³ − 3z)/√6 with σ_w² = 1: φ̌(c) = c³, φ̌′(c) = 3c², no constant or linear term.
  The diagonal grows like 3^L while Θ^L(x, x′) ∝ c^{3^L} to leading order: the interpolant is
  dominated by the training point of largest cosine — **1-nearest neighbour** (by angle).

The He₃ off-diagonal values ≈ c^{3^L} soon fall below the quadrature's absolute accuracy
(≈ 1e-13 with a 2049-angle table), where the kernel is noise. So a depth is used for a dataset
only while it is *resolved*: every test point's largest normalised kernel value
Θ(x, xᵢ)/√(Θ(x, x)Θ(xᵢ, xᵢ)) is ≥ 1e-9; the largest resolved depth is the one scored.
The ReLU recursion is cheap (one θ-table serves every layer) and runs to 4096 (quick) or
16384 (full) hidden layers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from depthlab.claims.base import Check, Claim, Context, Evidence, claim_figure, register_claim
from depthlab.data import load_data
from depthlab.spec import DataSpec
from depthlab.theory.ntk_kernel import kernels_by_depth

DATASETS = ("digits", "breast_cancer", "wine", "iris")
THRESHOLD = 0.90  # agreement with the predicted limit at the largest resolved depth
RESOLVED = 1e-9  # a depth counts while every test point's largest normalised Θ(x, x_i) is above
RIDGE = 1e-9  # × mean diagonal: keeps Θ(X, X) solvable when inputs repeat (iris); ≈ interpolation


def he3(z: torch.Tensor) -> torch.Tensor:
    """The third probabilists' Hermite polynomial, normalised: E[φ(z)²] = 1 for z ~ N(0, 1)."""
    return (z**3 - 3 * z) / math.sqrt(6.0)


# name, activation, σ_w², predicted limit, depths (quick), depths (full)
CASES: tuple[tuple[str, Any, float, str, tuple[int, ...], tuple[int, ...]], ...] = (
    ("he3", he3, 1.0, "1-NN", (1, 2, 3, 4, 5, 6, 7, 8), (1, 2, 3, 4, 5, 6, 7, 8)),
    (
        "relu",
        "relu",
        2.0,
        "majority",
        (1, 16, 64, 256, 1024, 4096),
        (1, 16, 64, 256, 1024, 4096, 16384),
    ),
)


def _sphere(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return x / x.norm(dim=1, keepdim=True) * math.sqrt(x.shape[1])


def _split(name: str, n_train: int, n_test: int, seed: int) -> tuple[torch.Tensor, ...]:
    ds = load_data(DataSpec(name=name, seed=seed, val_fraction=0.0, test_fraction=0.3))
    xtr, ytr = _sphere(ds.x_train[:n_train]), ds.y_train[:n_train]
    xte, yte = _sphere(ds.x_test[:n_test]), ds.y_test[:n_test]
    return xtr, ytr, xte, yte, torch.tensor(ds.n_classes)


def _limits(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, c: int) -> dict[str, Any]:
    """Test predictions of the two limit classifiers: 1-NN by cosine, and majority vote."""
    nearest = ytr[(xte @ xtr.T).argmax(1)]
    majority = torch.full_like(nearest, int(torch.bincount(ytr, minlength=c).argmax()))
    return {"1-NN": nearest, "majority": majority}


def _ntk_predictions(
    act: Any,
    sigma_w2: float,
    depths: tuple[int, ...],
    xtr: torch.Tensor,
    ytr: torch.Tensor,
    xte: torch.Tensor,
    c: int,
) -> dict[int, torch.Tensor]:
    """Test predictions of the NTK interpolant at each *resolved* depth (module docstring)."""
    y = torch.nn.functional.one_hot(ytr, c).double()
    ks = kernels_by_depth(torch.cat([xtr, xte]), xtr, act, depths, sigma_w2, 0.0, grid=2049)
    out = {}
    for depth, k in ks.items():
        gram, cross = k.ntk[: len(xtr)], k.ntk[len(xtr) :]
        # on the sphere every Θ(x, x) is the same number
        if float((cross.max(1).values / gram.diagonal().mean()).min()) < RESOLVED:
            break
        gram = gram + RIDGE * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
        out[depth] = (cross @ torch.linalg.solve(gram, y)).argmax(1)
    return out


@register_claim
class WideDeepNTK(Claim):
    name = "wide-deep-ntk"
    paper = (
        "Radhakrishnan, Belkin & Uhler 2023, Wide and deep neural networks achieve consistency "
        "for classification (PNAS; arXiv 2204.14126)"
    )
    statement = (
        "As depth grows, the infinitely wide NTK classifier tends to 1-nearest neighbour, to "
        "majority vote, or to a singular-kernel classifier, depending on the activation."
    )
    criterion = (
        "For each activation (He3/sqrt6, dual c^3 -> predicted 1-NN; ReLU sigma_w^2=2 -> predicted "
        "majority vote) and each of digits, breast_cancer, wine, iris: agreement of the NTK "
        "interpolant's test predictions with the predicted limit classifier >= 0.90 at the "
        "largest (numerically resolved) depth; and, averaged over the datasets, agreement there "
        "> at depth 1"
    )
    experiment_doc = (
        "Inputs standardised and put on the sphere; NTK by quadrature dual activations; kernel "
        "interpolation (ridge 1e-9 x mean diagonal) on one-hot labels. Quick: 60 training and 40 "
        "test points per dataset, He3 depths 1-8 (each dataset up to its largest resolved "
        "depth), ReLU depths 1..4096. Full: 200 and 100 points, "
        "ReLU up to 16384 hidden layers."
    )
    control_doc = (
        "The same criterion against the wrong limit classifier: He3 scored against majority vote, "
        "ReLU against 1-NN."
    )
    full_time = "about 1.5 min on 2 cores (85 s measured, one other job running)"
    reproduces = False
    analysis = (
        "ReLU -> majority vote reproduces: agreement rises from 0.09-0.65 at depth 1 to 1.0 on "
        "all four datasets at 4096 hidden layers. He3 -> 1-NN holds on digits, breast_cancer and "
        "wine (0.975-1.0 at the largest resolved depth) but not on iris: 0.775 at depth 4, the "
        "largest depth at which every test point's kernel row stays above 1e-9 of the diagonal. "
        "Standardised iris on the 4-D sphere has many near-duplicate directions (nearest-neighbour "
        "cosines near 1), so the kernel c^(3^L) must sharpen far more than float64 quadrature "
        "(absolute accuracy about 1e-13) can follow; the 1-NN limit is out of numerical reach "
        "there, and the pre-set criterion (every dataset >= 0.90) fails. Full mode: the same "
        "pattern, He3 minimum 0.867 (ReLU 1.0 on every dataset at 16384 layers)."
    )

    def experiment(self, ctx: Context) -> Evidence:
        n_train, n_test = (60, 40) if ctx.quick else (200, 100)
        (seed,) = ctx.seeds(1)
        checks: list[Check] = []
        table: list[dict[str, Any]] = []
        curves: dict[str, dict[str, list[float]]] = {}
        depth_used: dict[str, dict[str, list[int]]] = {}
        for act_name, act, sigma_w2, predicted, dq, dfull in CASES:
            depths = dq if ctx.quick else dfull
            target = ("majority" if predicted == "1-NN" else "1-NN") if ctx.control else predicted
            first, last, worst = [], [], 1.0
            curves[act_name], depth_used[act_name] = {}, {}
            for dname in DATASETS:
                ctx.progress(f"{act_name} on {dname}")
                xtr, ytr, xte, _, c = _split(dname, n_train, n_test, seed)
                limits = _limits(xtr, ytr, xte, int(c))
                preds = _ntk_predictions(act, sigma_w2, depths, xtr, ytr, xte, int(c))
                used = sorted(preds)
                agree = [float((preds[d] == limits[target]).double().mean()) for d in used]
                curves[act_name][dname] = agree
                depth_used[act_name][dname] = used
                for d, a in zip(used, agree, strict=True):
                    table.append(
                        {
                            "activation": act_name,
                            "data": dname,
                            "depth": d,
                            "limit": target,
                            "agreement": a,
                        }
                    )
                first.append(agree[0])
                last.append(agree[-1])
                worst = min(worst, agree[-1])
            checks.append(
                Check(
                    f"{act_name}: min agreement with {target} at the largest resolved depth",
                    worst,
                    f">= {THRESHOLD}",
                    worst >= THRESHOLD,
                )
            )
            gain = sum(last) / len(last) - sum(first) / len(first)
            checks.append(
                Check(
                    f"{act_name}: mean agreement at the largest resolved depth minus at depth 1",
                    gain,
                    "> 0",
                    gain > 0,
                )
            )
        data: dict[str, Any] = {
            "depths": depth_used,
            "agreement": curves,
            "limits": {name: p for name, _, _, p, _, _ in CASES},
            "control": ctx.control,
        }
        return Evidence(checks=checks, table=table, data=data)

    def plot(self, evidence: Evidence, path: Path) -> Path | None:
        d = evidence.data
        with claim_figure(path, 1, len(d["agreement"]), figsize=(10, 3.8)) as (_, axes):
            for ax, (act, per_data) in zip(axes, d["agreement"].items(), strict=True):
                for data, agree in per_data.items():
                    ax.plot(d["depths"][act][data], agree, marker="o", label=data)
                ax.axhline(THRESHOLD, color="grey", ls="--", lw=1)
                ax.set_xscale("log", base=2)
                ax.set_ylim(-0.02, 1.02)
                ax.set_xlabel("hidden layers")
                limit = d["limits"][act]
                if d["control"]:
                    limit = "majority" if limit == "1-NN" else "1-NN"
                ax.set_ylabel(f"agreement with {limit}")
                ax.set_title(f"{act} NTK")
                ax.legend(fontsize=7)
        return path
