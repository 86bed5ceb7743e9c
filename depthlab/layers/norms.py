"""Normalization layers by name or callable: none, batch, layer, rms.

A norm factory takes the number of features and whether the tensor is channels-first
``(N, C, L)`` (convolutions) or features-last ``(N, F)``. Layer and RMS norm normalise over
the feature/channel dimension at each position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from depthlab import _registry as reg
from depthlab.spec.base import import_callable

NormFactory = Callable[[int, bool], nn.Module]


class ChannelsLast(nn.Module):
    """Applies a features-last norm to a channels-first tensor ``(N, C, L)``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.transpose(1, -1)).transpose(1, -1)


def _none(num_features: int, channels_first: bool) -> nn.Module:
    return nn.Identity()


def _batch(num_features: int, channels_first: bool) -> nn.Module:
    return nn.BatchNorm1d(num_features)


def _layer(num_features: int, channels_first: bool) -> nn.Module:
    norm = nn.LayerNorm(num_features)
    return ChannelsLast(norm) if channels_first else norm


def _rms(num_features: int, channels_first: bool) -> nn.Module:
    norm = nn.RMSNorm(num_features, eps=1e-6)
    return ChannelsLast(norm) if channels_first else norm


reg.NORMS.register("none", _none, "no normalization")
reg.NORMS.register("batch", _batch, "batch normalization (Ioffe & Szegedy 2015)")
reg.NORMS.register("layer", _layer, "layer normalization over features (Ba et al. 2016)")
reg.NORMS.register("rms", _rms, "RMS normalization over features (Zhang & Sennrich 2019)")


def resolve_norm(norm: str | Callable[..., Any], field: str = "norm") -> NormFactory:
    """A registered name, a ``module:attr`` path, or a callable ``f(num_features) -> Module``."""
    if isinstance(norm, str) and ":" not in norm:
        return reg.NORMS.get(norm, field=field)
    fn = import_callable(norm, field) if isinstance(norm, str) else norm
    return lambda num_features, channels_first: fn(num_features)


def is_identity_norm(norm: str | Callable[..., Any]) -> bool:
    return norm == "none"
