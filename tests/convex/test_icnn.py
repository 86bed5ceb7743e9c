"""Input-convex networks: conformance, convexity (probe and structure), ∇ICNN as a Brenier map."""

from __future__ import annotations

import pytest
import torch

import depthlab as dl
from depthlab.convex.brenier import fit_brenier, gaussian_ot_map, icnn_gradient
from depthlab.exceptions import SpecError
from depthlab.models import build_model
from depthlab.probes import ProbeBatch
from depthlab.probes.convexity import Convexity
from depthlab.testing import check_arch


def test_icnn_conformance_and_non_negative_hidden_weights() -> None:
    model = check_arch(dl.ArchSpec(family="icnn", depth=3, width=8, act="relu"),
                       in_shape=(3,), out_dim=2)  # fmt: skip
    for layer in model.hidden[1:]:
        assert bool((layer.weight >= 0).all())
    with pytest.raises(SpecError, match="convex"):
        build_model(dl.ArchSpec(family="icnn", depth=2, width=8, act="tanh"), in_shape=(3,),
                    out_dim=1)  # fmt: skip


def test_convexity_probe_tells_an_icnn_from_a_tanh_mlp() -> None:
    x = torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    batch = ProbeBatch.from_tensors(x, torch.zeros(400))
    f = build_model(dl.ArchSpec(family="icnn", depth=2, width=16, act="softplus"), in_shape=(2,),
                    out_dim=1, seed=1)  # fmt: skip
    # train it a little towards a non-convex target: parametrisation keeps it convex
    opt = torch.optim.Adam(f.parameters(), lr=0.05)
    for _ in range(100):
        loss = ((f(x).reshape(-1) - torch.sin(3 * x[:, 0])) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    res = Convexity().run(f, batch)
    assert res["structural"] and res["convex_on_samples"] and res["violating_fraction"] == 0.0
    mlp = build_model(dl.ArchSpec(family="mlp", depth=2, width=16, act="tanh"), in_shape=(2,),
                      out_dim=1, seed=1)  # fmt: skip
    control = Convexity().run(mlp, batch)
    assert not control["structural"] and not control["convex_on_samples"]
    assert control["max_violation"] > 1e-3


def test_gaussian_ot_map_closed_form() -> None:
    s1 = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    s2 = torch.tensor([[2.0, -0.5], [-0.5, 1.0]], dtype=torch.float64)
    a = gaussian_ot_map(s1, s2)
    assert torch.allclose(a, a.T)  # the gradient of a convex quadratic
    assert bool((torch.linalg.eigvalsh(a) > 0).all())
    assert torch.allclose(a @ s1 @ a, s2, atol=1e-12)  # pushes N(·, Σ₁) onto N(·, Σ₂)


def test_icnn_gradient_learns_the_brenier_map() -> None:
    torch.manual_seed(0)
    m1, m2 = torch.tensor([0.0, 0.0]), torch.tensor([1.0, -1.0])
    s1 = torch.tensor([[1.0, 0.3], [0.3, 0.5]])
    s2 = torch.tensor([[2.0, -0.5], [-0.5, 1.0]])
    f = build_model(dl.ArchSpec(family="icnn", depth=2, width=32, act="softplus"),
                    in_shape=(2,), out_dim=1, seed=0)  # fmt: skip
    fit_brenier(f, m1, s1, m2, s2, steps=800)
    x = (
        m1
        + torch.randn(4000, 2, generator=torch.Generator().manual_seed(5))
        @ torch.linalg.cholesky(s1).T
    )
    t = m2 + (x - m1) @ gaussian_ot_map(s1, s2).T
    scale = ((t - m2) ** 2).sum(1).mean().sqrt()
    err = float(((icnn_gradient(f, x) - t) ** 2).sum(1).mean().sqrt() / scale)
    # control: another linear map pushing μ onto ν (Cholesky factors), not the OT one
    wrong = (
        m2 + (x - m1) @ (torch.linalg.cholesky(s2) @ torch.linalg.inv(torch.linalg.cholesky(s1))).T
    )
    err_wrong = float(((wrong - t) ** 2).sum(1).mean().sqrt() / scale)
    assert err < 0.12 < err_wrong
