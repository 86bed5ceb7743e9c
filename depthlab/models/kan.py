"""``kan``: Kolmogorov–Arnold networks (Liu et al. 2024, "KAN: Kolmogorov-Arnold Networks").

A KAN layer maps x ∈ R^in to y ∈ R^out with a learnable function on every edge:

    y_j = Σ_i φ_ji(x_i) + b_j,   φ_ji(x) = w_b,ji · b(x) + Σ_m c_ji,m B_m(x),

b the base activation (``act``; the paper's is silu) and B_m, m = 0 … G+k−1, the B-splines of
order k (``spline_order``; degree k, cubic for k = 3) on a uniform grid of G intervals
(``grid``) over [−r, r] (``grid_range``), extended by k knots on each side. The paper's spline
scale w_s is folded into the coefficients (w_s·c_m is one parameter; the functions spanned are
the same). All of a layer's coefficients are one ``weight`` of shape (out, in, 1 + G + k): index
0 is w_b, the rest the c_m. The layer is then one contraction of the per-input features
[b(x_i), B_0(x_i), …] with ``weight`` — no Python loop over edges; the basis is evaluated by
local support, k + 1 non-zero values per input (``uniform_bspline_basis``) — and, having a ≥ 2-D
``weight``, it is a *layer* to the probes (its output is the pre-activation of the next layer).

Initialisation (seeded, ``init_seeded``): w_b by the spec's ``init`` as for a Linear layer of
fan-in ``in``; c_m ~ N(0, (0.1)²/in), so φ starts close to w_b·b(x).

Grid extension (the paper's §2.5): ``KAN.extend_grid(x, G')`` refits every edge's spline on a
finer grid G' to the current one by least squares on the layer inputs that ``x`` produces; the
network's function is kept (up to the fit) while its parameter count grows.
``depth`` hidden layers of ``width`` units ([in, width…, out]); inputs are flattened.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from depthlab.exceptions import SpecError
from depthlab.layers.inits import InitContext
from depthlab.models.base import Parts, flat_dim, register_arch
from depthlab.spec import ArchSpec

COEF_STD = 0.1


def knots(grid: int, order: int, bound: float, **like: Any) -> torch.Tensor:
    """G + 2k + 1 uniform knots: the grid [−r, r] in G intervals, extended by k on each side."""
    h = 2 * bound / grid
    return -bound + h * torch.arange(-order, grid + order + 1, **like)


def bspline_basis(x: torch.Tensor, t: torch.Tensor, order: int) -> torch.Tensor:
    """B-splines of order k on knots t at every entry of x: shape ``(*x.shape, len(t) − k − 1)``.

    The Cox–de Boor recursion, vectorised over inputs and basis functions (the loop runs over
    the k orders only): B_{j,0}(x) = 1[t_j ≤ x < t_{j+1}], B_{j,p} = (x − t_j)/(t_{j+p} − t_j)
    B_{j,p−1} + (t_{j+p+1} − x)/(t_{j+p+1} − t_{j+1}) B_{j+1,p−1}. Zero outside [t_0, t_last).
    """
    x = x.unsqueeze(-1)
    basis = ((x >= t[:-1]) & (x < t[1:])).to(x.dtype)
    for p in range(1, order + 1):
        left = (x - t[: -(p + 1)]) / (t[p:-1] - t[: -(p + 1)])
        right = (t[p + 1 :] - x) / (t[p + 1 :] - t[1:-p])
        basis = left * basis[..., :-1] + right * basis[..., 1:]
    return basis


def uniform_bspline_basis(x: torch.Tensor, grid: int, order: int, bound: float) -> torch.Tensor:
    """``bspline_basis`` on the uniform knots ``knots(grid, order, bound)``, by local support.

    Each x lies in one knot interval j, where only the k + 1 B-splines B_{j−k} … B_j are
    non-zero; with f = (x − t_j)/h ∈ [0, 1) they follow from the same recursion on k + 1 values
    instead of G + 2k, B_{j−s,p} = ((f + s) B_{j−s,p−1} + (p + 1 − s − f) B_{j−s+1,p−1}) / p,
    and are scattered into place. Same values as ``bspline_basis``, a fraction of the work.
    """
    h = 2 * bound / grid
    n_basis = grid + order
    u = (x - (-bound - order * h)) / h  # position in knot intervals from t_0
    cell = torch.floor(u)
    inside = (u >= 0) & (u < grid + 2 * order)
    f = (u - cell).unsqueeze(-1)
    if order == 3:  # the cubic case in closed form: the recursion below, expanded
        f2, g = f * f, 1 - f
        f3 = f2 * f
        vals = torch.cat((f3, -3 * f3 + 3 * f2 + 3 * f + 1, 3 * f3 - 6 * f2 + 4, g * g * g), -1) / 6
    else:
        vals = torch.ones_like(f)
        for p in range(1, order + 1):
            s = torch.arange(p + 1, dtype=x.dtype, device=x.device)
            zero = torch.zeros_like(f)
            left = torch.cat([vals, zero], -1)  # B_{j−s,p−1}, s = 0 … p
            right = torch.cat([zero, vals], -1)  # B_{j−s+1,p−1}
            vals = ((f + s) * left + (p + 1 - s - f) * right) / p
    idx = cell.long().unsqueeze(-1) - torch.arange(order + 1, device=x.device)
    valid = inside.unsqueeze(-1) & (idx >= 0) & (idx < n_basis)
    out = torch.zeros(*x.shape, n_basis, dtype=x.dtype, device=x.device)
    return out.scatter_add(-1, idx.clamp(0, n_basis - 1), vals * valid)


class KANLayer(nn.Module):
    """y = Σ_i φ_ji(x_i) + b_j with φ = w_b·b(x) + Σ_m c_m B_m(x) (module doc)."""

    def __init__(
        self, fan_in: int, fan_out: int, grid: int, order: int, bound: float, act: nn.Module,
        bias: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.fan_in, self.fan_out, self.order, self.bound = fan_in, fan_out, order, bound
        self.act = act
        self.knots: torch.Tensor
        self.register_buffer("knots", knots(grid, order, bound))
        self.weight = nn.Parameter(torch.zeros(fan_out, fan_in, 1 + grid + order))
        self.bias = nn.Parameter(torch.zeros(fan_out)) if bias else None

    @property
    def grid(self) -> int:
        return len(self.knots) - 2 * self.order - 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in)`` → ``(N, in, 1 + G + k)``: [b(x_i), B_0(x_i), …, B_{G+k−1}(x_i)]."""
        base = self.act(x).unsqueeze(-1)
        splines = uniform_bspline_basis(x, self.grid, self.order, self.bound)
        return torch.cat([base, splines], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("nim,oim->no", self.features(x), self.weight)
        return out if self.bias is None else out + self.bias

    @torch.no_grad()
    def init_seeded(self, init: Any, ctx: InitContext) -> None:
        base = torch.empty(self.fan_out, self.fan_in, dtype=self.weight.dtype)
        bias = None if self.bias is None else torch.empty_like(self.bias)
        init(base, bias, ctx)
        coef = torch.randn(self.weight[..., 1:].shape, generator=ctx.generator)
        self.weight[..., 0] = base
        self.weight[..., 1:] = coef * (COEF_STD / math.sqrt(self.fan_in))
        if self.bias is not None and bias is not None:
            self.bias.copy_(bias)

    @torch.no_grad()
    def extend_grid(self, x: torch.Tensor, grid: int, ridge: float = 1e-9) -> None:
        """Refit the splines on ``grid`` intervals to their current values at inputs ``x``
        ``(N, in)``: per input i, min ‖B'(x_i) C' − B(x_i) C‖² + ridge‖C'‖² over all outputs
        at once (batched normal equations)."""
        old = bspline_basis(x, self.knots.to(x.dtype), self.order)  # (N, in, M)
        target = torch.einsum("nim,oim->ino", old, self.weight[..., 1:].to(x.dtype))
        new_knots = knots(grid, self.order, self.bound, dtype=self.knots.dtype)
        a = bspline_basis(x, new_knots.to(x.dtype), self.order).transpose(0, 1)  # (in, N, M')
        gram = a.transpose(1, 2) @ a
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype)
        coef = torch.linalg.solve(gram + ridge * len(x) * eye, a.transpose(1, 2) @ target)
        weight = torch.cat([self.weight[..., :1], coef.permute(2, 0, 1).to(self.weight.dtype)], -1)
        # a new Parameter: autograd keeps the old one's shape (an optimiser must be told)
        self.weight = nn.Parameter(weight.contiguous(), self.weight.requires_grad)
        self.knots = new_knots.to(self.knots.device)


