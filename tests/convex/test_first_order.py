"""The first-order solvers, screening and λ paths against cvxpy and against each other."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from depthlab.convex import exact_patterns, fit_convex
from depthlab.convex.auglag import multiplier_norms, relu_auglag
from depthlab.convex.certify import relu_dual_norms
from depthlab.convex.gated import gated_first_order
from depthlab.convex.losses import make_loss
from depthlab.convex.path import fit_path, parse_lam_path
from depthlab.convex.programs import Program
from depthlab.convex.screening import DualPoint, group_norm_bounds, safe_to_drop
from depthlab.exceptions import SpecError
from depthlab.testing.cli import run_cli

from .test_convex import LAM, _cvxpy_optimum
from .toy import toy_regression

pytest.importorskip("cvxpy")


def _program(model: str, loss: str = "squared", n: int = 10) -> Program:
    x, y = toy_regression(n)
    xt = np.c_[x, np.ones(len(x))]
    d = torch.from_numpy(exact_patterns(xt).d.astype(np.float64))
    target = torch.from_numpy(y if loss == "squared" else np.where(y > 0, 1.0, -1.0))
    return Program(torch.from_numpy(xt), d, make_loss(loss, target), LAM, model)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_gated_first_order_reaches_the_cvxpy_optimum_with_a_valid_bound(loss: str) -> None:
    x, y = toy_regression()
    opt = _cvxpy_optimum(x, y if loss == "squared" else np.where(y > 0, 1.0, -1.0), "gated", loss)
    u, upper, lower, _, ok = gated_first_order(_program("gated", loss), tol=1e-7)
    assert ok
    assert lower <= opt + 1e-9 <= upper + 2e-9
    assert abs(upper - opt) <= 1e-6 * abs(opt)
    assert u.shape[0] == _program("gated", loss).d.shape[1]


def test_relu_auglag_brackets_the_cvxpy_optimum() -> None:
    x, y = toy_regression()
    opt = _cvxpy_optimum(x, y, "relu", "squared")
    prog = _program("relu")
    u, upper, lower, _, _ = relu_auglag(prog, tol=1e-6, max_iter=1500)
    assert lower <= opt + 1e-9
    assert upper >= opt - 1e-9  # a real network's objective
    assert (upper - lower) / opt < 0.05  # first order: a few per cent after 1,500 iterations
    assert prog.violation(u) < 1e-3


def test_multiplier_bound_is_never_below_the_exact_cone_norm() -> None:
    prog = _program("relu")
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(len(prog.x), generator=gen, dtype=torch.float64) * 0.1
    n, p = prog.d.shape
    exact = relu_dual_norms(prog.x, prog.d, w, 0.0)  # NNLS on every pattern: the sup itself
    for refine in (0, 200):
        mu = torch.rand(2, n, p, generator=gen, dtype=torch.float64) * 0.05
        bound = multiplier_norms(prog.x, prog.d, w, mu, refine=refine)
        assert bool((bound >= exact - 1e-9).all())
    # refinement closes most of the distance to the exact sup from μ = 0
    plain = multiplier_norms(prog.x, prog.d, w, torch.zeros(2, n, p, dtype=torch.float64), refine=0)
    refined = multiplier_norms(
        prog.x, prog.d, w, torch.zeros(2, n, p, dtype=torch.float64), refine=500
    )
    assert float((refined - exact).max()) < 0.1 * float((plain - exact).max())


def test_gap_safe_screening_never_drops_a_group_of_the_optimum() -> None:
    prog = _program("gated", n=14)
    x, y = toy_regression(14)  # the same program, solved by the interior point
    u_opt = fit_convex(x, y, lam=LAM, model="gated", solver="working-set", tol=1e-10).weights[0]
    active = u_opt.norm(dim=1) > 1e-8 * float(u_opt.norm(dim=1).max())
    sigma = group_norm_bounds(prog.x, prog.d, float(torch.linalg.matrix_norm(prog.x, ord=2)))
    dropped_any = False
    for its in (50, 200, 1000):
        u, *_ = gated_first_order(prog, tol=0.0, max_iter=its, screen=False)
        pred = prog.predict(u)
        w = prog.loss.grad(pred)
        norms = ((prog.d * w[:, None]).T @ prog.x).norm(dim=1)
        dual = DualPoint(prog.loss, w, norms, prog.lam)
        drop = safe_to_drop(dual, prog.objective(u), sigma, prog.lam, prog.loss)
        assert not bool((drop & active).any())
        dropped_any |= bool(drop.any())
    assert dropped_any  # the rule is not vacuous here


def test_first_order_and_working_set_agree_through_fit_convex() -> None:
    x, y = toy_regression(12)
    a = fit_convex(x, y, lam=LAM, model="gated", solver="first-order", tol=5e-7)
    b = fit_convex(x, y, lam=LAM, model="gated", solver="working-set", tol=1e-9)
    assert a.certified and b.certified
    assert abs(a.objective - b.objective) <= 1e-6 * b.objective
    assert a.solver.startswith("first-order")


def test_max_seconds_returns_bounds_not_nothing() -> None:
    x, y = toy_regression(12)
    res = fit_convex(x, y, lam=LAM, model="relu", solver="first-order", max_seconds=0.05)
    assert math.isfinite(res.objective)
    assert res.lower_bound is not None and res.lower_bound <= res.objective


def test_lambda_path_warm_starts_match_cold_solves() -> None:
    x, y = toy_regression(10)
    lams = parse_lam_path("1e-1:1e-3:4")
    assert lams == pytest.approx((1e-1, 10**-1.666666, 10**-2.333333, 1e-3), rel=1e-5)
    path = fit_path(x, y, lams, model="gated", solver="first-order", tol=5e-7)
    assert path.complete and len(path.results) == 4
    objs = [r.objective for r in path.results]
    assert objs == sorted(objs, reverse=True)  # the optimum grows with λ
    for lam, res in zip(path.lams, path.results, strict=True):
        cold = fit_convex(x, y, lam=lam, model="gated", solver="working-set", tol=1e-9)
        assert abs(res.objective - cold.objective) <= 1e-6 * cold.objective
        assert res.certified


@pytest.mark.parametrize("text", ["1e-1:1e-4", "a:b:3", "1e-1:0:3", "1e-1:1e-2:0"])
def test_bad_lambda_path_is_one_clear_error(text: str) -> None:
    with pytest.raises(SpecError, match="START:STOP:COUNT"):
        parse_lam_path(text)


def test_cli_lambda_path_and_its_errors(tmp_path: Path) -> None:
    x, y = toy_regression(10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "path.json"
    args = ["convex", "fit", "--data", str(tmp_path / "d.npz"), "--model", "gated"]
    proc = run_cli(
        *args, "--lam-path", "1e-1:1e-2:3", "--solver", "working-set", "--json", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["complete"] and len(doc["path"]) == 3
    assert all(p["certified"] for p in doc["path"])
    both = run_cli(*args, "--lam", "0.01", "--lam-path", "1e-1:1e-2:3")
    assert both.returncode == 2 and "exactly one of --lam or --lam-path" in both.stderr
    assert len(both.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_first_order_runs_on_the_device_of_the_data() -> None:
    x, y = toy_regression(12)
    xc = torch.from_numpy(x).cuda()
    res = fit_convex(xc, torch.from_numpy(y).cuda(), lam=LAM, model="gated", patterns=50)
    ref = fit_convex(x, y, lam=LAM, model="gated", patterns=50)
    assert abs(res.objective - ref.objective) <= 1e-6 * ref.objective
