"""The edge of stability against a quadratic whose Hessian is known in closed form."""

from __future__ import annotations

import pytest
import torch

from depthlab.diagnosis.run import stability
from depthlab.probes import ProbeBatch


def test_linear_least_squares_has_its_known_top_eigenvalue():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=gen, dtype=torch.float64) * torch.tensor(
        [3.0, 1.0, 1.0, 0.5, 0.1], dtype=torch.float64
    )
    y = torch.randn(200, 1, generator=gen, dtype=torch.float64)
    model = torch.nn.Linear(5, 1, bias=False).double()
    batch = ProbeBatch.from_tensors(x, y)  # mean squared error: H = (2/N) XᵀX
    top = float(torch.linalg.eigvalsh(2 * x.T @ x / len(x))[-1])
    plain = stability(model, batch, {"optimizer": "sgd"})
    assert plain["lambda_max"] == pytest.approx(top, rel=1e-2)
    assert plain["stable_lr"] == pytest.approx(2 / top, rel=1e-2)
    heavy = stability(model, batch, {"optimizer": "momentum", "momentum": 0.9})
    assert heavy["stable_lr"] == pytest.approx(2 * 1.9 / top, rel=1e-2)
    # and gradient descent really is stable just below the bound and unstable above it
    for factor, grows in ((0.9, False), (1.1, True)):
        w = torch.zeros(5, 1, dtype=torch.float64)
        lr = factor * plain["stable_lr"]
        for _ in range(300):
            w = w - lr * (2 * x.T @ (x @ w - y) / len(x))
        assert bool(w.norm() > 1e3) == grows
