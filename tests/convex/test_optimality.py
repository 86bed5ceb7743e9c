"""The ``optimality`` probe: a global gap for two-layer nets, local facts for the others."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from depthlab.convex import TwoLayerReLU, fit_convex
from depthlab.convex.gap import train_two_layer
from depthlab.probes import ProbeBatch
from depthlab.probes.optimality import Optimality, OptimalityParams
from depthlab.spec import TrainSpec


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 2))
    return torch.from_numpy(x), torch.from_numpy(np.abs(x[:, 0]) - 0.5 * x[:, 1])


def test_two_layer_gap_agrees_with_the_convex_fit_and_restores_the_model() -> None:
    x, y = _data()
    net = train_two_layer(
        x, y, width=12, lam=0.01, train=TrainSpec(optimizer="adam", lr=0.01, epochs=200,
                                                  batch_size=0)
    )  # fmt: skip
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = Optimality(OptimalityParams(lam=0.01)).run(net, ProbeBatch.from_tensors(x, y))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    ref = fit_convex(x.numpy(), y.numpy(), lam=0.01)
    assert res["global_gap_available"] and res["certified"]
    assert res["optimum"] == ref.objective
    assert res["trained_objective"] >= res["lower_bound"]
    # the convex optimum's own network has (numerically) no gap
    opt = Optimality(OptimalityParams(lam=0.01)).run(ref.module(), ProbeBatch.from_tensors(x, y))
    assert abs(opt["gap"]) <= 1e-8 * ref.objective


def test_deeper_net_reports_local_facts_and_no_global_gap() -> None:
    x, y = _data()
    torch.manual_seed(0)
    deep = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    deep = deep.double()
    res = Optimality(OptimalityParams(lam=0.01)).run(deep, ProbeBatch.from_tensors(x, y))
    assert res["global_gap_available"] is False
    assert "no global optimum" in res["statement"]
    # the gradient against a finite difference of the same penalised objective
    p0 = deep[0].bias
    with torch.no_grad():

        def obj() -> float:
            out = deep(x).reshape(-1)
            pen = sum(float((p**2).sum()) for p in deep.parameters())
            return float(((out - y) ** 2).mean()) + 0.005 * pen

        h = 1e-6
        base = obj()
        p0[0] += h
        fd = (obj() - base) / h
        p0[0] -= h
    assert res["gradient_norm"] >= abs(fd) * 0.99
    assert res["hessian_min_eigenvalue"] <= res["hessian_max_eigenvalue"]
    assert res["critical_point"] in ("saddle", "local minimum")


def test_two_layer_module_is_recognised() -> None:
    from depthlab.probes.optimality import two_layer_parts

    assert two_layer_parts(TwoLayerReLU(3, 5)) is not None
    assert two_layer_parts(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))) is None
