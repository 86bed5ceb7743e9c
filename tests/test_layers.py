"""Building blocks: the critical init against quadrature and Monte Carlo, SELU, alpha-dropout,
residual scaling, norms."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

from depthlab import ArchSpec, build_model
from depthlab.layers import (
    SELU_ALPHA,
    SELU_LAMBDA,
    AlphaDropout,
    critical_sigma_w2_for,
    resolve_activation,
)
from depthlab.theory import chi1, q_star

SIGMA_B = math.sqrt(0.05)  # σ_b² = 0.05, a point on tanh's critical line (Schoenholz 2017)


def _gauss(f):
    """∫ Dz f(z) by adaptive quadrature: an oracle independent of the Gauss–Hermite code."""
    value, _ = integrate.quad(
        lambda z: f(z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi),
        -12,
        12,
        limit=200,
        epsabs=1e-13,
    )
    return value


def test_relu_critical_init_is_he():
    assert critical_sigma_w2_for(resolve_activation("relu"), 0.0) == pytest.approx(2.0, abs=1e-9)


def test_tanh_critical_init_has_chi1_one_by_independent_quadrature():
    sw2 = critical_sigma_w2_for(resolve_activation("tanh"), SIGMA_B)
    sb2 = SIGMA_B**2
    q = 1.0
    for _ in range(5000):  # the length map by scipy quadrature, to its fixed point
        q = sw2 * _gauss(lambda z, q=q: math.tanh(math.sqrt(q) * z) ** 2) + sb2
    slope = sw2 * _gauss(lambda z: (1 - math.tanh(math.sqrt(q) * z) ** 2) ** 2)
    assert abs(slope - 1.0) < 1e-3
    assert 1.6 < sw2 < 1.9


def _preactivation_variances(act, sigma_w2_scale, depth=100, width=512, seed=0):
    """Per-layer mean variance of the pre-activations h^l through a critical-init MLP."""
    spec = ArchSpec(
        family="mlp",
        depth=depth,
        width=width,
        act=act,
        init="critical",
        sigma_b=0.0 if act == "relu" else SIGMA_B,
    )
    model = build_model(spec, in_shape=(width,), out_dim=1, seed=seed).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(math.sqrt(sigma_w2_scale))
    act_def = resolve_activation(act)
    sw2 = critical_sigma_w2_for(act_def, spec.sigma_b) * sigma_w2_scale
    # Inputs at the length fixed point of the critical net, so every layer should stay at q*.
    q0 = (
        q_star(
            act_def.fn,
            sigma_w2=critical_sigma_w2_for(act_def, spec.sigma_b),
            sigma_b2=spec.sigma_b**2,
        )
        if act != "relu"
        else 1.0
    )
    x = torch.randn(256, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x * math.sqrt(max(q0 - spec.sigma_b**2, 1e-12) / sw2)
    variances = []
    h = x
    with torch.no_grad():
        for block in list(model)[:-1]:
            pre = block[0](h)
            variances.append(pre.var().item())
            h = block(h)
    return variances


def test_critical_tanh_keeps_the_variance_within_a_factor_2_through_100_layers():
    for seed in range(3):
        v = _preactivation_variances("tanh", 1.0, seed=seed)
        assert 0.5 < v[-1] / v[0] < 2.0, f"seed {seed}: variance ratio {v[-1] / v[0]:.3g}"


@pytest.mark.parametrize("scale", [0.8, 1.0, 1.25])
def test_relu_variance_map_matches_mean_field_per_layer(scale):
    # Mean field: q^{l+1} = (σ_w²/2) q^l. The Monte Carlo mean of the per-layer ratio over
    # 99 layers × 4 networks estimates σ_w²/2 to about ±0.6 %.
    ratios = []
    for seed in range(4):
        v = _preactivation_variances("relu", scale, seed=seed)
        ratios += [b / a for a, b in zip(v[:-1], v[1:], strict=True)]
    assert sum(ratios) / len(ratios) == pytest.approx(scale, rel=0.02)


def test_critical_relu_stays_near_its_variance_while_off_critical_vanishes_and_explodes():
    # One width-512 ReLU net is a product of 100 random layer gains: at criticality its variance
    # ratio is log-normal around 1 with a spread of about e^±1 (finite-width fluctuation,
    # Hanin & Nica 2019), while 0.8^99 ≈ 2.5e-10 and 1.25^99 ≈ 4e9 leave it far behind.
    for seed in range(3):
        critical = _preactivation_variances("relu", 1.0, seed=seed)
        small = _preactivation_variances("relu", 0.8, seed=seed)
        large = _preactivation_variances("relu", 1.25, seed=seed)
        assert 1 / 20 < critical[-1] / critical[0] < 20
        assert small[-1] / small[0] < 1e-6
        assert large[-1] / large[0] > 1e6


def _perturbation_growth(sigma_w2_scale, depth=100, width=512):
    """How a tiny input perturbation grows through a tanh net: χ₁^depth in mean-field theory."""
    spec = ArchSpec(
        family="mlp", depth=depth, width=width, act="tanh", init="critical", sigma_b=SIGMA_B
    )
    model = build_model(spec, in_shape=(width,), out_dim=1).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(math.sqrt(sigma_w2_scale))
    body = torch.nn.Sequential(*list(model)[:-1])
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(64, width, generator=gen, dtype=torch.float64) * 0.3
    dx = torch.randn(64, width, generator=gen, dtype=torch.float64) * 1e-7
    with torch.no_grad():
        first = torch.nn.functional.linear(dx, body[0][0].weight)  # the perturbation of h^1
        return ((body(x + dx) - body(x)).norm() ** 2 / first.norm() ** 2).item()


@pytest.mark.parametrize("scale", [0.8, 1.0, 1.25])
def test_tanh_perturbations_grow_as_chi1_to_the_depth(scale):
    # ‖δh^L‖² ≈ χ₁^(L−1) ‖δh^1‖²: χ₁^99 ≈ 1.3e-4 (ordered), 1 (critical), 2.9e3 (chaotic).
    sigma_w2 = critical_sigma_w2_for(resolve_activation("tanh"), SIGMA_B) * scale
    predicted = chi1(torch.tanh, sigma_w2=sigma_w2, sigma_b2=SIGMA_B**2) ** 99
    measured = _perturbation_growth(scale)
    assert predicted / 3 < measured < predicted * 3
    if scale != 1.0:
        assert abs(math.log10(measured)) > 2  # visibly vanishes or explodes


def test_selu_constants():
    # Klambauer et al. 2017: α and λ solve the fixed-point equations for (μ, ν) = (0, 1).
    assert SELU_ALPHA == pytest.approx(1.6732632423543772, abs=1e-6)
    assert SELU_LAMBDA == pytest.approx(1.0507009873554805, abs=1e-6)
    mean = _gauss(lambda z: SELU_LAMBDA * (z if z > 0 else SELU_ALPHA * (math.exp(z) - 1)))
    second = _gauss(lambda z: (SELU_LAMBDA * (z if z > 0 else SELU_ALPHA * (math.exp(z) - 1))) ** 2)
    assert abs(mean) < 1e-6 and abs(second - 1.0) < 1e-6
    x = torch.linspace(-3, 3, 101)
    assert torch.allclose(resolve_activation("selu").fn(x), torch.selu(x))


def test_alpha_dropout_keeps_mean_and_variance():
    drop = AlphaDropout(0.2).train()
    # Not seed 0: the mask comes from the global generator, seeded 0 by the test fixture, and
    # the same stream would correlate the mask with x.
    x = torch.selu(torch.randn(2_000_000, generator=torch.Generator().manual_seed(12345)))
    y = drop(x)
    assert abs(y.mean().item()) < 5e-3 and abs(y.var().item() - 1.0) < 5e-3
    assert torch.equal(drop.eval()(x), x)
    assert (y == drop.a * drop.alpha_prime + drop.b).float().mean().item() == pytest.approx(
        0.2, abs=2e-3
    )


@pytest.mark.parametrize(
    "residual,alpha,bounded",
    [
        ("none", 1.0, False),
        ("inv_sqrt_depth", 1.0, True),
        ("rezero", 1.0, True),
    ],
)
def test_residual_scaling_controls_variance_growth(residual, alpha, bounded):
    depth = 32
    spec = ArchSpec(
        family="resmlp",
        depth=depth,
        width=256,
        act="relu",
        init="he",
        residual=residual,
        residual_alpha=alpha,
    )
    model = build_model(spec, in_shape=(256,), out_dim=1).double()
    x = torch.randn(512, 256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        h0 = model[0](x)
        h = torch.nn.Sequential(*list(model)[1 : depth + 1])(h0)
    growth = (h.var() / h0.var()).item()
    if bounded:
        assert growth <= math.e * 1.2
    else:
        # Unit-gain branches: (1 + α²)^L = 2^32 in mean-field theory.
        assert growth > 1e6


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("mish", lambda x: x * torch.tanh(torch.log1p(torch.exp(x)))),
        ("hardtanh", lambda x: x.clamp(-1.0, 1.0)),
    ],
)
def test_mish_and_hardtanh_are_their_formulas_as_function_and_layer(name, reference):
    x = torch.linspace(-6, 6, 241, dtype=torch.float64)
    act = resolve_activation(name)
    assert torch.allclose(act.fn(x), reference(x), atol=1e-12)
    assert torch.allclose(act.module()(x), reference(x), atol=1e-12)
    # they build networks like every registered activation
    net = build_model(ArchSpec(depth=3, width=8, act=name), in_shape=(4,), out_dim=2, seed=0)
    assert torch.isfinite(net(torch.randn(5, 4))).all()