class KAN(nn.Module):
    """A stack of KAN layers on flattened inputs."""

    def __init__(self, dims: list[int], spec: ArchSpec, parts: Parts) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            KANLayer(a, b, spec.grid, spec.spline_order, spec.grid_range, parts.act(), spec.bias)
            for a, b in zip(dims[:-1], dims[1:], strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(len(x), -1)
        for layer in self.layers:
            h = layer(h)
        return h

    @torch.no_grad()
    def extend_grid(self, x: torch.Tensor, grid: int) -> None:
        """Grid extension of every layer to ``grid`` intervals, fitted on the inputs ``x``."""
        h = x.reshape(len(x), -1)
        for layer in self.layers:
            assert isinstance(layer, KANLayer)
            nxt = layer(h)
            layer.extend_grid(h, grid)
            h = nxt


@register_arch("kan")
def kan(spec: ArchSpec, parts: Parts, in_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    """Kolmogorov–Arnold network: B-spline functions on edges, ``depth`` hidden layers."""
    if spec.norm != "none" or spec.residual != "none" or spec.dropout:
        raise SpecError(
            "norm",
            f"a kan takes no norm, residual or dropout (got norm {spec.norm!r}, residual "
            f"{spec.residual!r}, dropout {spec.dropout!r}); its edges are the whole layer",
        )
    return KAN([flat_dim(in_shape), *spec.widths(), out_dim], spec, parts)
