"""The common frame of every graph family: the graph as a buffer, embedding, layers, readout.

A graph network is called like any other depthlab model, on a feature matrix ``x`` of shape
``(n, F)`` whose rows are nodes, and returns ``(n, out_dim)``. The graph is held by the model
(``set_graph(edge_index)``; ``build_model(..., graph=...)`` sets it from the data), so the
probes, the trainer and ``torch.func`` see a plain tensor-in, tensor-out module. With all N
nodes (``n = N``) the model runs on the whole graph; with fewer rows it runs on the subgraph
induced by the first ``n`` nodes (a probe measuring on the first rows sees a graph, not a
set of isolated nodes cut out of a bigger one). Rows beyond the last node an edge touches are
isolated nodes.

Layout: ``embed`` (Linear F → width, activation, dropout), ``depth`` message-passing
``layers`` (each a :class:`GraphLayer`, width → width), ``readout`` (Linear width → out_dim).
``layers[i]`` is where the smoothing probe reads the node features of layer i + 1.
"""

from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn

from depthlab.exceptions import SpecError
from depthlab.models.base import Parts
from depthlab.spec import ArchSpec

Context = dict[str, Any]


def graph_width(spec: ArchSpec) -> int:
    """The one width every message-passing layer shares."""
    widths = set(spec.widths()) or {spec.width if isinstance(spec.width, int) else 1}
    if len(widths) != 1:
        raise SpecError(
            "width", f"{spec.width!r}: {spec.family} layers share one width; give one integer"
        )
    return next(iter(widths))


def graph_input(spec: ArchSpec, in_shape: tuple[int, ...]) -> int:
    if len(in_shape) != 1:
        raise SpecError(
            "family", f"{spec.family} takes node features of shape (F,), got {in_shape}"
        )
    return in_shape[0]


class GraphLayer(nn.Module, abc.ABC):
    """One message-passing layer: ``forward(h, h0, ctx) -> h'`` on all n rows at once.

    ``h0`` is the embedded input (for initial residual connections), ``ctx`` what the network's
    ``prepare`` computed once per forward pass from the graph (normalised edges and the like).
    """

    @abc.abstractmethod
    def forward(self, h: torch.Tensor, h0: torch.Tensor, ctx: Context) -> torch.Tensor:
        """The next layer's node features."""


class GraphNet(nn.Module):
    """Embedding, graph layers, readout, and the graph they run on.

    ``edge_index`` (2×E, both directions of every edge) is a non-persistent buffer: the graph
    is data, not weights, so ``state_dict`` holds weights only.
    """

    edge_index: torch.Tensor

    def __init__(
        self, parts: Parts, in_dim: int, width: int, out_dim: int, layers: list[GraphLayer]
    ) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            nn.Linear(in_dim, width, bias=parts.spec.bias), parts.act(), parts.dropout()
        )
        self.layers = nn.ModuleList(layers)
        self.readout = nn.Linear(width, out_dim, bias=parts.spec.bias)
        self.register_buffer("edge_index", torch.zeros(2, 0, dtype=torch.long), persistent=False)
        self.num_nodes = 0
        self._subgraphs: dict[int, torch.Tensor] = {}

    def set_graph(self, edge_index: torch.Tensor) -> None:
        """Run on this graph from now on: ``edge_index`` (2×E integers, both directions)."""
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise SpecError(
                "graph", f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}"
            )
        self.edge_index = edge_index.to(torch.long)
        self.num_nodes = int(edge_index.max()) + 1 if edge_index.numel() else 0
        self._subgraphs = {}
        self.on_graph()

    def on_graph(self) -> None:
        """Precompute what depends on the graph alone (e.g. positional encodings)."""

    def graph_for(self, n: int) -> torch.Tensor:
        """The edges among the first ``n`` nodes: all of them when ``n`` reaches every node an
        edge touches (rows beyond are isolated nodes), else the induced subgraph."""
        if n >= self.num_nodes:
            return self.edge_index
        cached = self._subgraphs.get(n)
        if cached is not None and cached.device == self.edge_index.device:  # not moved since
            return cached
        from torch_geometric.utils import subgraph

        rows = torch.arange(n, device=self.edge_index.device)
        edges = subgraph(rows, self.edge_index, num_nodes=self.num_nodes)[0]
        # inside a torch.func transform the buffer is a wrapper: computed, never cached (a
        # cached wrapper outlives the transform and breaks copies of the model)
        if not torch._C._functorch.is_functorch_wrapped_tensor(edges):
            self._subgraphs[n] = edges
        return edges

    def prepare(self, x: torch.Tensor, edge_index: torch.Tensor) -> Context:
        """What every layer needs from the graph, computed once per forward pass."""
        return {"edge_index": edge_index, "n": len(x)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.prepare(x, self.graph_for(len(x)))
        h = self.embed(x)
        h0 = h
        for layer in self.layers:
            h = layer(h, h0, ctx)
        return self.readout(h)
