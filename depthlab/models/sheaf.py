"""``sheaf``: neural sheaf diffusion (Bodnar, Di Giovanni, Chamberlain, Liò & Bronstein 2022).

Every node carries a stalk ℝ^d (``stalk_dim``) of f = width/d channels, X_v ∈ ℝ^{d×f}. Each
layer learns a restriction map F_{v◁e} ∈ ℝ^{d×d} for every node v of every edge e = {u, v}
from the features, F_{v◁e} = Φ([x_v ‖ x_u]) with one linear map Φ, as ``sheaf_maps`` says:
``diagonal`` (tanh of d numbers), ``general`` (tanh of d² numbers) or ``orthogonal`` (the
matrix exponential of a skew-symmetric matrix of d(d−1)/2 numbers). The sheaf Laplacian is
L_F = δᵀδ with (δx)_e = F_{v◁e} x_v − F_{u◁e} x_u, i.e.

    (L_F x)_v = Σ_{e ∋ v} F_{v◁e}ᵀ (F_{v◁e} x_v − F_{u◁e} x_u),

positive semi-definite, and the graph Laplacian ⊗ I_d for identity maps. Normalised,
Δ_F = D^{-1/2} L_F D^{-1/2} with D_v = I + Σ_{e∋v} F_{v◁e}ᵀF_{v◁e} (the I keeps isolated nodes
finite). A layer is the discretised diffusion X ← X − act(Δ_F (I ⊗ W₁) X W₂), W₁ ∈ ℝ^{d×d},
W₂ ∈ ℝ^{f×f}, then [norm] and [dropout]. With non-trivial maps the diffusion's limit need not
be constant on the nodes, which is why sheaf diffusion copes with heterophily and oversmoothing.
Sums over edges are PyG's ``scatter``.
"""

from __future__ import annotations

import torch
from torch import nn

from depthlab.exceptions import SpecError
from depthlab.models.base import Parts, register_arch
from depthlab.models.gnn import MessagePassingNet
from depthlab.models.graph_base import Context, GraphLayer, graph_input, graph_width
from depthlab.spec import ArchSpec


