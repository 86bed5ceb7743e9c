"""Message-passing families ``gcn``, ``sage``, ``gin`` and ``gat``, any depth.

Each layer mixes the node features h over the graph, applies its weights (``nn.Linear``, so
every probe finds them), then [norm] → act → [dropout] (``norm_placement: post``: act, norm),
and with ``residual`` other than ``none`` returns h + α·layer(h). The mixing per family, with
N(i) the neighbours of i and Â = D̃^{-1/2}(A + I)D̃^{-1/2} (Kipf & Welling 2017):

- ``gcn``: W·(Âh)_i — propagating before the linear map equals GCN's Â(hW) and makes the
  ``nn.Linear`` output the layer's pre-activation.
- ``sage``: W·[h_i ‖ mean_{j∈N(i)} h_j] (Hamilton et al. 2017).
- ``gin``: MLP((1 + ε)h_i + Σ_{j∈N(i)} h_j), ε learnable from 0, a two-layer MLP (Xu et al.
  2019); the sum is what lets GIN separate multisets that mean and max cannot (``aggr: mean``
  or ``max`` replaces it, for comparison).
- ``gat``: Σ_{j∈N(i)∪{i}} α_ij W h_j with α_ij = softmax_j LeakyReLU(a_dᵀWh_i + a_sᵀWh_j),
  ``heads`` heads of width/heads concatenated (Veličković et al. 2018); a starts at 0 (uniform
  attention).

``initial_residual`` α > 0 (GCNII, Chen et al. 2020) mixes the embedded input h⁰ into every
layer's aggregate: (1 − α)·agg + α·h⁰ (for ``gat``: + α·Wh⁰). Norms include ``pair``
(PairNorm). Sums, means and softmaxes over neighbours are PyG's (``MessagePassing``,
``torch_geometric.utils.softmax``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from depthlab.exceptions import SpecError
from depthlab.layers import ResidualScale
from depthlab.models.base import Parts, register_arch
from depthlab.models.graph_base import (
    Context,
    GraphLayer,
    GraphNet,
    graph_input,
    graph_width,
)
from depthlab.spec import ArchSpec


def _message_passing(aggr: str):  # type: ignore[no-untyped-def]
    """A PyG ``MessagePassing`` that aggregates (optionally weighted) neighbour features."""
    from torch_geometric.nn import MessagePassing

    class Aggregate(MessagePassing):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(aggr=aggr, node_dim=0)

        def forward(
            self, x: torch.Tensor, edge_index: torch.Tensor, weight: torch.Tensor | None = None
        ) -> torch.Tensor:
            return self.propagate(edge_index, x=x, weight=weight, size=(len(x), len(x)))

        def message(self, x_j: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
            if weight is None:
                return x_j
            return weight.unsqueeze(-1) * x_j

    return Aggregate()


class MPLayer(GraphLayer):
    """The shared update: ``mix`` (family), then norm/act/dropout, then the residual sum."""

    def __init__(self, parts: Parts, width: int) -> None:
        super().__init__()
        spec = parts.spec
        order = (
            [parts.norm(width), parts.act()]
            if spec.norm_placement == "pre"
            else [parts.act(), parts.norm(width)]
        )
        self.post = nn.Sequential(*order, parts.dropout())
        self.scale = (
            ResidualScale(spec.residual, alpha=spec.residual_alpha, depth=spec.depth)
            if spec.residual != "none"
            else None
        )
        self.alpha = spec.initial_residual

    def initial(self, agg: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        return agg if self.alpha == 0 else (1 - self.alpha) * agg + self.alpha * h0

    def mix(self, h: torch.Tensor, h0: torch.Tensor, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, h: torch.Tensor, h0: torch.Tensor, ctx: Context) -> torch.Tensor:
        z = self.post(self.mix(h, h0, ctx))
        return z if self.scale is None else h + self.scale(z)


class GCNLayer(MPLayer):
    def __init__(self, parts: Parts, width: int) -> None:
        super().__init__(parts, width)
        self.aggregate = _message_passing("add")
        self.lin = nn.Linear(width, width, bias=parts.spec.bias)

    def mix(self, h: torch.Tensor, h0: torch.Tensor, ctx: Context) -> torch.Tensor:
        agg = self.aggregate(h, ctx["gcn_edges"], ctx["gcn_weight"])
        return self.lin(self.initial(agg, h0))


class SAGELayer(MPLayer):
    def __init__(self, parts: Parts, width: int) -> None:
        super().__init__(parts, width)
        self.aggregate = _message_passing("mean")
        self.lin = nn.Linear(2 * width, width, bias=parts.spec.bias)

    def mix(self, h: torch.Tensor, h0: torch.Tensor, ctx: Context) -> torch.Tensor:
        agg = self.initial(self.aggregate(h, ctx["edge_index"]), h0)
        return self.lin(torch.cat([h, agg], dim=-1))


class GINLayer(MPLayer):
    def __init__(self, parts: Parts, width: int, aggr: str = "add") -> None:
        super().__init__(parts, width)
        self.aggregate = _message_passing(aggr)
        self.eps = nn.Parameter(torch.zeros(()))
        bias = parts.spec.bias
        self.mlp = nn.Sequential(
            nn.Linear(width, width, bias=bias), parts.act(), nn.Linear(width, width, bias=bias)
        )

    def mix(self, h: torch.Tensor, h0: torch.Tensor, ctx: Context) -> torch.Tensor:
        agg = (1 + self.eps) * h + self.aggregate(h, ctx["edge_index"])
        return self.mlp(self.initial(agg, h0))


class GATLayer(MPLayer):
    def __init__(self, parts: Parts, width: int, heads: int) -> None:
        super().__init__(parts, width)
        if width % heads:
            raise SpecError("heads", f"{heads} heads do not divide width {width}")
        self.heads = heads
        self.lin = nn.Linear(width, width, bias=False)
        self.att_src = nn.Parameter(torch.zeros(heads, width // heads))
        self.att_dst = nn.Parameter(torch.zeros(heads, width // heads))
        self.bias = nn.Parameter(torch.zeros(width)) if parts.spec.bias else None
        self.aggregate = _message_passing("add")

    def mix(self, h: torch.Tensor, h0: torch.Tensor, ctx: Context) -> torch.Tensor:
        from torch_geometric.utils import softmax

        n = len(h)
        wh = self.lin(h).view(n, self.heads, -1)
        src, dst = ctx["loop_edges"]
        score = (wh * self.att_src).sum(-1)[src] + (wh * self.att_dst).sum(-1)[dst]
        att = softmax(F.leaky_relu(score, 0.2), dst, num_nodes=n)  # (E, heads)
        out = self.aggregate(wh, ctx["loop_edges"], att).reshape(n, -1)
        if self.alpha:
            out = (1 - self.alpha) * out + self.alpha * self.lin(h0)
        return out if self.bias is None else out + self.bias


class _GraphContext(dict):  # type: ignore[type-arg]
    """Per-pass graph context whose derived edge sets are computed on first use, once: GCN's
    normalised edges (``gcn_edges``, ``gcn_weight``) and the self-looped ``loop_edges``."""

    def __init__(self, x: torch.Tensor, edge_index: torch.Tensor) -> None:
        super().__init__(edge_index=edge_index, n=len(x))
        self.dtype = x.dtype

    def __missing__(self, key: str) -> torch.Tensor:
        from torch_geometric.nn.conv.gcn_conv import gcn_norm
        from torch_geometric.utils import add_self_loops

        n, edge_index = self["n"], self["edge_index"]
        if key in ("gcn_edges", "gcn_weight"):
            self["gcn_edges"], self["gcn_weight"] = gcn_norm(
                edge_index, None, n, add_self_loops=True, dtype=self.dtype
            )
        elif key == "loop_edges":
            self["loop_edges"] = add_self_loops(edge_index, num_nodes=n)[0]
        else:
            raise KeyError(key)
        return self[key]


class MessagePassingNet(GraphNet):
    """A ``GraphNet`` whose layers share GCN-normalised and self-looped edges, computed once
    per forward pass when a layer first asks for them."""

    def prepare(self, x: torch.Tensor, edge_index: torch.Tensor) -> Context:
        return _GraphContext(x, edge_index)


def _net(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int, make) -> GraphNet:  # type: ignore[no-untyped-def]
    width = graph_width(spec)
    layers = [make(parts, width) for _ in range(spec.depth)]
    return MessagePassingNet(parts, graph_input(spec, in_shape), width, out_dim, layers)


@register_arch("gcn")
def gcn(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """Graph convolutional network (Kipf & Welling 2017): W·(Âh) per layer."""
    return _net(spec, parts, in_shape, out_dim, GCNLayer)


@register_arch("sage")
def sage(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """GraphSAGE with mean aggregation (Hamilton et al. 2017)."""
    return _net(spec, parts, in_shape, out_dim, SAGELayer)


@register_arch("gin")
def gin(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """Graph isomorphism network, GIN-ε with sum aggregation (Xu et al. 2019)."""
    aggr = {"sum": "add", "mean": "mean", "max": "max"}[spec.aggr]
    return _net(spec, parts, in_shape, out_dim, lambda p, w: GINLayer(p, w, aggr))


@register_arch("gat")
def gat(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """Graph attention network with ``heads`` heads (Veličković et al. 2018)."""
    return _net(spec, parts, in_shape, out_dim, lambda p, w: GATLayer(p, w, spec.heads))
