"""``convexity``: is the network convex in its input? A structural check and a measurement.

Structure (``structural``): an ``icnn`` (non-negative hidden-to-hidden weights by
parametrisation, convex non-decreasing activations, affine skips) is convex by construction
(Amos et al. 2017). Measurement, for any network: on ``pairs`` random pairs (a, b) of the
batch's inputs and every output, the midpoint inequality f((a + b)/2) ≤ (f(a) + f(b))/2; the
probe reports the largest violation (relative to the outputs' scale) and the fraction of pairs
that violate it beyond round-off. One violation proves non-convexity; none is evidence only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from depthlab.probes.base import Probe, ProbeBatch, register_probe
from depthlab.spec import Spec


@dataclasses.dataclass(frozen=True)
class ConvexityParams(Spec):
    """``pairs`` random input pairs; ``tol`` relative slack for round-off."""

    pairs: int = 512
    tol: float = 1e-6


def structurally_convex(model: nn.Module) -> bool:
    """True for an ``icnn`` built by depthlab (convex in its input by construction)."""
    from depthlab.models.icnn import CONVEX_ACTS, ICNN

    if not isinstance(model, ICNN):
        return False
    names = {type(a).__name__.lower() for a in model.acts}
    return names <= {"relu", "softplus", "leakyrelu", "elu"} and bool(CONVEX_ACTS)


@register_probe("convexity")
class Convexity(Probe):
    """Structural convexity and the midpoint inequality on random input pairs."""

    Params = ConvexityParams
    params: ConvexityParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        model.eval()
        gen = torch.Generator().manual_seed(seed)
        x = batch.x
        n = len(x)
        # drawn on the host (the same on every device), moved once
        i = torch.randint(n, (self.params.pairs,), generator=gen, device="cpu").to(x.device)
        j = torch.randint(n, (self.params.pairs,), generator=gen, device="cpu").to(x.device)
        # Pairs of inputs and also points pushed off the data, so the check is not only local.
        shape = (self.params.pairs,) + (1,) * (x.dim() - 1)
        scale = 1.0 + 2.0 * torch.rand(shape, generator=gen, device="cpu").to(x.device)
        a, b = x[i] * scale, x[j]
        with torch.no_grad():
            fa, fb, fm = model(a), model(b), model((a + b) / 2)
        gap = fm - (fa + fb) / 2  # > 0: violation
        size = torch.maximum(fa.abs(), fb.abs()).clamp(min=1.0)
        rel = gap / size
        worst = float(rel.max())
        return {
            "structural": structurally_convex(model),
            "max_violation": max(worst, 0.0),
            "violating_fraction": float((rel > self.params.tol).float().mean()),
            "pairs": self.params.pairs,
            "convex_on_samples": worst <= self.params.tol,
        }
