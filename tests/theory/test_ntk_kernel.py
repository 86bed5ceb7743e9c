"""The infinite-width NTK against closed-form arc-cosine kernels and against wide finite nets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from depthlab.exceptions import SpecError
from depthlab.probes.ntk import empirical_ntk
from depthlab.theory.ntk_kernel import dual_activation, infinite_ntk, kernels_by_depth


def relu_ntk_closed_form(
    x1: torch.Tensor, x2: torch.Tensor, depth: int, sigma_w2: float, sigma_b2: float
) -> torch.Tensor:
    """The ReLU NTK from the arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009):
    E[relu(u)relu(v)] = √(q₁q₂)(sin θ + (π − θ) cos θ)/(2π), E[relu′relu′] = (π − θ)/(2π)."""
    d = x1.shape[1]
    s11 = sigma_w2 * (x1 * x1).sum(1) / d + sigma_b2
    s22 = sigma_w2 * (x2 * x2).sum(1) / d + sigma_b2
    s12 = sigma_w2 * x1 @ x2.T / d + sigma_b2
    theta_k = s12.clone()
    for _ in range(depth):
        norm = torch.sqrt(s11[:, None] * s22[None, :])
        t = torch.arccos((s12 / norm).clamp(-1, 1))
        f = norm * (torch.sin(t) + (math.pi - t) * torch.cos(t)) / (2 * math.pi)
        g = (math.pi - t) / (2 * math.pi)
        theta_k = theta_k * sigma_w2 * g + sigma_w2 * f + sigma_b2
        s12 = sigma_w2 * f + sigma_b2
        s11, s22 = sigma_w2 * s11 / 2 + sigma_b2, sigma_w2 * s22 / 2 + sigma_b2
    return theta_k


def _inputs(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("sigma_b2", [0.0, 0.3])
@pytest.mark.parametrize("depth", [0, 1, 3, 10])
def test_relu_matches_arc_cosine_any_norms(depth: int, sigma_b2: float) -> None:
    x, y = _inputs(7, 5, 0), _inputs(4, 5, 1)
    got = infinite_ntk(x, y, "relu", depth, 2.0, sigma_b2)
    ref = relu_ntk_closed_form(x, y, depth, 2.0, sigma_b2)
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-10


@pytest.mark.parametrize("depth", [1, 10, 100])
def test_relu_table_path_on_the_sphere(depth: int) -> None:
    # Equal norms take the θ-table path (cubic spline in θ). On the diagonal, c = 1 − ε from
    # roundoff gives θ ≈ √(2ε) ≈ 1e-8 in both implementations, and (π − θ)/(2π) feels it linearly:
    # a few 1e-7 of relative difference after 100 layers.
    x = _inputs(9, 6, 2)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(6)
    got = infinite_ntk(x, None, "relu", depth, 2.0, 0.0)
    ref = relu_ntk_closed_form(x, x, depth, 2.0, 0.0)
    assert float((got - ref).abs().max() / ref.abs().max()) < 2e-6


def test_dual_of_hermite_polynomial() -> None:
    # φ = He₃/√6 has dual c³ and derivative dual 3c² (Hermite orthogonality).
    c = torch.linspace(-1, 1, 11, dtype=torch.float64)
    ones = torch.ones_like(c)
    f, g = dual_activation(lambda z: (z**3 - 3 * z) / math.sqrt(6), ones, ones, c)
    torch.testing.assert_close(f, c**3, atol=1e-12, rtol=0)
    torch.testing.assert_close(g, 3 * c**2, atol=1e-12, rtol=0)


def test_depths_in_one_pass_match_single_calls() -> None:
    x = _inputs(5, 3, 3)
    many = kernels_by_depth(x, None, "tanh", (0, 2, 4), 1.5, 0.1)
    for depth in (0, 2, 4):
        torch.testing.assert_close(many[depth].ntk, infinite_ntk(x, None, "tanh", depth, 1.5, 0.1))
    assert torch.allclose(many[0].ntk, many[0].nngp)


def test_bad_arguments_raise() -> None:
    x = _inputs(3, 2, 0)
    with pytest.raises(SpecError, match="sigma_w2"):
        infinite_ntk(x, None, "relu", 1, 0.0, 0.0)
    with pytest.raises(SpecError, match="depths"):
        kernels_by_depth(x, None, "relu", (-1,))


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class _Bias(nn.Module):
    def __init__(self, n: int, sigma_b: float, gen: torch.Generator) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.randn(n, generator=gen))
        self.sigma_b = sigma_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma_b * self.b


def ntk_parametrised_mlp(
    d: int, width: int, depth: int, act: nn.Module, sigma_w2: float, sigma_b2: float, seed: int
) -> nn.Sequential:
    """h = (σ_w/√fan_in) W a + σ_b b with W, b ~ N(0, 1): the network of the kernel module."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    fan = d
    for i in range(depth + 1):
        out = 1 if i == depth else width
        lin = nn.Linear(fan, out, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(out, fan, generator=gen))
        layers += [_Scale(math.sqrt(sigma_w2 / fan)), lin]
        if sigma_b2 > 0:
            layers.append(_Bias(out, math.sqrt(sigma_b2), gen))
        if i < depth:
            layers.append(act)
        fan = out
    return nn.Sequential(*layers)


@pytest.mark.parametrize(
    ("act", "name", "sigma_w2", "sigma_b2"),
    [(nn.ReLU(), "relu", 2.0, 0.0), (nn.Tanh(), "tanh", 1.5, 0.1)],
)
def test_wide_net_empirical_ntk_matches(
    act: nn.Module, name: str, sigma_w2: float, sigma_b2: float
) -> None:
    # Width 4096, 2 hidden layers: the empirical NTK fluctuates by O(1/√width) (1.5-5 % per
    # seed measured); the mean over 3 seeds must be within 5 %, every seed within 10 %.
    x = _inputs(6, 5, 1).float()
    ref = infinite_ntk(x.double(), None, name, 2, sigma_w2, sigma_b2)
    kernels = []
    for seed in range(3):
        net = ntk_parametrised_mlp(5, 4096, 2, act, sigma_w2, sigma_b2, seed)
        theta, _ = empirical_ntk(net, x)
        kernels.append(theta)
        assert float((theta - ref).norm() / ref.norm()) < 0.10
    mean = torch.stack(kernels).mean(0)
    assert float((mean - ref).norm() / ref.norm()) < 0.05
