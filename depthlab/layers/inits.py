"""Weight initialisers by name or callable.

An initialiser fills one layer's weight (``(out, in)`` or ``(out, in, k)``) and bias in place,
given an ``InitContext``: the network's activation, the bias std σ_b and the seeded generator.
Gaussian inits draw W ~ N(0, σ_w²/fan_in) with fan_in = in × kernel; biases ~ N(0, σ_b²).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from depthlab import _registry as reg
from depthlab.layers.activations import ActivationDef, torch_gain
from depthlab.spec.base import import_callable

Initialiser = Callable[[torch.Tensor, "torch.Tensor | None", "InitContext"], None]


@dataclasses.dataclass(frozen=True)
class InitContext:
    act: ActivationDef
    sigma_b: float
    generator: torch.Generator


def fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


@torch.no_grad()
def gaussian_(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    sigma_w2: float,
    sigma_b: float,
    generator: torch.Generator,
) -> None:
    """W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²) (zero when σ_b = 0)."""
    fan_in, _ = fans(weight)
    weight.normal_(0.0, math.sqrt(sigma_w2 / fan_in), generator=generator)
    bias_(bias, sigma_b, generator)


@torch.no_grad()
def bias_(bias: torch.Tensor | None, sigma_b: float, generator: torch.Generator) -> None:
    """b ~ N(0, σ_b²), or zero when σ_b = 0."""
    if bias is None:
        return
    if sigma_b > 0:
        bias.normal_(0.0, sigma_b, generator=generator)
    else:
        bias.zero_()


def _he(weight: torch.Tensor, bias: torch.Tensor | None, ctx: InitContext) -> None:
    gaussian_(weight, bias, 2.0, ctx.sigma_b, ctx.generator)


def _lecun(weight: torch.Tensor, bias: torch.Tensor | None, ctx: InitContext) -> None:
    gaussian_(weight, bias, 1.0, ctx.sigma_b, ctx.generator)


def _xavier(weight: torch.Tensor, bias: torch.Tensor | None, ctx: InitContext) -> None:
    fan_in, fan_out = fans(weight)
    gaussian_(weight, bias, 2.0 * fan_in / (fan_in + fan_out), ctx.sigma_b, ctx.generator)


@torch.no_grad()
def _orthogonal(weight: torch.Tensor, bias: torch.Tensor | None, ctx: InitContext) -> None:
    # Saxe et al. 2014: orthogonal rows/columns scaled by the activation's gain.
    nn.init.orthogonal_(weight, gain=torch_gain(ctx.act), generator=ctx.generator)
    bias_(bias, ctx.sigma_b, ctx.generator)


@torch.no_grad()
def _zero(weight: torch.Tensor, bias: torch.Tensor | None, ctx: InitContext) -> None:
    weight.zero_()
    if bias is not None:
        bias.zero_()


@functools.lru_cache(maxsize=256)
def _critical_for(act: ActivationDef, sigma_b2: float) -> float:
    from depthlab.exceptions import SpecError
    from depthlab.theory import critical_sigma_w2

    try:
        return critical_sigma_w2(act.fn, sigma_b2=sigma_b2)
    except SpecError as err:
        raise SpecError(
            "init",
            f"critical init for activation {act.name!r} and "
            f"sigma_b={sigma_b2**0.5:g}: {err.detail}",
        ) from None


def critical_sigma_w2_for(act: ActivationDef, sigma_b: float) -> float:
    """σ_w² on the edge of chaos (χ₁ = 1) for this activation and σ_b, by mean-field theory."""
    return _critical_for(act, float(sigma_b) ** 2)


def _critical(weight: torch.Tensor, bias: torch.Tensor | None, ctx: InitContext) -> None:
    gaussian_(weight, bias, critical_sigma_w2_for(ctx.act, ctx.sigma_b), ctx.sigma_b, ctx.generator)


reg.INITS.register("he", _he, "W ~ N(0, 2/fan_in) (He et al. 2015)")
reg.INITS.register("lecun", _lecun, "W ~ N(0, 1/fan_in) (LeCun et al. 1998)")
reg.INITS.register("xavier", _xavier, "W ~ N(0, 2/(fan_in + fan_out)) (Glorot & Bengio 2010)")
reg.INITS.register("orthogonal", _orthogonal, "orthogonal W times the activation's gain")
reg.INITS.register("zero", _zero, "all weights and biases 0")
reg.INITS.register(
    "critical",
    _critical,
    "σ_w² with χ₁ = 1 at the given σ_b, by mean-field quadrature (Poole 2016; Schoenholz 2017)",
)


def resolve_init(init: str | Callable[..., Any], field: str = "init") -> Initialiser:
    """A registered name, a ``module:attr`` path, or a callable ``f(weight, bias, ctx)``."""
    if isinstance(init, str) and ":" not in init:
        return reg.INITS.get(init, field=field)
    return import_callable(init, field) if isinstance(init, str) else init


@torch.no_grad()
def init_model(model: nn.Module, init: Initialiser, ctx: InitContext) -> None:
    """Apply ``init`` to every linear and convolutional layer, in module order."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            init(module.weight, module.bias, ctx)
