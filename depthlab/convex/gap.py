"""The optimality gap of a trained two-layer ReLU network: its objective against the optimum.

``train_two_layer`` trains f(x) = Σ_j v_j relu(w_jᵀ[x, 1]) (hidden bias, no output bias) on the
exact objective (1/(2N))‖f(X) − y‖² + (λ/2)Σ_j(‖w_j‖² + v_j²) — the penalty added to the loss,
not left to the optimiser's weight decay — with the optimiser, learning rate, schedule, batch
size and epochs of a ``TrainSpec``. ``optimality_gap`` does it for a run file and solves the
convex program on the same X̃ and y: trained − optimum is the gap, certified when the optimum is.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch

from depthlab.convex.fit import ConvexResult, fit_convex, targets
from depthlab.convex.recover import TwoLayerReLU, two_layer_objective
from depthlab.exceptions import DataError, SpecError
from depthlab.spec import RunSpec, TrainSpec

__all__ = ["GapResult", "train_two_layer", "optimality_gap", "project"]


@dataclasses.dataclass(frozen=True, eq=False)
class GapResult:
    trained_objective: float
    convex: ConvexResult
    width: int
    train_seconds: float
    projection: int | None
    by_width: tuple[tuple[int, float], ...] = ()

    @property
    def optimum(self) -> float | None:
        """The optimum, when certified (else only bounds are known)."""
        return self.convex.objective if self.convex.certified else None

    @property
    def gap(self) -> float:
        """trained − the convex objective: the gap when certified; otherwise the convex objective
        is only an upper bound on the optimum, and this a lower bound on the gap."""
        return self.trained_objective - self.convex.objective

    @property
    def gap_upper(self) -> float | None:
        """trained − lower bound: the gap is at most this."""
        low = self.convex.lower_bound
        return None if low is None else self.trained_objective - low

    def to_dict(self) -> dict[str, Any]:
        c = self.convex
        return {
            "trained_objective": self.trained_objective,
            "optimum": self.optimum,
            "upper_bound": c.objective,
            "lower_bound": c.lower_bound,
            "gap": self.gap,
            "gap_at_most": self.gap_upper,
            "certified": c.certified,
            "statement": c.statement,
            "width": self.width,
            "convex_neurons": c.neurons,
            "n_patterns": c.n_patterns,
            "projection": self.projection,
            "lam": c.lam,
            "loss": c.loss,
            "train_seconds": self.train_seconds,
            "convex_seconds": c.seconds,
            "width_vs_gap": [
                {"width": w, "trained_objective": obj, "gap": obj - c.objective}
                for w, obj in self.by_width
            ],
        }


def train_two_layer(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    width: int,
    lam: float,
    train: TrainSpec,
    loss: str = "squared",
    init_scale: float = 1.0,
) -> TwoLayerReLU:
    """Train the two-layer network on the penalised objective; float64, He-scaled Gaussian
    init (σ_w² = 2/fan_in on [W, b], v ~ N(0, 1/width)), seeded by ``train.seed``."""
    from depthlab.train.schedule import lr_at, make_optimizer

    gen = torch.Generator().manual_seed(train.seed)
    n, d = x.shape
    net = TwoLayerReLU(d, width, 1).double()
    with torch.no_grad():
        net.hidden.weight.copy_(torch.randn(width, d, generator=gen, dtype=torch.float64))
        net.hidden.bias.copy_(torch.randn(width, generator=gen, dtype=torch.float64))
        net.hidden.weight.mul_(init_scale * math.sqrt(2.0 / (d + 1)))
        net.hidden.bias.mul_(init_scale * math.sqrt(2.0 / (d + 1)))
        net.out.weight.copy_(
            torch.randn(1, width, generator=gen, dtype=torch.float64) / math.sqrt(width)
        )
    spec = dataclasses.replace(train, weight_decay=0.0)
    opt = make_optimizer(spec, net.parameters())
    batch = n if train.batch_size == 0 else min(train.batch_size, n)
    per_epoch = math.ceil(n / batch)
    x64, y64 = x.double(), y.double().reshape(-1)
    flush = torch.set_flush_denormal(True)  # weight decay drives weights into denormals: 10× slower
    step = 0
    try:
        for _ in range(train.epochs):
            order = torch.randperm(n, generator=gen) if batch < n else torch.arange(n)
            for i in range(0, n, batch):
                idx = order[i : i + batch]
                for group in opt.param_groups:
                    group["lr"] = lr_at(spec, step, per_epoch)
                f = net(x64[idx]).reshape(-1)
                if loss == "squared":
                    data = ((f - y64[idx]) ** 2).mean() / 2
                else:
                    data = torch.nn.functional.softplus(-y64[idx] * f).mean()
                pen = sum((p * p).sum() for p in net.parameters())
                total = data + lam / 2 * pen
                opt.zero_grad()
                total.backward()
                opt.step()
                step += 1
    finally:
        if flush:
            torch.set_flush_denormal(False)
    return net


def project(x: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` principal components of ``x`` (centred; fitted on ``x`` itself)."""
    if k < 1 or k > x.shape[1]:
        raise SpecError("project", f"{k!r} is not valid; expected 1..{x.shape[1]} (input features)")
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return xc @ vt[:k].T


