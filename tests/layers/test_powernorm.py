"""PowerNorm (Shen et al. 2020) against hand-computed running statistics and gradients."""

from __future__ import annotations

import pytest
import torch

from depthlab import _registry as reg
from depthlab.layers.norms import ChannelsLast
from depthlab.layers.powernorm import PowerNorm
from depthlab.spec import ArchSpec
from depthlab.testing import check_arch

ALPHA = 0.8
EPS = 1e-5


def _batches(steps: int, shape: tuple[int, ...], *, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [3.0 * torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(steps)]


def _norm(approx_backward: bool = True) -> PowerNorm:
    norm = PowerNorm(3, alpha=ALPHA, eps=EPS, approx_backward=approx_backward).double()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return norm


def test_running_statistic_and_forward_follow_algorithm_1_over_several_steps() -> None:
    norm = _norm()
    psi2 = torch.ones(3, dtype=torch.float64)
    for x in _batches(5, (7, 3), seed=0):
        out = norm(x)
        # The forward uses ψ²_{t-1}, the value before this batch's update.
        expected = x / torch.sqrt(psi2 + EPS) * norm.weight + norm.bias
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
        psi2 = ALPHA * psi2 + (1 - ALPHA) * (x**2).mean(dim=0)
        torch.testing.assert_close(norm.running_psi2, psi2, rtol=1e-12, atol=1e-12)


def test_leading_dimensions_all_count_as_batch() -> None:
    norm = _norm()
    x = _batches(1, (2, 5, 3), seed=1)[0]
    norm(x)
    expected = ALPHA + (1 - ALPHA) * (x**2).mean(dim=(0, 1))
    torch.testing.assert_close(norm.running_psi2, expected, rtol=1e-12, atol=1e-12)


def test_approximate_backward_follows_algorithm_1_over_several_steps() -> None:
    norm = _norm()
    psi2 = torch.ones(3, dtype=torch.float64)
    nu = torch.zeros(3, dtype=torch.float64)
    gen = torch.Generator().manual_seed(5)
    for x in _batches(4, (6, 3), seed=2):
        x = x.clone().requires_grad_(True)
        upstream = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        (norm(x) * upstream).sum().backward()
        scale = 1 / torch.sqrt(psi2 + EPS)
        xhat = x.detach() * scale
        g = upstream * norm.weight.detach()
        assert x.grad is not None
        torch.testing.assert_close(x.grad, (g - nu * xhat) * scale, rtol=1e-12, atol=1e-12)
        gamma_stat = (xhat**2).mean(dim=0)
        lambda_stat = (xhat * g).mean(dim=0)
        nu = nu * (1 - (1 - ALPHA) * gamma_stat) + (1 - ALPHA) * lambda_stat
        torch.testing.assert_close(norm.running_nu, nu, rtol=1e-12, atol=1e-12)
        # γ and β keep their exact gradients.
        assert norm.weight.grad is not None and norm.bias.grad is not None
        torch.testing.assert_close(norm.weight.grad, (upstream * xhat).sum(dim=0))
        torch.testing.assert_close(norm.bias.grad, upstream.sum(dim=0))
        norm.zero_grad(set_to_none=True)
        psi2 = ALPHA * psi2 + (1 - ALPHA) * (x.detach() ** 2).mean(dim=0)
    assert not torch.equal(nu, torch.zeros(3, dtype=torch.float64))


def test_exact_backward_is_autograds_gradient_of_the_forward() -> None:
    norm = _norm(approx_backward=False)
    norm(_batches(1, (6, 3), seed=3)[0])  # move ψ² away from its initial 1
    x = _batches(1, (4, 3), seed=4)[0].requires_grad_(True)
    psi2 = norm.running_psi2.clone()

    def reference(x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(psi2 + EPS) * norm.weight + norm.bias

    def step(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            norm.running_psi2.copy_(psi2)  # gradcheck calls forward many times
        return norm(x)

    assert torch.autograd.gradcheck(step, (x,))
    (grad,) = torch.autograd.grad(step(x).sum(), x)
    (expected,) = torch.autograd.grad(reference(x).sum(), x)
    torch.testing.assert_close(grad, expected)
    assert torch.equal(norm.running_nu, torch.zeros(3, dtype=torch.float64))


def test_eval_uses_the_running_value_and_updates_nothing() -> None:
    norm = _norm()
    for x in _batches(3, (8, 3), seed=6):
        norm(x)
    psi2 = norm.running_psi2.clone()
    norm.eval()
    x = _batches(1, (5, 3), seed=7)[0]
    out = norm(x)
    torch.testing.assert_close(out, x / torch.sqrt(psi2 + EPS) * norm.weight + norm.bias)
    assert torch.equal(norm.running_psi2, psi2)
    # No batch statistic: a single row is normalised the same as inside a batch.
    torch.testing.assert_close(norm(x[:1]), out[:1])


def test_constant_scale_input_has_unit_quadratic_mean_after_warm_up() -> None:
    norm = PowerNorm(4, alpha=0.9)
    gen = torch.Generator().manual_seed(8)
    scales = torch.tensor([0.1, 1.0, 5.0, 40.0])
    for _ in range(300):
        norm(scales * torch.randn(512, 4, generator=gen))
    out = norm(scales * torch.randn(4096, 4, generator=gen))
    torch.testing.assert_close(out.square().mean(dim=0), torch.ones(4), rtol=0.1, atol=0.0)
    norm.eval()
    out = norm(scales * torch.randn(4096, 4, generator=gen))
    torch.testing.assert_close(out.square().mean(dim=0), torch.ones(4), rtol=0.1, atol=0.0)


@pytest.mark.parametrize("approx_backward", [True, False])
def test_gradients_are_finite(approx_backward: bool) -> None:
    norm = PowerNorm(6, approx_backward=approx_backward)
    gen = torch.Generator().manual_seed(9)
    for _ in range(5):
        x = (100.0 * torch.randn(16, 6, generator=gen)).requires_grad_(True)
        norm(x).pow(2).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        for p in norm.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
        norm.zero_grad(set_to_none=True)
    assert torch.isfinite(norm.running_nu).all()


def test_zero_input_is_finite() -> None:
    norm = PowerNorm(2, eps=1e-5)
    for _ in range(50):
        out = norm(torch.zeros(3, 2))
    assert torch.isfinite(out).all() and torch.equal(out, torch.zeros(3, 2))


def test_registered_factory_wraps_channels_first() -> None:
    factory = reg.NORMS.get("power")
    assert isinstance(factory(5, False), PowerNorm)
    wrapped = factory(5, True)
    assert isinstance(wrapped, ChannelsLast) and isinstance(wrapped.inner, PowerNorm)
    x = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(10))
    out = wrapped(x)
    assert out.shape == x.shape
    expected = 0.9 + 0.1 * x.square().mean(dim=(0, 2))
    torch.testing.assert_close(wrapped.inner.running_psi2, expected)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="alpha"):
        PowerNorm(3, alpha=1.0)
    with pytest.raises(ValueError, match="num_features"):
        PowerNorm(0)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        PowerNorm(3)(torch.zeros(2, 4))


@pytest.mark.parametrize(
    ("family", "in_shape"), [("mlp", (12,)), ("resmlp", (12,)), ("cnn1d", (16,))]
)
@pytest.mark.parametrize("placement", ["pre", "post"])
def test_conformance_inside_build_model(
    family: str, in_shape: tuple[int, ...], placement: str
) -> None:
    spec = ArchSpec(family=family, depth=3, width=8, norm="power", norm_placement=placement)
    model = check_arch(spec, in_shape=in_shape, out_dim=5)
    norms = [m for m in model.modules() if isinstance(m, PowerNorm)]
    assert norms
    model.eval()
    x = torch.randn((4, *in_shape), generator=torch.Generator().manual_seed(11))
    assert torch.isfinite(model(x)).all()
