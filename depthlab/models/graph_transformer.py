"""``graph_transformer``: neighbour attention with Laplacian positional encodings (Dwivedi &
Bresson 2021, "A Generalization of Transformer Networks to Graphs").

The input is [x ‖ p] with p ∈ ℝ^{pe_dim} the eigenvectors of the normalised Laplacian
I − D^{-1/2} A D^{-1/2} with the smallest non-zero eigenvalues (dense ``eigh`` below 4,000
nodes, sparse Lanczos above), each signed so that its largest-magnitude entry is positive, so
relabelling the nodes permutes p with them (up to ties between eigenvalues or entries). Each
layer (pre-norm): h ← h + α·W_o Attn(norm(h)), h ← h + α·FFN(norm(h)), attention of every node
over its neighbours and itself, softmax(q_i·k_j/√d_head) with ``heads`` heads; α is 1 unless
``residual`` scales it. FFN: Linear(w, 2w) → act → dropout → Linear(2w, w).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from depthlab.exceptions import SpecError
from depthlab.layers import ResidualScale
from depthlab.models.base import Parts, register_arch
from depthlab.models.gnn import MessagePassingNet, _message_passing
from depthlab.models.graph_base import Context, GraphLayer, graph_input, graph_width
from depthlab.spec import ArchSpec

DENSE_EIGH_NODES = 4000


def laplacian_pe(edge_index: torch.Tensor | np.ndarray, n: int, k: int) -> torch.Tensor:
    """(n, k) eigenvectors of the normalised Laplacian, smallest non-trivial first, sign-fixed;
    zero columns where the graph has fewer than k + 1 eigenvalues.

    Computed in NumPy/SciPy from the edge list (the graph is data, not something to
    differentiate), so it also runs while a probe calls the model under ``torch.func``."""
    import scipy.sparse as sp

    out = np.zeros((n, k), dtype=np.float32)
    if n < 2 or k == 0:
        return torch.from_numpy(out)
    edges = edge_index if isinstance(edge_index, np.ndarray) else edge_index.detach().cpu().numpy()
    src, dst = edges
    keep = (src != dst) & (src < n) & (dst < n)
    adj = sp.coo_matrix((np.ones(int(keep.sum())), (src[keep], dst[keep])), shape=(n, n)).tocsr()
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-300)), 0.0)
    lap = sp.identity(n, format="csr") - sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)
    m = min(k + 1, n)
    if n <= DENSE_EIGH_NODES:
        vals, vecs = np.linalg.eigh(lap.toarray())
    else:
        from scipy.sparse.linalg import eigsh

        vals, vecs = eigsh(lap, k=m, which="SA", tol=1e-6)
        order = np.argsort(vals)
        vals, vecs = vals[order], vecs[:, order]
    vecs = vecs[:, 1:m]  # the first is the trivial √d direction
    big = np.abs(vecs).argmax(axis=0)
    vecs = vecs * np.sign(vecs[big, np.arange(vecs.shape[1])])
    out[:, : vecs.shape[1]] = vecs
    return torch.from_numpy(out)


class TransformerLayer(GraphLayer):
    def __init__(self, parts: Parts, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise SpecError("heads", f"{heads} heads do not divide width {width}")
        spec = parts.spec
        bias = spec.bias
        self.heads = heads
        self.norm1, self.norm2 = parts.norm(width), parts.norm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.out = nn.Linear(width, width, bias=bias)
        self.ffn = nn.Sequential(
            nn.Linear(width, 2 * width, bias=bias),
            parts.act(),
            parts.dropout(),
            nn.Linear(2 * width, width, bias=bias),
        )
        mode = spec.residual if spec.residual != "none" else "fixed"
        alpha = spec.residual_alpha if spec.residual != "none" else 1.0
        self.scale1 = ResidualScale(mode, alpha=alpha, depth=spec.depth)
        self.scale2 = ResidualScale(mode, alpha=alpha, depth=spec.depth)
        self.aggregate = _message_passing("add")

    def forward(self, h: torch.Tensor, h0: torch.Tensor, ctx: Context) -> torch.Tensor:
        from torch_geometric.utils import softmax

        n = len(h)
        q, k, v = self.qkv(self.norm1(h)).view(n, 3, self.heads, -1).unbind(1)
        src, dst = ctx["loop_edges"]
        score = (q[dst] * k[src]).sum(-1) / math.sqrt(q.shape[-1])  # (E, heads)
        att = softmax(score, dst, num_nodes=n)
        mixed = self.aggregate(v, ctx["loop_edges"], att).reshape(n, -1)
        h = h + self.scale1(self.out(mixed))
        return h + self.scale2(self.ffn(self.norm2(h)))


class GraphTransformer(MessagePassingNet):
    pe: torch.Tensor

    def __init__(self, parts: Parts, in_dim: int, width: int, out_dim: int, depth: int) -> None:
        self.pe_dim = parts.spec.pe_dim
        layers: list[GraphLayer] = [
            TransformerLayer(parts, width, parts.spec.heads) for _ in range(depth)
        ]
        super().__init__(parts, in_dim + self.pe_dim, width, out_dim, layers)
        self._pe: dict[int, torch.Tensor] = {}
        self._plain_edges = np.zeros((2, 0), dtype=np.int64)

    def on_graph(self) -> None:
        # A NumPy copy of the graph: under torch.func (probes call the model through
        # functional_call, vmap, jvp) tensors are wrapped and NumPy cannot read them.
        self._plain_edges = self.edge_index.detach().cpu().numpy().copy()
        self._pe = {self.num_nodes: laplacian_pe(self._plain_edges, self.num_nodes, self.pe_dim)}

    def encoding(self, n: int) -> torch.Tensor:
        """The positional encodings of the graph the first ``n`` rows run on."""
        if n not in self._pe:  # laplacian_pe keeps the edges among the first n nodes
            self._pe[n] = laplacian_pe(self._plain_edges, n, self.pe_dim)
        return self._pe[n]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pe = self.encoding(len(x)).to(device=x.device, dtype=x.dtype)  # computed on the host
        return super().forward(torch.cat([x, pe], dim=1))


@register_arch("graph_transformer")
def graph_transformer(
    spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int
) -> nn.Module:
    """Graph transformer: neighbour attention + FFN blocks on [x ‖ Laplacian PE]."""
    return GraphTransformer(
        parts, graph_input(spec, in_shape), graph_width(spec), out_dim, spec.depth
    )
