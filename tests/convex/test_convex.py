"""The convex programs against cvxpy, the patterns against counting, recovery against the model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depthlab.convex import exact_patterns, fit_convex, sampled_patterns, two_layer_objective
from depthlab.convex.patterns import max_patterns
from depthlab.convex.programs import Program
from depthlab.exceptions import DataError, SpecError

from .toy import toy_regression as _data

cp = pytest.importorskip("cvxpy")

LAM = 1e-2


def _cvxpy_optimum(x: np.ndarray, y: np.ndarray, model: str, loss: str) -> float:
    """The same program written independently in cvxpy (Clarabel), on the same patterns."""
    xt = np.c_[x, np.ones(len(x))]
    d = exact_patterns(xt).d.astype(float)
    n, p = d.shape
    u = cp.Variable((p, xt.shape[1]))
    cons = []
    if model == "gated":
        pred = cp.sum(cp.multiply(d, xt @ u.T), axis=1)
        pen = cp.sum(cp.norm(u, 2, axis=1))
    else:
        v = cp.Variable((p, xt.shape[1]))
        pred = cp.sum(cp.multiply(d, xt @ (u - v).T), axis=1)
        pen = cp.sum(cp.norm(u, 2, axis=1)) + cp.sum(cp.norm(v, 2, axis=1))
        s = 2 * d - 1
        cons = [cp.multiply(s, xt @ u.T) >= 0, cp.multiply(s, xt @ v.T) >= 0]
    if loss == "squared":
        data = cp.sum_squares(pred - y) / (2 * n)
    else:
        data = cp.sum(cp.logistic(-cp.multiply(y, pred))) / n
    prob = cp.Problem(cp.Minimize(data + LAM * pen), cons)
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return float(prob.value)


@pytest.mark.parametrize("model", ["relu", "gated"])
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_optimum_matches_cvxpy(model: str, loss: str) -> None:
    x, y = _data()
    target = y if loss == "squared" else np.where(y > 0, 1.0, -1.0)
    res = fit_convex(
        x,
        target if loss == "squared" else (y > 0).astype(int),
        lam=LAM,
        model=model,
        loss=loss,
        tol=1e-9,
    )
    ref = _cvxpy_optimum(x, target, model, loss)
    assert res.certified
    assert res.exact_patterns
    assert abs(res.objective - ref) <= 1e-6 * ref
    # weak duality: the certified interval holds the reference optimum
    assert res.lower_bound is not None
    assert res.lower_bound <= ref * (1 + 1e-9)
    assert res.objective >= ref * (1 - 1e-6)


@pytest.mark.parametrize("model", ["relu", "gated"])
def test_recovered_module_predicts_like_the_convex_model(model: str) -> None:
    x, y = _data()
    res = fit_convex(x, y, lam=LAM, model=model, tol=1e-9)
    net = res.module()
    xt = torch.from_numpy(np.c_[x, np.ones(len(x))])
    pats = exact_patterns(xt.numpy())
    prog = Program(xt, torch.from_numpy(pats.d.astype(float)), None, LAM, model)  # type: ignore[arg-type]
    convex_pred = prog.predict(res.weights[0])
    with torch.no_grad():
        net_pred = net(torch.from_numpy(x)).reshape(-1)
    assert torch.allclose(net_pred, convex_pred, rtol=0, atol=1e-9)
    if model == "relu":
        # pruned to the non-zero neurons, and its non-convex objective is the convex optimum
        assert net.hidden.weight.shape[0] == res.neurons
        obj = two_layer_objective(net, torch.from_numpy(x), torch.from_numpy(y), LAM)
        assert obj == pytest.approx(res.objective, rel=1e-9)


def test_exact_patterns_count_and_cover_samples() -> None:
    # In general position N points of rank r have 2 Σ_{k<r} C(N−1, k) cells (one is empty).
    for dim, n in ((1, 9), (2, 9), (2, 25)):
        rng = np.random.default_rng(n)
        xt = np.c_[rng.standard_normal((n, dim)), np.ones(n)]
        pats = exact_patterns(xt)
        assert pats.n_patterns == max_patterns(n, dim + 1) - 1
        assert (((xt @ pats.gates.T) >= 0) == pats.d).all()
        many = sampled_patterns(xt, 100_000, seed=1)
        exact = {bytes(c) for c in np.packbits(pats.d, axis=0).T}
        assert {bytes(c) for c in np.packbits(many.d, axis=0).T} <= exact


def test_exact_patterns_degenerate_points() -> None:
    # duplicates and three collinear points: fewer cells than general position, none missed
    x = np.array([[0, 0], [1, 1], [2, 2], [0, 1], [1, 0], [0, 0], [3, 1]], dtype=float)
    xt = np.c_[x, np.ones(len(x))]
    pats = exact_patterns(xt)
    many = sampled_patterns(xt, 200_000, seed=0)
    exact = {bytes(c) for c in np.packbits(pats.d, axis=0).T}
    assert {bytes(c) for c in np.packbits(many.d, axis=0).T} == exact


def test_sampled_patterns_give_bounds_not_a_global_claim() -> None:
    x, y = _data()
    full = fit_convex(x, y, lam=LAM, tol=1e-9)
    few = fit_convex(x, y, lam=LAM, patterns=6, tol=1e-9)
    assert not few.exact_patterns
    assert few.objective >= full.objective * (1 - 1e-9)  # fewer patterns: an upper bound
    assert few.lower_bound is not None and few.lower_bound <= full.objective * (1 + 1e-9)
    if not few.certified:
        assert "sampled" in few.statement and "global optimum of" in few.statement


def test_multi_output_is_one_program_per_output() -> None:
    x, y = _data()
    both = fit_convex(x, np.c_[y, -0.5 * y], lam=LAM, model="gated", tol=1e-9)
    one = fit_convex(x, y, lam=LAM, model="gated", tol=1e-9)
    two = fit_convex(x, -0.5 * y, lam=LAM, model="gated", tol=1e-9)
    assert both.outputs == 2
    assert both.objective == pytest.approx(one.objective + two.objective, rel=1e-7)
    assert "per output" in both.statement
    with torch.no_grad():
        out = both.module()(torch.from_numpy(x))
    assert out.shape == (len(x), 2)


def test_bad_input_is_one_clear_error() -> None:
    x, y = _data()
    with pytest.raises(SpecError, match="lam"):
        fit_convex(x, y, lam=0.0)
    with pytest.raises(SpecError, match="lam"):
        fit_convex(x, y, lam=-1.0)
    with pytest.raises(SpecError, match="rank"):
        fit_convex(np.random.default_rng(0).standard_normal((20, 5)), y[:1].repeat(20), lam=1.0)
    with pytest.raises(DataError, match="binary"):
        fit_convex(x, np.arange(len(x)) % 3, lam=LAM, loss="logistic")
    with pytest.raises(SpecError, match="choices"):
        fit_convex(x, y, lam=LAM, model="tanh")
    assert math.isfinite(fit_convex(x, y, lam=10.0).objective)  # λ above λ_max: all zero
