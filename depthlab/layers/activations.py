"""Activations by name or callable, resolved in one place.

Each registered activation is an ``ActivationDef``: a module factory for building networks and
the same elementwise function for theory (mean-field integrals by quadrature need φ itself).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from depthlab import _registry as reg
from depthlab.spec.base import import_callable

Elementwise = Callable[[torch.Tensor], torch.Tensor]

# Klambauer et al. 2017, eq. (14): the SELU constants with fixed point (mean, var) = (0, 1).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946


@dataclasses.dataclass(frozen=True)
class ActivationDef:
    """An activation: ``module()`` builds a layer, ``fn`` is the same map on tensors."""

    name: str
    fn: Elementwise
    module: Callable[[], nn.Module]
    torch_gain_name: str | None = None


def _register(
    name: str, fn: Elementwise, module: Callable[[], nn.Module], doc: str, gain: str | None = None
) -> None:
    reg.ACTIVATIONS.register(name, ActivationDef(name, fn, module, gain), doc)


_register("relu", F.relu, nn.ReLU, "max(0, x)", "relu")
_register(
    "leaky_relu",
    lambda x: F.leaky_relu(x, 0.01),
    lambda: nn.LeakyReLU(0.01),
    "max(0.01 x, x)",
    "leaky_relu",
)
_register("tanh", torch.tanh, nn.Tanh, "tanh(x)", "tanh")
_register("sigmoid", torch.sigmoid, nn.Sigmoid, "1 / (1 + exp(-x))", "sigmoid")
_register("selu", F.selu, nn.SELU, "λ·(x if x > 0 else α(eˣ − 1)), self-normalizing", "selu")
_register("elu", F.elu, nn.ELU, "x if x > 0 else eˣ − 1")
_register("gelu", F.gelu, nn.GELU, "x·Φ(x)")
_register("silu", F.silu, nn.SiLU, "x·sigmoid(x) (swish)")
_register("softplus", F.softplus, nn.Softplus, "log(1 + eˣ)")
_register("mish", F.mish, nn.Mish, "x·tanh(softplus(x)) (Misra 2019)")
_register("hardtanh", F.hardtanh, nn.Hardtanh, "max(−1, min(1, x))")
_register("linear", lambda x: x, nn.Identity, "identity (a deep linear network)", "linear")


class Lambda(nn.Module):
    """Wraps an elementwise function given by the user as a layer."""

    def __init__(self, fn: Elementwise, name: str) -> None:
        super().__init__()
        self.fn = fn
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def resolve_activation(act: str | Callable[..., Any], field: str = "act") -> ActivationDef:
    """A registered name, an importable ``module:attr``, an ``nn.Module`` class or a function."""
    if isinstance(act, str) and ":" not in act:
        return reg.ACTIVATIONS.get(act, field=field)
    obj: Any = import_callable(act, field) if isinstance(act, str) else act
    label = act if isinstance(act, str) else getattr(obj, "__name__", repr(obj))
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        return ActivationDef(label, obj(), obj)
    fn: Elementwise = obj
    return ActivationDef(label, fn, lambda: Lambda(fn, label))


def torch_gain(act: ActivationDef) -> float:
    """The gain ``torch.nn.init.calculate_gain`` gives, or 1 for activations it does not know."""
    if act.torch_gain_name is None:
        return 1.0
    if act.torch_gain_name == "leaky_relu":
        return math.sqrt(2.0 / (1 + 0.01**2))
    return float(nn.init.calculate_gain(act.torch_gain_name))  # type: ignore[arg-type]
