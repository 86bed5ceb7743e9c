"""Networks from convex solutions, and the non-convex objective they are held against.

A ReLU-program solution gives one neuron per non-zero block (Pilanci & Ergen 2020):
w = u/√‖u‖, v = √‖u‖ for u_i and v = −√‖u'_i‖ for u'_i, so that v·relu(w̃ᵀx̃) = relu(x̃ᵀu) and
(λ/2)(‖w‖² + v²) = λ‖u‖: the network's objective equals the convex one wherever the cone
constraints hold. Several outputs (one program each) stack their neurons, each output reading
only its own.

A gated-ReLU solution becomes a ReLU network by splitting each weight over its gate's cone
(``relu_from_gated``), two neurons per gate, with the error of the split stated.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

__all__ = [
    "TwoLayerReLU",
    "GatedReLU",
    "ConeSplit",
    "ReLURecovery",
    "two_layer_objective",
    "from_relu",
    "from_gated",
    "cone_decompose",
    "relu_from_gated",
]


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


@dataclasses.dataclass(frozen=True, eq=False)
class ConeSplit:
    """u = a − b with a, b in the cone K = {w : (2D − I)X̃w ≥ 0} of one pattern D.

    ``residual`` is max_n |(D X̃(a − b − u))_n|: zero when the split is exact on the data."""

    a: torch.Tensor
    b: torch.Tensor
    residual: float
    exact: bool


def cone_decompose(x: torch.Tensor, on: torch.Tensor, u: torch.Tensor) -> ConeSplit:
    """Split one gated-ReLU weight u into two ReLU neurons a, b of the gate's pattern.

    ``x`` (N, d) the data with its bias column, ``on`` (N,) the pattern 1[X̃g ≥ 0], ``u`` (d,).
    For a, b ∈ K, relu(X̃a) − relu(X̃b) = D X̃(a − b), so an exact split makes the ReLU pair
    compute what the gated neuron computes on the data (Mishkin, Sahiner & Pilanci 2022, "Fast
    convex optimization for two-layer ReLU networks", cone decompositions: K − K = R^d when X̃
    has full column rank). What is used here is the sufficient condition behind it: if some h
    has (2D − I)X̃h > 0 strictly, then a = u + c, b = c with c = t·h for t large enough lies in
    both cones. With a bias column every pattern of a gate has such an h (shift the gate's
    bias up by less than the smallest |X̃g| of its off rows), so the split is then always exact.

    The small convex program solved: min ‖u + c‖ + ‖c‖ (the penalty of the pair, up to λ) over
    c with (2D − I)X̃c ≥ max(0, −(2D − I)X̃u), started from the feasible t·h (h from an LP that
    maximises the smallest margin). When no strict h exists the split falls back to the pair
    of cone points that best fits D X̃u in least squares, and ``residual`` says how far off it is.
    """
    from scipy.optimize import linprog, minimize

    x, on, u = x.to(torch.float64), on.to(torch.float64), u.to(torch.float64)
    xs = (2 * on - 1)[:, None] * x  # rows (2D − I) X̃
    xn, un = xs.numpy(), u.numpy()
    n, d = xn.shape
    # h: the direction deepest inside K (max s with X_s h ≥ s, |h|∞ ≤ 1)
    lp = linprog(
        np.r_[np.zeros(d), -1.0],
        A_ub=np.c_[-xn, np.ones(n)],
        b_ub=np.zeros(n),
        bounds=[(-1.0, 1.0)] * d + [(None, 1.0)],
        method="highs",
    )
    scale = max(float(np.abs(xn).max()), 1e-300)
    if lp.status == 0 and -lp.fun > 1e-9 * scale:
        h = lp.x[:d]
        need = np.maximum(0.0, -(xn @ un))
        margin = xn @ h
        c = max(float((need / margin).max()), 0.0) * h

        def pen(v: np.ndarray) -> float:
            return float(np.linalg.norm(un + v) + np.linalg.norm(v))

        if pen(c) > 0:
            opt = minimize(
                pen,
                c,
                method="SLSQP",
                constraints=[{"type": "ineq", "fun": lambda v: xn @ v - need, "jac": lambda v: xn}],
                options={"maxiter": 200, "ftol": 1e-12},
            )
            cand = np.asarray(opt.x, dtype=np.float64)
            short = need - xn @ cand  # SLSQP may leave tiny violations: push back along h
            cand = cand + max(float((short / margin).max()), 0.0) * h
            if pen(cand) < pen(c):
                c = cand
        a = torch.from_numpy(un + c)
        b = torch.from_numpy(c.copy())
    else:
        a, b = _least_squares_split(xn, on.numpy().astype(bool), un)
    diff = on * (x @ (a - b - u))
    residual = float(diff.abs().max()) if len(diff) else 0.0
    # a, b in K up to rounding: the ReLU pair then reproduces D X̃(a − b)
    viol = float(torch.clamp(-(xs @ torch.stack([a, b]).T), min=0).max()) if n else 0.0
    pred = torch.relu(x @ a) - torch.relu(x @ b)
    err = float((pred - on * (x @ u)).abs().max()) if n else 0.0
    tol = 1e-9 * max(float(u.norm()) * scale, 1e-300)
    return ConeSplit(a, b, max(residual, err), residual <= tol and viol <= tol)


def _least_squares_split(
    xn: np.ndarray, on: np.ndarray, un: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """min ‖D X̃(a − b − u)‖² over a, b in K, for a cone without interior (SLSQP, small d)."""
    from scipy.optimize import minimize

    d = len(un)
    xd = xn[on]  # the on rows, sign +1
    target = xd @ un
    cons = {"type": "ineq", "fun": lambda z: np.r_[xn @ z[:d], xn @ z[d:]]}

    def fit(z: np.ndarray) -> float:
        return float(((xd @ (z[:d] - z[d:]) - target) ** 2).sum())

    opt = minimize(fit, np.zeros(2 * d), method="SLSQP", constraints=[cons])
    z = np.asarray(opt.x, dtype=np.float64)
    if opt.status != 0 or float((np.r_[xn @ z[:d], xn @ z[d:]]).min()) < 0:
        z = np.zeros(2 * d)  # no feasible improvement: the empty pair, error reported
    return torch.from_numpy(z[:d].copy()), torch.from_numpy(z[d:].copy())


@dataclasses.dataclass(frozen=True, eq=False)
class ReLURecovery:
    """A ReLU network from a gated-ReLU solution, two neurons per gate, and its error.

    ``max_error`` = max_n |f_relu(x_n) − f_gated(x_n)| over the data and outputs; ``objective``
    the recovered network's non-convex objective (a feasible ReLU network, so ≥ the ReLU
    optimum); ``gated_objective`` the gated program's value on the same data."""

    net: TwoLayerReLU
    max_error: float
    objective: float
    gated_objective: float
    neurons: int
    exact: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            "max_error": self.max_error,
            "objective": self.objective,
            "gated_objective": self.gated_objective,
            "objective_difference": self.objective - self.gated_objective,
            "neurons": self.neurons,
            "exact": self.exact,
        }


