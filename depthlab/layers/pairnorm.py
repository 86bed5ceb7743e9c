"""PairNorm (Zhao & Akoglu 2020, "PairNorm: Tackling Oversmoothing in GNNs").

Over the rows (nodes) of ``x`` (N, F): centre, x̃ = x − mean_i x_i, then rescale so that the
mean squared row norm is s²: x = s · x̃ / √(mean_i ‖x̃_i‖² + ε). The total pairwise squared
distance Σ_{i,j} ‖x_i − x_j‖² = 2N Σ_i ‖x̃_i‖² is then fixed at 2N²s², so repeated propagation
cannot shrink every node onto one point.
"""

from __future__ import annotations

import torch
from torch import nn

from depthlab import _registry as reg


class PairNorm(nn.Module):
    """Centre the rows, then scale them to mean squared norm ``scale``²; no parameters."""

    def __init__(self, scale: float = 1.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.scale = scale
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=0, keepdim=True)
        rms = centred.pow(2).sum(dim=-1).mean().add(self.eps).sqrt()
        return self.scale * centred / rms


def _pair(num_features: int, channels_first: bool) -> nn.Module:
    return PairNorm()


reg.NORMS.register("pair", _pair, "PairNorm over the nodes of a graph (Zhao & Akoglu 2020)")
