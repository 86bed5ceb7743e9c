"""Networks from convex solutions, and the non-convex objective they are held against.

A ReLU-program solution gives one neuron per non-zero block (Pilanci & Ergen 2020):
w = u/√‖u‖, v = √‖u‖ for u_i and v = −√‖u'_i‖ for u'_i, so that v·relu(w̃ᵀx̃) = relu(x̃ᵀu) and
(λ/2)(‖w‖² + v²) = λ‖u‖: the network's objective equals the convex one wherever the cone
constraints hold. Several outputs (one program each) stack their neurons, each output reading
only its own.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TwoLayerReLU", "GatedReLU", "two_layer_objective", "from_relu", "from_gated"]


class TwoLayerReLU(nn.Module):
    """f(x) = V relu(W x + b): the network of the convex programs (hidden bias, no output bias)."""

    def __init__(self, in_dim: int, width: int, out_dim: int = 1) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_dim, width, bias=True)
        self.out = nn.Linear(width, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


class GatedReLU(nn.Module):
    """f(x) = Σ_i 1[x̃ᵀg_i ≥ 0] x̃ᵀu_i with fixed gates g_i (Mishkin et al. 2022), x̃ = [x, 1]."""

    gates: torch.Tensor
    readout: torch.Tensor

    def __init__(self, gates: torch.Tensor, weights: torch.Tensor, readout: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("gates", gates)  # (m, d+1)
        self.weights = nn.Parameter(weights)  # (m, d+1)
        self.register_buffer("readout", readout)  # (out, m): which output each neuron feeds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xt = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
        on = (xt @ self.gates.T >= 0).to(x.dtype)
        return (on * (xt @ self.weights.T)) @ self.readout.T


def from_relu(solutions: list[torch.Tensor], in_dim: int) -> TwoLayerReLU:
    """The pruned network of per-output ReLU solutions, each (2, P, d+1)."""
    ws, bs, vs, owner = [], [], [], []
    for o, u in enumerate(solutions):
        for k, sign in ((0, 1.0), (1, -1.0)):
            norms = u[k].norm(dim=1)
            for i in torch.nonzero(norms > 0).flatten().tolist():
                scale = float(norms[i]) ** 0.5
                ws.append(u[k, i, :in_dim] / scale)
                bs.append(u[k, i, in_dim] / scale)
                vs.append(sign * scale)
                owner.append(o)
    net = TwoLayerReLU(in_dim, max(len(ws), 1), len(solutions)).double()
    with torch.no_grad():
        net.hidden.weight.zero_()
        net.hidden.bias.zero_()
        net.out.weight.zero_()
        for j, (w, b, v, o) in enumerate(zip(ws, bs, vs, owner, strict=True)):
            net.hidden.weight[j] = w
            net.hidden.bias[j] = b
            net.out.weight[o, j] = v
    return net


def from_gated(solutions: list[torch.Tensor], gates: torch.Tensor, in_dim: int) -> GatedReLU:
    """The pruned gated network of per-output gated solutions, each (P, d+1)."""
    keep_g, keep_u, owner = [], [], []
    for o, u in enumerate(solutions):
        for i in torch.nonzero(u.norm(dim=1) > 0).flatten().tolist():
            keep_g.append(gates[i])
            keep_u.append(u[i])
            owner.append(o)
    m = max(len(keep_u), 1)
    g = torch.stack(keep_g) if keep_g else torch.zeros(1, in_dim + 1, dtype=gates.dtype)
    w = torch.stack(keep_u) if keep_u else torch.zeros(1, in_dim + 1, dtype=gates.dtype)
    readout = torch.zeros(len(solutions), m, dtype=gates.dtype)
    for j, o in enumerate(owner):
        readout[o, j] = 1.0
    return GatedReLU(g, w, readout)


def two_layer_objective(
    net: TwoLayerReLU, x: torch.Tensor, y: torch.Tensor, lam: float, loss: str = "squared"
) -> float:
    """(1/(2N))‖f(X) − y‖² (or the mean logistic loss, y = ±1) + (λ/2)(‖W‖² + ‖b‖² + ‖V‖²)."""
    with torch.no_grad():
        f = net(x.to(net.hidden.weight.dtype))
        y = y.to(f.dtype).reshape(f.shape)
        if loss == "squared":
            data = float(((f - y) ** 2).sum()) / (2 * len(x))
        else:
            data = float(torch.nn.functional.softplus(-y * f).sum()) / len(x)
        pen = sum(float((p * p).sum()) for p in net.parameters())
    return data + lam / 2 * pen