def relu_from_gated(
    solutions: list[torch.Tensor],
    gates: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    lam: float,
    loss: str = "squared",
) -> ReLURecovery:
    """Cone-decompose every non-zero gated weight u_i = a_i − b_i (``cone_decompose``) and build
    the ReLU network with neurons a_i (v = +√‖a_i‖) and b_i (v = −√‖b_i‖), as ``from_relu``.

    ``solutions`` one (P, d+1) tensor per output, ``gates`` (P, d+1), ``x`` (N, d) without the
    bias column, ``y`` (N, outputs) as the program saw it (±1 for logistic)."""
    x = x.to(torch.float64)
    xt = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    pairs: list[torch.Tensor] = []
    exact = True
    for u in solutions:
        split = torch.zeros(2, *u.shape, dtype=torch.float64)
        for i in torch.nonzero(u.norm(dim=1) > 0).flatten().tolist():
            on = (xt @ gates[i].to(torch.float64) >= 0).to(torch.float64)
            part = cone_decompose(xt, on, u[i].to(torch.float64))
            split[0, i], split[1, i] = part.a, part.b
            exact = exact and part.exact
        pairs.append(split)
    net = from_relu(pairs, x.shape[1])
    gated = from_gated(solutions, gates, x.shape[1])
    with torch.no_grad():
        f_relu, f_gated = net(x), gated(x)
    err = float((f_relu - f_gated).abs().max()) if len(x) else 0.0
    yy = y.to(torch.float64).reshape(f_gated.shape)
    with torch.no_grad():
        if loss == "squared":
            data = float(((f_gated - yy) ** 2).sum()) / (2 * len(x))
        else:
            data = float(torch.nn.functional.softplus(-yy * f_gated).sum()) / len(x)
    gated_obj = data + lam * sum(float(u.norm(dim=1).sum()) for u in solutions)
    neurons = sum(int((p.norm(dim=-1) > 0).sum()) for p in pairs)
    return ReLURecovery(
        net=net,
        max_error=err,
        objective=two_layer_objective(net, x, y, lam, loss),
        gated_objective=gated_obj,
        neurons=neurons,
        exact=exact,
    )
