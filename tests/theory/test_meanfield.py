"""Mean-field theory against closed forms, scipy quadrature and Monte Carlo on wide random nets."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, optimize

from depthlab.exceptions import SpecError
from depthlab.theory import (
    analyse,
    c_star,
    chi1,
    correlation_map,
    critical_sigma_w2,
    depth_scales,
    expect_1d,
    expect_2d,
    length_map,
    q_star,
)

Act = Callable[[torch.Tensor], torch.Tensor]


def gauss_quad(f: Callable[[float], float]) -> float:
    """∫Dz f(z) by adaptive scipy quadrature: the independent reference."""
    pdf = 1.0 / math.sqrt(2.0 * math.pi)
    return float(
        integrate.quad(
            lambda z: f(z) * pdf * math.exp(-z * z / 2),
            -40,
            40,
            epsabs=1e-13,
            epsrel=1e-13,
            limit=400,
        )[0]
    )


def sech4(x: float) -> float:
    return 1.0 / math.cosh(x) ** 4 if abs(x) < 300 else 0.0


# ---------------------------------------------------------------- quadrature


def test_quadrature_moments_and_relu() -> None:
    assert expect_1d(lambda z: z**2) == pytest.approx(1.0, abs=1e-13)
    assert expect_1d(lambda z: z**4) == pytest.approx(3.0, abs=1e-12)
    for q in (0.3, 1.0, 7.0):
        # E[relu(√q z)²] = q/2 exactly: even node count, symmetric nodes, none at 0.
        assert expect_1d(lambda z, q=q: torch.relu(math.sqrt(q) * z) ** 2) == pytest.approx(
            q / 2, rel=1e-13
        )
    assert expect_2d(lambda a, b: a**2 * b**2) == pytest.approx(1.0, abs=1e-13)


@pytest.mark.parametrize("q", [0.5, 2.0])
def test_quadrature_tanh_prime_squared_vs_scipy(q: float) -> None:
    s = math.sqrt(q)
    ours = expect_1d(lambda z: (1 - torch.tanh(s * z) ** 2) ** 2)  # default 160 nodes
    assert ours == pytest.approx(gauss_quad(lambda z: sech4(s * z)), rel=1e-7)


@pytest.mark.parametrize("c", [-0.6, 0.3, 0.95])
def test_quadrature_2d_correlated_pairs(c: float) -> None:
    r = math.sqrt(1 - c * c)
    # (z₁, c z₁ + r z₂) is a unit Gaussian pair with correlation c: E[cos u₁ cos u₂] closed form.
    ours = expect_2d(lambda a, b: torch.cos(a) * torch.cos(c * a + r * b))
    assert ours == pytest.approx(0.5 * (math.exp(c - 1) + math.exp(-c - 1)), abs=1e-13)
    # Arc-cosine kernel (Cho & Saul 2009); the skew kink limits the product rule to ~1e-3.
    relu = expect_2d(lambda a, b: torch.relu(a) * torch.relu(c * a + r * b))
    assert relu == pytest.approx((r + (math.pi - math.acos(c)) * c) / (2 * math.pi), abs=2e-3)


def test_chi1_stays_accurate_at_large_q() -> None:
    # tanh′(√q z)² narrows as q grows; reference by quad in x = √q z over N(0, q).
    q = 30.0
    ref = (
        2
        * integrate.quad(
            lambda x: sech4(x) * math.exp(-x * x / (2 * q)),
            0,
            60,
            epsabs=1e-15,
            epsrel=1e-13,
            limit=400,
        )[0]
        / math.sqrt(2 * math.pi * q)
    )
    assert chi1(torch.tanh, sigma_w2=1.0, sigma_b2=0.0, q=q) == pytest.approx(ref, rel=1e-8)


def test_quadrature_rejects_odd_node_count() -> None:
    with pytest.raises(SpecError, match="even"):
        expect_1d(lambda z: z, n=7)


# ---------------------------------------------------------------- ReLU closed forms


@pytest.mark.parametrize("sigma_w2", [1.0, 2.0, 3.5])
def test_relu_chi1_is_half_sigma_w2_for_any_q(sigma_w2: float) -> None:
    for q in (0.0, 1e-3, 1.0, 50.0):
        assert chi1(torch.relu, sigma_w2=sigma_w2, sigma_b2=0.1, q=q) == pytest.approx(
            sigma_w2 / 2, rel=1e-13
        )


def test_relu_fixed_points_and_depth_scale() -> None:
    # q* = σ_b² / (1 − σ_w²/2), and the length map is linear with slope σ_w²/2 = e^{−1/ξ_q}.
    assert q_star(torch.relu, sigma_w2=1.5, sigma_b2=0.1) == pytest.approx(0.4, rel=1e-11)
    assert q_star(torch.relu, sigma_w2=1.5, sigma_b2=0.0) == 0.0
    assert q_star(torch.relu, sigma_w2=2.5, sigma_b2=0.0) == math.inf
    assert q_star(torch.relu, sigma_w2=2.0, sigma_b2=0.0, q0=3.7) == 3.7  # every q is fixed
    xi_q, xi_c = depth_scales(torch.relu, sigma_w2=1.5, sigma_b2=0.1)
    assert xi_q == pytest.approx(-1 / math.log(0.75), rel=1e-10)
    assert xi_c == pytest.approx(-1 / math.log(0.75), rel=1e-10)  # c* = 1: ξ_c⁻¹ = −log χ₁


def test_relu_correlation_map_is_arccos_kernel() -> None:
    for c in (-0.5, 0.2, 0.8):
        ref = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
        ours = correlation_map(torch.relu, c, q=1.3, sigma_w2=2.0, sigma_b2=0.0)
        assert ours == pytest.approx(ref, abs=4e-3)


def test_relu_critical_point() -> None:
    assert critical_sigma_w2(torch.relu) == pytest.approx(2.0, abs=1e-9)
    summary = analyse(torch.relu, sigma_w2=2.0, sigma_b2=0.0)
    assert summary.phase == "critical" and summary.xi_c == math.inf


def test_relu_with_bias_has_no_critical_point() -> None:
    with pytest.raises(SpecError, match=r"relu.*σ_b²=0\.1") as info:
        critical_sigma_w2(torch.relu, sigma_b2=0.1)
    assert info.value.field == ""


# ---------------------------------------------------------------- tanh edge of chaos


def test_tanh_critical_line_vs_scipy_and_published() -> None:
    assert critical_sigma_w2(torch.tanh) == pytest.approx(1.0, abs=1e-6)  # σ_b → 0 limit
    sigma_b2 = 0.05
    sw = critical_sigma_w2(torch.tanh, sigma_b2=sigma_b2)
    assert sw == pytest.approx(1.76, abs=0.01)  # Schoenholz et al. 2017, fig. 1
    # Independent: q* as a scipy root of q = σ_w² ∫Dz tanh(√q z)² + σ_b², then χ₁ by quad.
    qs = optimize.brentq(
        lambda q: sw * gauss_quad(lambda z: math.tanh(math.sqrt(q) * z) ** 2) + sigma_b2 - q,
        1e-6,
        10.0,
        xtol=1e-14,
    )
    chi_ref = sw * gauss_quad(lambda z: sech4(math.sqrt(qs) * z))
    assert abs(chi_ref - 1) < 1e-3
    assert q_star(torch.tanh, sigma_w2=sw, sigma_b2=sigma_b2) == pytest.approx(qs, rel=1e-8)
    assert chi1(torch.tanh, sigma_w2=sw, sigma_b2=sigma_b2) == pytest.approx(chi_ref, abs=1e-8)
    assert analyse(torch.tanh, sigma_w2=sw, sigma_b2=sigma_b2).phase == "critical"


def test_user_activation_derivatives_by_autograd() -> None:
    def swish(x: torch.Tensor) -> torch.Tensor:  # a user function: no derivative supplied
        return x * torch.sigmoid(x)

    def dswish(x: float) -> float:
        s = 1 / (1 + math.exp(-x))
        return s * (1 + x * (1 - s))

    q = 0.7
    ref = 1.3 * gauss_quad(lambda z: dswish(math.sqrt(q) * z) ** 2)
    assert chi1(swish, sigma_w2=1.3, sigma_b2=0.1, q=q) == pytest.approx(ref, rel=1e-10)


def test_module_activation_under_inference_mode() -> None:
    # An nn.Module works as φ, and autograd derivatives survive a caller's inference mode.
    with torch.inference_mode():
        got = analyse(torch.nn.Tanh(), sigma_w2=2.5, sigma_b2=0.05)
    assert got == analyse(torch.tanh, sigma_w2=2.5, sigma_b2=0.05)


@pytest.mark.parametrize("phi, sigma_w2", [(torch.tanh, 1.2), (torch.tanh, 2.5), (F.silu, 1.5)])
def test_depth_scales_match_finite_difference_slopes(phi: Act, sigma_w2: float) -> None:
    # ξ⁻¹ = −log(slope of the length / correlation map at its fixed point).
    kw = {"sigma_w2": sigma_w2, "sigma_b2": 0.05}
    q, c = q_star(phi, **kw), c_star(phi, **kw)
    d = 1e-5
    q_slope = (length_map(phi, q * (1 + d), **kw) - length_map(phi, q * (1 - d), **kw)) / (
        2 * d * q
    )
    if c < 1:
        c_slope = (
            correlation_map(phi, c + d, q=q, **kw) - correlation_map(phi, c - d, q=q, **kw)
        ) / (2 * d)
    else:
        c_slope = (1 - correlation_map(phi, 1 - d, q=q, **kw)) / d
    xi_q, xi_c = depth_scales(phi, **kw)
    assert xi_q == pytest.approx(-1 / math.log(q_slope), rel=1e-4)
    assert xi_c == pytest.approx(-1 / math.log(c_slope), rel=2e-3)


# ---------------------------------------------------------------- correlation map, phases


def test_correlation_fixed_point_ordered_and_chaotic() -> None:
    ordered = {"sigma_w2": 1.2, "sigma_b2": 0.05}
    q = q_star(torch.tanh, **ordered)
    assert c_star(torch.tanh, **ordered) == 1.0
    assert correlation_map(torch.tanh, 1.0, q=q, **ordered) == pytest.approx(1.0, abs=1e-13)
    c = 0.2
    for _ in range(300):  # c = 1 attracts
        c = correlation_map(torch.tanh, c, q=q, **ordered)
    assert c == pytest.approx(1.0, abs=1e-6)

    chaotic = {"sigma_w2": 2.5, "sigma_b2": 0.05}
    q = q_star(torch.tanh, **chaotic)
    cs = c_star(torch.tanh, **chaotic)
    assert 0 < cs < 0.9
    assert correlation_map(torch.tanh, cs, q=q, **chaotic) == pytest.approx(cs, abs=1e-12)
    c = 0.999  # c = 1 repels; iterates settle on c*
    for _ in range(300):
        c = correlation_map(torch.tanh, c, q=q, **chaotic)
    assert c == pytest.approx(cs, abs=1e-8)
    assert analyse(torch.tanh, **chaotic).phase == "chaotic"
    assert analyse(torch.tanh, **ordered).phase == "ordered"


def test_xi_c_diverges_at_criticality() -> None:
    sw = critical_sigma_w2(torch.tanh, sigma_b2=0.05)
    assert depth_scales(torch.tanh, sigma_w2=sw, sigma_b2=0.05)[1] > 1e6
    xis = [
        depth_scales(torch.tanh, sigma_w2=sw + d, sigma_b2=0.05)[1]
        for d in (-0.5, -0.1, -0.02, 0.02, 0.1, 0.5)
    ]
    assert all(math.isfinite(x) for x in xis)
    assert xis[0] < xis[1] < xis[2] and xis[3] > xis[4] > xis[5]


# ---------------------------------------------------------------- Monte Carlo on wide nets


def simulate(
    phi: Act,
    sigma_w2: float,
    sigma_b2: float,
    *,
    width: int = 1024,
    depth: int = 64,
    burn_in: int = 16,
    pairs: int = 8,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean q, per-layer perturbation growth and late correlation of input pairs in one net.

    Inputs: random pairs of mean square 1 and correlation 0.9. The growth of a perturbation of
    relative size 1e-7 (finite differences, rescaled every layer) estimates χ₁.
    """
    gen = torch.Generator().manual_seed(seed)
    n, eps, k = width, 1e-7, pairs
    x = torch.randn(k, n, generator=gen, dtype=torch.float64)
    y = 0.9 * x + math.sqrt(1 - 0.81) * torch.randn(k, n, generator=gen, dtype=torch.float64)
    h = torch.cat([x, y])
    v = torch.randn(2 * k, n, generator=gen, dtype=torch.float64)
    hp = h + eps * v
    qs, growth, cs = [], [], []
    for layer in range(depth):
        w = torch.randn(n, n, generator=gen, dtype=torch.float64) * math.sqrt(sigma_w2 / n)
        b = torch.randn(n, generator=gen, dtype=torch.float64) * math.sqrt(sigma_b2)
        before = (hp - h).pow(2).sum(1)
        h, hp = phi(h) @ w.T + b, phi(hp) @ w.T + b
        if layer >= burn_in:
            qs.append(h.pow(2).mean(1))
            growth.append((hp - h).pow(2).sum(1) / before)
            cs.append((h[:k] * h[k:]).sum(1) / (h[:k].norm(dim=1) * h[k:].norm(dim=1)))
        delta = hp - h  # keep the perturbation tiny: rescale to eps·√N
        hp = h + eps * math.sqrt(n) * delta / delta.norm(dim=1, keepdim=True)
    return (
        float(torch.stack(qs).mean()),
        float(torch.stack(growth).mean()),
        float(torch.stack(cs[-16:]).mean()),
    )


@pytest.mark.parametrize(
    "phi, sigma_w2, sigma_b2",
    [(torch.tanh, 1.2, 0.05), (torch.tanh, 2.5, 0.05), (torch.erf, 2.0, 0.1), (F.silu, 1.5, 0.1)],
    ids=["tanh-ordered", "tanh-chaotic", "erf-chaotic", "silu-ordered"],
)
def test_monte_carlo_matches_theory(phi: Act, sigma_w2: float, sigma_b2: float) -> None:
    q_mc, chi_mc, c_mc = simulate(phi, sigma_w2, sigma_b2)
    theory = analyse(phi, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
    assert q_mc == pytest.approx(theory.q_star, rel=0.05)
    assert chi_mc == pytest.approx(theory.chi1, rel=0.05)
    if theory.phase == "chaotic":
        # c fluctuates by ~1/√N per layer and those fluctuations decay only over ξ_c ≈ 12 layers,
        # so one net pins c* to about ±0.05; c* ≈ 0.45–0.65 here, far from the ordered c* = 1.
        assert c_mc == pytest.approx(theory.c_star, abs=0.1)
    else:
        assert np.isclose(c_mc, 1.0, atol=0.05)
