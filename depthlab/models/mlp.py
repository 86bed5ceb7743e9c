"""``mlp``: a fully connected network of any depth ≥ 0 and per-layer width.

Hidden layer l: Linear → [norm] → act → [dropout] (``norm_placement: post`` puts the norm after
the activation). With ``residual`` other than ``none``, layers whose input and output widths
match become x + α·layer(x). Depth 0 is a linear model.
"""

from __future__ import annotations

from torch import nn

from depthlab.models.base import Parts, flat_dim, register_arch
from depthlab.spec import ArchSpec


@register_arch("mlp")
def mlp(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """Fully connected network; any depth and width, or one width per hidden layer."""
    layers: list[nn.Module] = [nn.Flatten()] if len(in_shape) != 1 else []
    fan_in = flat_dim(in_shape)
    for width in spec.widths():
        block = nn.Sequential(nn.Linear(fan_in, width, bias=spec.bias))
        if spec.norm_placement == "pre":
            block.append(parts.norm(width))
            block.append(parts.act())
        else:
            block.append(parts.act())
            block.append(parts.norm(width))
        block.append(parts.dropout())
        layers.append(
            parts.residual(block) if spec.residual != "none" and width == fan_in else block
        )
        fan_in = width
    layers.append(nn.Linear(fan_in, out_dim, bias=spec.bias))
    return nn.Sequential(*layers)
