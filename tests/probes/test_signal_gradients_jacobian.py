"""Signal, gradient, Jacobian and mean-field probes against oracles and theory."""

from __future__ import annotations

import math

import pytest
import torch

from depthlab import ArchSpec, ProbeError, build_model
from depthlab.probes import ProbeBatch
from depthlab.probes.gradients import GradientsProbe
from depthlab.probes.jacobian import JacobianProbe
from depthlab.probes.meanfield import MeanFieldProbe
from depthlab.probes.signal import SignalProbe
from depthlab.theory import analyse


def _batch(n=64, d=10, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return ProbeBatch.from_tensors(torch.randn(n, d, generator=gen), torch.arange(n) % classes)


def test_signal_statistics_match_a_direct_computation():
    model = build_model(ArchSpec(depth=3, width=32, act="tanh"), in_shape=(10,), out_dim=3)
    batch = _batch()
    result = SignalProbe().run(model, batch)
    h, expected = batch.x, []
    with torch.no_grad():
        for block in list(model)[:-1]:
            pre = block[0](h)
            expected.append((pre.mean().item(), pre.var().item(), pre.pow(2).mean().item()))
            h = block(h)
        expected.append(
            (lambda o: (o.mean().item(), o.var().item(), o.pow(2).mean().item()))(model[-1](h))
        )
    got = [v for r in result["layers"] for v in (r["mean"], r["var"], r["second_moment"])]
    assert got == pytest.approx([v for row in expected for v in row], rel=1e-5, abs=1e-7)
    assert result["layers"][0]["name"] == "0.0"


def test_dead_relu_units_are_counted():
    model = build_model(ArchSpec(depth=1, width=8), in_shape=(10,), out_dim=3)
    with torch.no_grad():
        model[0][0].bias[:4] = -1e3  # four units never fire
    result = SignalProbe().run(model, _batch())
    assert result["layers"][0]["dead_fraction"] == pytest.approx(0.5)


def test_saturated_tanh_units_are_counted_and_relu_never_saturates():
    model = build_model(ArchSpec(depth=1, width=8, act="tanh"), in_shape=(10,), out_dim=3)
    with torch.no_grad():
        model[0][0].weight.mul_(1e4)
    assert SignalProbe().run(model, _batch())["layers"][0]["saturated_fraction"] > 0.9
    relu = build_model(ArchSpec(depth=1, width=8), in_shape=(10,), out_dim=3)
    assert SignalProbe().run(relu, _batch())["layers"][0]["saturated_fraction"] == 0.0


def test_gradient_norms_match_autograd():
    model = build_model(ArchSpec(depth=2, width=16), in_shape=(10,), out_dim=3)
    batch = _batch()
    result = GradientsProbe().run(model, batch)
    loss = batch.loss_fn(model(batch.x), batch.y)
    grads = torch.autograd.grad(loss, [model[0][0].weight, model[1][0].weight, model[2].weight])
    assert [r["grad_norm"] for r in result["layers"]] == pytest.approx(
        [g.norm().item() for g in grads], rel=1e-5
    )
    steps = GradientsProbe(GradientsProbe.Params(train_steps=3)).run(model, batch)["steps"]
    assert len(steps) == 3 and steps[0]["grad_norms"] == pytest.approx(
        [r["grad_norm"] for r in result["layers"]], rel=1e-5
    )


def test_output_gradient_norm_is_dloss_dlogits():
    model = build_model(ArchSpec(depth=2, width=16), in_shape=(10,), out_dim=3)
    batch = _batch()
    result = GradientsProbe().run(model, batch)
    logits = model(batch.x).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(batch.loss_fn(logits, batch.y), logits)
    assert result["layers"][-1]["delta_norm"] == pytest.approx(g.norm().item(), rel=1e-5)


@pytest.mark.parametrize(
    "spec,in_shape",
    [
        (ArchSpec(depth=3, width=12, act="tanh"), (6,)),
        (
            ArchSpec(
                family="resmlp",
                depth=2,
                width=12,
                norm="layer",
                residual="fixed",
                residual_alpha=0.5,
            ),
            (6,),
        ),
        (ArchSpec(family="cnn1d", depth=2, width=3, stride=2), (12,)),
    ],
)
def test_jacobian_spectrum_matches_autograd(spec, in_shape):
    model = build_model(spec, in_shape=in_shape, out_dim=4).double()
    x = torch.randn(5, *in_shape, dtype=torch.float64)
    batch = ProbeBatch.from_tensors(x, torch.arange(5) % 4)
    result = JacobianProbe(JacobianProbe.Params(samples=5)).run(model, batch)
    model.eval()
    oracle = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: model(v.unsqueeze(0))[0], xi)
        oracle += torch.linalg.svdvals(jac.reshape(4, -1)).tolist()
    assert result["singular_values"] == pytest.approx(sorted(oracle, reverse=True), rel=1e-8)


def test_meanfield_matches_monte_carlo_on_a_wide_net():
    # Width 1024, tanh in the chaotic phase: measured q and χ₁ within 5 % of theory.
    spec = ArchSpec(depth=24, width=1024, act="tanh", init="lecun", sigma_b=0.3)
    model = build_model(spec, in_shape=(1024,), out_dim=2).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(math.sqrt(2.5))
    x = torch.randn(128, 1024, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    result = MeanFieldProbe().run(model, ProbeBatch.from_tensors(x, torch.arange(128) % 2))
    theory = analyse(torch.tanh, sigma_w2=result["sigma_w2"], sigma_b2=result["sigma_b2"])
    assert result["sigma_w2"] == pytest.approx(2.5, rel=0.01)
    assert result["q_star"] == pytest.approx(theory.q_star)
    assert result["measured_q_last"] == pytest.approx(theory.q_star, rel=0.05)
    assert result["measured_chi1"] == pytest.approx(theory.chi1, rel=0.05)
    assert result["phase"] == "chaotic"


def test_meanfield_refuses_what_it_does_not_cover():
    model = build_model(
        ArchSpec(family="resmlp", depth=2, width=8, norm="batch"), in_shape=(4,), out_dim=2
    )
    with pytest.raises(ProbeError, match="this model has Residual"):
        MeanFieldProbe().run(model, _batch(d=4, classes=2))
    normed = build_model(ArchSpec(depth=2, width=8, norm="batch"), in_shape=(4,), out_dim=2)
    with pytest.raises(ProbeError, match="BatchNorm1d"):
        MeanFieldProbe().run(normed, _batch(d=4, classes=2))
