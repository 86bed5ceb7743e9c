"""The input–output Jacobian J = ∂f(x)/∂x and the gain of every layer (dynamical isometry).

Singular values of J over ``samples`` inputs (pooled): dynamical isometry (Pennington et al.
2017) is all of them near 1, i.e. mean squared singular value ≈ 1 with a small spread.
Per-layer gains come from forward-mode AD: a random unit input tangent v is pushed through the net
and, at every linear/conv output, gain^l = ‖δh^l‖² / ‖δh^{l−1}‖² (averaged over samples), the
finite-width measurement of mean field's χ₁. Evaluated in eval mode.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vmap

from depthlab.exceptions import ProbeError
from depthlab.probes.base import Probe, ProbeBatch, functional_state, register_probe
from depthlab.probes.layers import recording, weight_layers
from depthlab.spec import Spec
from depthlab.spec.base import check_min


@dataclasses.dataclass(frozen=True)
class JacobianParams(Spec):
    samples: int = 16

    def _check(self) -> None:
        check_min("samples", self.samples, 1)


def input_jacobians(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(N, outputs, inputs)``: per-sample Jacobians of the flattened output w.r.t. input."""
    state = functional_state(model)

    def f(xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, state, (xi.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(f))(x)
    return jac.reshape(len(x), jac.shape[1], -1)


def layer_gains(model: nn.Module, x: torch.Tensor, seed: int) -> list[dict[str, Any]]:
    """Squared-norm gain of a random input perturbation through each linear/conv layer.

    One forward-mode pass (``torch.func.jvp``) carries the tangent v to every layer output.
    """
    layers = weight_layers(model)
    state = functional_state(model)

    def outputs(inp: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with recording(layers) as calls:
            functional_call(model, state, (inp,))
        return tuple(c.output for c in calls)

    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    v = v / v.reshape(len(v), -1).norm(dim=1).reshape(-1, *[1] * (x.dim() - 1))
    tangents = jvp(outputs, (x,), (v,))[1]
    names = [name for name, _ in layers]
    rows, previous = [], torch.ones(len(x), dtype=torch.float64)
    # A layer applied several times (weight sharing) reports each application in order.
    for name, tangent in zip(names * (len(tangents) // max(len(names), 1)), tangents, strict=False):
        current = tangent.reshape(len(tangent), -1).double().pow(2).sum(1)
        ok = previous > 0
        gain = (current[ok] / previous[ok]).mean().item() if ok.any() else math.nan
        rows.append({"name": name, "gain": gain})
        previous = current
    return rows


@register_probe("jacobian")
class JacobianProbe(Probe):
    """Input–output Jacobian spectrum and per-layer gains."""

    Params = JacobianParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        x = batch.x[: self.params.samples]
        model.eval()
        try:
            jac = input_jacobians(model, x)
        except RuntimeError as exc:
            raise ProbeError(
                f"cannot differentiate the model w.r.t. its input: {str(exc).splitlines()[0]}"
            ) from None
        sv = torch.linalg.svdvals(jac.double()).flatten().sort(descending=True).values
        sq = sv.pow(2)
        gains = layer_gains(model, x, seed)
        inner = [g["gain"] for g in gains[1:-1] if g["gain"] > 0] or [
            g["gain"] for g in gains if g["gain"] > 0
        ]
        return {
            "singular_values": sv.tolist(),
            "mean_squared_singular_value": sq.mean().item(),
            "max_singular_value": sv[0].item(),
            "min_singular_value": sv[-1].item(),
            "spread": (sq.std() / sq.mean()).item() if sq.mean() > 0 and len(sq) > 1 else 0.0,
            "layers": gains,
            "mean_gain": math.exp(sum(math.log(g) for g in inner) / len(inner))
            if inner
            else math.nan,
            "n_samples": len(x),
        }