def reverse_edges(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """For every directed edge (u → v) the position of (v → u); the graph must be symmetric."""
    src, dst = edge_index
    key = src * n + dst
    order = torch.argsort(key)
    want = dst * n + src
    pos = torch.searchsorted(key[order], want).clamp(max=max(len(key) - 1, 0))
    rev = order[pos]
    if len(key) and not bool((key[rev] == want).all()):
        raise ValueError("sheaf diffusion needs an undirected graph (every edge both ways)")
    return rev


def sheaf_laplacian_apply(
    x: torch.Tensor, maps: torch.Tensor, edge_index: torch.Tensor, rev: torch.Tensor
) -> torch.Tensor:
    """L_F x for x (N, d, f) and maps (E, d, d): maps[k] = F_{dst◁e} of directed edge k."""
    from torch_geometric.utils import scatter

    src, dst = edge_index
    diff = maps @ x[dst] - maps[rev] @ x[src]  # (δx)_e seen from dst, (E, d, f)
    return scatter(maps.transpose(1, 2) @ diff, dst, 0, dim_size=len(x), reduce="sum")


def sheaf_laplacian_dense(maps: torch.Tensor, edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """The (N·d × N·d) matrix L_F = δᵀδ built from the coboundary δ, for tests and small graphs.

    Each undirected edge appears once in δ (the direction with src < dst)."""
    d = maps.shape[-1]
    rev = reverse_edges(edge_index, n)
    src, dst = edge_index
    keep = (src < dst).nonzero().flatten()
    delta = torch.zeros(len(keep) * d, n * d, dtype=maps.dtype, device=maps.device)
    for row, k in enumerate(keep.tolist()):
        u, v = int(src[k]), int(dst[k])
        delta[row * d : (row + 1) * d, v * d : (v + 1) * d] = maps[k]
        delta[row * d : (row + 1) * d, u * d : (u + 1) * d] = -maps[rev[k]]
    return delta.T @ delta


def inv_sqrt_spd(m: torch.Tensor, iterations: int = 20) -> torch.Tensor:
    """M^{-1/2} of a batch of SPD matrices by the coupled Newton–Schulz iteration.

    Unlike ``eigh``, whose gradient is infinite when two eigenvalues coincide (the diagonal of a
    sheaf's degree matrix often has repeats), every step is a matrix product, so autograd is
    finite. M is scaled by its Frobenius norm first, which puts its spectrum in (0, 1] where
    the iteration converges (quadratically, for the well-conditioned I + Σ FᵀF used here)."""
    norm = m.flatten(-2).norm(dim=-1)[..., None, None]
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device).expand_as(m)
    y, z = m / norm, eye
    for _ in range(iterations):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    return z / norm.sqrt()


class SheafLayer(GraphLayer):
    def __init__(self, parts: Parts, width: int, d: int, kind: str) -> None:
        super().__init__()
        if width % d:
            raise SpecError("stalk_dim", f"{d} does not divide width {width}")
        if kind == "orthogonal" and d < 2:
            raise SpecError("stalk_dim", "orthogonal restriction maps need stalk_dim >= 2")
        self.d, self.f, self.kind = d, width // d, kind
        n_out = {"diagonal": d, "general": d * d, "orthogonal": d * (d - 1) // 2}[kind]
        # Φ([x_v ‖ x_u]) = Φ_v x_v + Φ_u x_u: the same map as one Linear on the concatenation,
        # applied per node (rows stay nodes for every probe that hooks nn.Linear)
        self.phi_dst = nn.Linear(width, n_out, bias=parts.spec.bias)
        self.phi_src = nn.Linear(width, n_out, bias=False)
        self.w1 = nn.Linear(d, d, bias=False)
        self.w2 = nn.Linear(self.f, self.f, bias=False)
        self.act = parts.act()
        self.post = nn.Sequential(parts.norm(width), parts.dropout())

    def _coefficients(self, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        src, dst = edge_index
        # / √2: the pair starts at the scale of one Linear on the 2·width concatenation
        return (self.phi_dst(h)[dst] + self.phi_src(h)[src]) * 0.5**0.5

    def restriction_maps(self, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """F_{dst◁e} for every directed edge, (E, d, d)."""
        raw = self._coefficients(h, edge_index)
        d = self.d
        if self.kind == "diagonal":
            return torch.diag_embed(torch.tanh(raw))
        if self.kind == "general":
            return torch.tanh(raw).view(-1, d, d)
        skew = torch.zeros(len(raw), d, d, dtype=raw.dtype, device=raw.device)
        i, j = torch.triu_indices(d, d, offset=1, device=raw.device)
        skew[:, i, j] = raw[:, : len(i)]
        return torch.linalg.matrix_exp(skew - skew.transpose(1, 2))

    def forward(self, h: torch.Tensor, h0: torch.Tensor, ctx: Context) -> torch.Tensor:
        from torch_geometric.utils import scatter

        n = len(h)
        edge_index, rev = ctx["edge_index"], ctx["reverse"]
        x = h.view(n, self.d, self.f)
        y = self.w2(self.w1(x.transpose(1, 2)).transpose(1, 2))  # (I ⊗ W₁) X W₂
        if self.kind == "diagonal":
            # diagonal maps as vectors: the same Δ_F with elementwise products, no tiny matmuls
            m = torch.tanh(self._coefficients(h, edge_index)).unsqueeze(-1)  # (E, d, 1)
            src, dst = edge_index
            scale = (scatter(m * m, dst, 0, dim_size=n, reduce="sum") + 1).rsqrt()  # (N, d, 1)
            y = scale * y
            diff = m * y[dst] - m[rev] * y[src]
            y = scale * scatter(m * diff, dst, 0, dim_size=n, reduce="sum")
        else:
            maps = self.restriction_maps(h, edge_index)
            eye = torch.eye(self.d, dtype=h.dtype, device=h.device)
            gram = scatter(maps.transpose(1, 2) @ maps, edge_index[1], 0, dim_size=n, reduce="sum")
            d_inv_sqrt = inv_sqrt_spd(gram + eye)  # (N, d, d)
            y = d_inv_sqrt @ sheaf_laplacian_apply(d_inv_sqrt @ y, maps, edge_index, rev)
        out = x - self.act(y)
        return self.post(out.reshape(n, -1))


class SheafNet(MessagePassingNet):
    def prepare(self, x: torch.Tensor, edge_index: torch.Tensor) -> Context:
        ctx = super().prepare(x, edge_index)
        ctx["reverse"] = reverse_edges(edge_index, len(x))
        return ctx


@register_arch("sheaf")
def sheaf(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """Neural sheaf diffusion with learned diagonal, general or orthogonal restriction maps."""
    width = graph_width(spec)
    layers: list[GraphLayer] = [
        SheafLayer(parts, width, spec.stalk_dim, spec.sheaf_maps) for _ in range(spec.depth)
    ]
    return SheafNet(parts, graph_input(spec, in_shape), width, out_dim, layers)
