"""``cnn1d``: a 1-D convolutional network for sequences such as MNIST-1D.

Layer l: Conv1d(kernel_l, stride_l, padding_l) → [norm] → act → [dropout]; then flatten and a
linear readout. ``width`` gives the channels (one value or one per layer), as do ``kernel``,
``stride`` and ``padding``. Inputs are ``(N, L)`` (one channel) or ``(N, C, L)``. With
``residual`` other than ``none``, layers that keep the shape become x + α·layer(x).
The MNIST-1D reference CNN (Greydanus 2020, 5,210 parameters) is depth 3, width 25,
kernel [5, 3, 3], stride 2, padding 1.
"""

from __future__ import annotations

import torch
from torch import nn

from depthlab.exceptions import SpecError
from depthlab.models.base import Parts, register_arch
from depthlab.spec import ArchSpec
from depthlab.spec.arch import per_layer


class AddChannel(nn.Module):
    """``(N, L)`` → ``(N, 1, L)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)


@register_arch("cnn1d")
def cnn1d(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """1-D CNN: ``depth`` conv layers, flatten, linear readout."""
    if len(in_shape) == 1:
        layers: list[nn.Module] = [AddChannel()]
        channels, length = 1, in_shape[0]
    elif len(in_shape) == 2:
        layers = []
        channels, length = in_shape
    else:
        raise SpecError("family", f"cnn1d takes inputs of shape (L,) or (C, L), got {in_shape}")
    widths = spec.widths()
    kernels = per_layer("kernel", spec.kernel, spec.depth)
    strides = per_layer("stride", spec.stride, spec.depth)
    paddings = per_layer("padding", spec.padding, spec.depth)
    for i, (width, k, s, p) in enumerate(zip(widths, kernels, strides, paddings, strict=True)):
        new_length = (length + 2 * p - k) // s + 1
        if new_length < 1:
            raise SpecError(
                "kernel",
                f"layer {i} maps length {length} to {new_length} (kernel {k}, stride {s}, "
                f"padding {p}); use fewer layers, smaller kernels or strides, or more padding",
            )
        block = nn.Sequential(nn.Conv1d(channels, width, k, stride=s, padding=p, bias=spec.bias))
        if spec.norm_placement == "pre":
            block.extend([parts.norm(width, True), parts.act()])
        else:
            block.extend([parts.act(), parts.norm(width, True)])
        block.append(parts.dropout())
        same_shape = width == channels and new_length == length
        layers.append(parts.residual(block) if spec.residual != "none" and same_shape else block)
        channels, length = width, new_length
    layers.append(nn.Flatten())
    layers.append(nn.Linear(channels * length, out_dim, bias=spec.bias))
    return nn.Sequential(*layers)
