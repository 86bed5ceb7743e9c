"""The hypernet family: generated weights (shapes, gradients, the per-sample target they
define), the two parametrizations, conformance, training and diagnosis."""

from __future__ import annotations

import math

import pytest
import torch

from depthlab import ArchSpec, SpecError, build_model
from depthlab.models.hypernet import HyperNet
from depthlab.testing import check_arch

SPEC = ArchSpec(family="hypernet", depth=2, width=16, target_depth=2, target_width=8)


@pytest.mark.parametrize("parametrization", ["default", "mip"])
def test_generated_weights_have_the_target_shapes_and_define_its_output(parametrization):
    model = build_model(SPEC.replace(parametrization=parametrization), in_shape=(6,), out_dim=3)
    assert isinstance(model, HyperNet)
    x = torch.randn(5, 6)
    z, u = x[:, :1], x[:, 1:]
    layers = model.generate(z)
    assert [tuple(w.shape) for w, _ in layers] == [(5, 8, 5), (5, 8, 8), (5, 3, 8)]
    assert [tuple(b.shape) for _, b in layers] == [(5, 8), (5, 8), (5, 3)]
    assert model.n_theta == 8 * 5 + 8 + 8 * 8 + 8 + 3 * 8 + 3
    # sample by sample, the output is a plain MLP with that sample's weights
    out = model(x)
    for n in range(5):
        h = u[n]
        for i, (w, b) in enumerate(layers):
            h = w[n] @ h / math.sqrt(w.shape[2]) + b[n]
            if i < 2:
                h = torch.relu(h)
        torch.testing.assert_close(out[n], h)


def test_gradients_reach_the_generated_weights_and_the_hypernetwork():
    model = build_model(SPEC.replace(parametrization="mip"), in_shape=(6,), out_dim=3, seed=2)
    x = torch.rand(7, 6)
    layers = model.generate(x[:, :1])
    for w, _ in layers:
        w.retain_grad()
    h = x[:, 1:]
    for i, ((w, b), lin) in enumerate(zip(layers, model.target, strict=True)):
        h = lin(h, w, b)
        h = torch.relu(h) if i < 2 else h
    h.square().sum().backward()
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w, _ in layers)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.theta0.grad.abs().sum() > 0


def test_default_output_scales_with_the_conditioning_input_and_mip_does_not():
    """Ortiz et al.'s magnitude proportionality: with a bias-free ReLU hypernetwork
    θ(αz) = αθ(z); MIP's encoding has unit norm, so θ₀ + H(enc) does not grow with z."""
    plain = build_model(SPEC.replace(bias=False), in_shape=(4,), out_dim=2, seed=1)
    z = torch.rand(3, 1) + 0.1
    theta = torch.cat([w.flatten(1) for w, _ in plain.generate(z)], 1)
    theta5 = torch.cat([w.flatten(1) for w, _ in plain.generate(5 * z)], 1)
    torch.testing.assert_close(theta5, 5 * theta)
    mip = build_model(SPEC.replace(parametrization="mip"), in_shape=(4,), out_dim=2, seed=1)
    enc = mip.encode(torch.rand(10, 1) * 10)
    torch.testing.assert_close(enc.norm(dim=1), torch.ones(10))


@pytest.mark.parametrize("parametrization", ["default", "mip"])
@pytest.mark.parametrize("norm", ["none", "layer"])
def test_conformance(parametrization, norm):
    spec = SPEC.replace(parametrization=parametrization, norm=norm, act="tanh", dropout=0.1)
    check_arch(spec, in_shape=(9,), out_dim=4)


def test_spec_errors_name_the_field():
    with pytest.raises(SpecError, match="cond_dim"):
        build_model(SPEC.replace(cond_dim=4), in_shape=(4,), out_dim=2)
    with pytest.raises(SpecError, match="parametrization"):
        ArchSpec(family="hypernet", parametrization="magnitude")
    with pytest.raises(SpecError, match="residual"):
        build_model(SPEC.replace(residual="fixed"), in_shape=(4,), out_dim=2)
