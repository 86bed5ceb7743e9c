"""Gated ReLU to ReLU by cone decomposition: exact predictions, a feasible ReLU objective, and
an honest error where no split exists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from depthlab.convex import fit_convex, targets
from depthlab.convex.recover import cone_decompose, relu_from_gated
from depthlab.testing.cli import run_cli

from .toy import toy_regression as _data

LAM = 1e-2


@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("patterns", ["exact", 40])
def test_recovered_relu_net_predicts_like_gated_and_is_feasible(
    loss: str, patterns: str | int
) -> None:
    x, y = _data()
    labels = y if loss == "squared" else (y > 0).astype(int)
    gated = fit_convex(x, labels, lam=LAM, model="gated", loss=loss, patterns=patterns, tol=1e-9)
    relu = fit_convex(x, labels, lam=LAM, model="relu", loss=loss, tol=1e-9)
    assert relu.certified  # the reference: the certified ReLU optimum over all patterns
    rec = relu_from_gated(
        gated.weights, gated.gates, torch.from_numpy(x), targets(labels, loss), LAM, loss
    )
    assert rec.exact
    assert rec.neurons > 0 and rec.net.hidden.weight.shape[0] == rec.neurons
    # predictions: the ReLU net against the gated module, computed independently
    with torch.no_grad():
        f_relu = rec.net(torch.from_numpy(x))
        f_gated = gated.module()(torch.from_numpy(x))
    assert torch.allclose(f_relu, f_gated, rtol=0, atol=1e-6)
    assert rec.max_error <= 1e-6
    # the gated value is the gated program's optimum; the ReLU net is a feasible ReLU network
    assert rec.gated_objective == pytest.approx(gated.objective, rel=1e-9)
    assert rec.objective >= relu.objective * (1 - 1e-9)
    # and its objective is what two_layer_objective says of the returned module
    assert rec.to_dict()["objective_difference"] == pytest.approx(
        rec.objective - gated.objective, rel=1e-9, abs=1e-12
    )


def test_split_lies_in_the_cone_and_reproduces_the_gated_neuron() -> None:
    x, _ = _data(12, seed=3)
    xt = torch.from_numpy(np.c_[x, np.ones(len(x))])
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        g = torch.randn(3, generator=gen, dtype=torch.float64)
        u = torch.randn(3, generator=gen, dtype=torch.float64)
        on = (xt @ g >= 0).to(torch.float64)
        part = cone_decompose(xt, on, u)
        sign = 2 * on - 1
        assert float((sign * (xt @ part.a)).min()) >= -1e-12
        assert float((sign * (xt @ part.b)).min()) >= -1e-12
        assert torch.allclose(
            torch.relu(xt @ part.a) - torch.relu(xt @ part.b), on * (xt @ u), atol=1e-9
        )
        assert part.exact and part.residual <= 1e-9


def test_no_split_exists_reports_the_error() -> None:
    # Without a bias column the points 1 and −1 both on a zero gate leave K = {0}: a non-zero
    # u cannot be split, and the error must say by how much (|u| on each point).
    xt = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    part = cone_decompose(xt, torch.ones(2, dtype=torch.float64), torch.tensor([0.7]))
    assert not part.exact
    assert part.residual == pytest.approx(0.7, rel=1e-6)


def test_cli_gated_fit_reports_relu_recovery(tmp_path: Path) -> None:
    x, y = _data()
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    out = tmp_path / "fit.json"
    proc = run_cli(
        "convex", "fit", "--data", str(path), "--lam", str(LAM), "--model", "gated",
        "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    rec = res["relu_recovery"]
    assert rec["max_error"] <= 1e-6 and rec["exact"] is True
    assert rec["neurons"] >= res["neurons"]
    assert rec["objective"] >= res["objective"] * (1 - 1e-9)
    assert rec["gated_objective"] == pytest.approx(res["objective"], rel=1e-9)


def test_split_penalty_is_the_per_gate_optimum_of_cvxpy() -> None:
    # min ‖a‖ + ‖b‖ over a − b = u, a and b in the gate's cone, written independently in cvxpy
    cp = pytest.importorskip("cvxpy")
    x, y = _data()
    gated = fit_convex(x, y, lam=LAM, model="gated", tol=1e-9)
    xt = np.c_[x, np.ones(len(x))]
    u = gated.weights[0]
    for i in torch.nonzero(u.norm(dim=1) > 0).flatten().tolist()[:4]:
        on = (xt @ gated.gates[i].numpy() >= 0).astype(float)
        part = cone_decompose(torch.from_numpy(xt), torch.from_numpy(on), u[i])
        a, b = cp.Variable(3), cp.Variable(3)
        s = (2 * on - 1)[:, None] * xt
        prob = cp.Problem(
            cp.Minimize(cp.norm(a) + cp.norm(b)),
            [s @ a >= 0, s @ b >= 0, a - b == u[i].numpy()],
        )
        prob.solve(solver=cp.CLARABEL)
        assert float(part.a.norm() + part.b.norm()) == pytest.approx(prob.value, rel=1e-6)
