"""``dagnn``: Deep Adaptive Graph Neural Network (Liu, Gao & Ji 2020, "Towards Deeper Graph
Neural Networks"): transformation and propagation decoupled, depth weighted adaptively.

Z = MLP(X) ∈ ℝ^{N×C} (embedding Linear → act → dropout, then a Linear to the outputs); then
``depth`` propagation steps H_k = Â H_{k−1}, H_0 = Z, with Â = D̃^{-1/2}(A + I)D̃^{-1/2} and no
weights; each node weighs its own steps, s_{ik} = sigmoid(H_k[i]·w) with one learned w ∈ ℝ^C,
and outputs Σ_k s_{ik} H_k[i]. The steps themselves smooth (Â^k Z converges), but a node can
keep its early steps, so accuracy need not fall with depth. ``layers[k]`` is step k + 1.
``norm`` and ``residual`` do not apply (the steps have no weights).
"""

from __future__ import annotations

import torch
from torch import nn

from depthlab.models.base import Parts, register_arch
from depthlab.models.gnn import MessagePassingNet, _message_passing
from depthlab.models.graph_base import Context, GraphLayer, graph_input, graph_width
from depthlab.spec import ArchSpec


class Propagate(GraphLayer):
    """H ↦ ÂH, no weights."""

    def __init__(self) -> None:
        super().__init__()
        self.aggregate = _message_passing("add")

    def forward(self, h: torch.Tensor, h0: torch.Tensor, ctx: Context) -> torch.Tensor:
        return self.aggregate(h, ctx["gcn_edges"], ctx["gcn_weight"])


class DAGNN(MessagePassingNet):
    def __init__(self, parts: Parts, in_dim: int, width: int, out_dim: int, depth: int) -> None:
        super().__init__(parts, in_dim, width, out_dim, [Propagate() for _ in range(depth)])
        readout = self.readout
        del self.readout
        self.gate = nn.Linear(out_dim, 1, bias=parts.spec.bias)
        # registered last, so that the last nn.Linear (what probes take for the classifier) is
        # the one that maps features to classes
        self.readout = readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.prepare(x, self.graph_for(len(x)))
        z = self.readout(self.embed(x))
        steps = [z]
        for layer in self.layers:
            steps.append(layer(steps[-1], z, ctx))
        h = torch.stack(steps, dim=1)  # (N, depth + 1, C)
        weight = torch.sigmoid(self.gate(h))  # (N, depth + 1, 1)
        return (weight * h).sum(dim=1)


@register_arch("dagnn")
def dagnn(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """DAGNN: an MLP, then ``depth`` weight-free propagation steps mixed per node."""
    return DAGNN(parts, graph_input(spec, in_shape), graph_width(spec), out_dim, spec.depth)