def gap_data(spec: RunSpec, loss: str, projection: int | None) -> tuple[np.ndarray, torch.Tensor]:
    """X (N, d) and scalar targets (N,) of the run's training split, as its data spec prepares
    them (a binary label becomes ±1)."""
    from depthlab.data import load_data

    data = load_data(spec.data)
    x = data.x_train.double().reshape(len(data.x_train), -1).numpy()
    y = targets(data.y_train.numpy(), loss)
    if y.shape[1] != 1:
        raise DataError(
            f"{spec.data.name}: the gap needs one output (regression with one target or two "
            f"classes), got {y.shape[1]}; a network with shared hidden units and several outputs "
            "has no convex program here"
        )
    if projection is not None:
        x = project(x, projection)
    return x, y[:, 0]


def optimality_gap(
    spec: RunSpec,
    lam: float,
    *,
    loss: str = "squared",
    patterns: str | int = "exact",
    projection: int | None = None,
    max_seconds: float = math.inf,
    widths: tuple[int, ...] = (),
) -> GapResult:
    """Train the run's two-layer network with the penalty and hold it against the optimum;
    ``widths`` also trains the same run at each of these widths (width vs gap, one optimum)."""
    if spec.arch.family != "mlp" or spec.arch.depth != 1:
        raise SpecError(
            "arch",
            f"family {spec.arch.family!r} depth {spec.arch.depth} is not a two-layer network; "
            "the convex gap needs family mlp, depth 1 (one hidden ReLU layer)",
        )
    if not (lam > 0 and math.isfinite(lam)):
        raise SpecError("lam", f"{lam!r} is not valid; expected a number > 0")
    x, y = gap_data(spec, loss, projection)
    width = spec.arch.widths()[0]
    t0 = time.perf_counter()
    net = train_two_layer(torch.from_numpy(x), y, width=width, lam=lam, train=spec.train, loss=loss)
    seconds = time.perf_counter() - t0
    trained = two_layer_objective(net, torch.from_numpy(x), y, lam, loss)
    by_width = []
    for w in widths:
        if w < 1:
            raise SpecError("widths", f"{w!r} is not valid; expected widths >= 1")
        other = train_two_layer(
            torch.from_numpy(x), y, width=w, lam=lam, train=spec.train, loss=loss
        )
        by_width.append((w, two_layer_objective(other, torch.from_numpy(x), y, lam, loss)))
    convex = fit_convex(
        x, y.numpy(), lam=lam, loss=loss, patterns=patterns, max_seconds=max_seconds
    )
    return GapResult(trained, convex, width, seconds, projection, tuple(by_width))
