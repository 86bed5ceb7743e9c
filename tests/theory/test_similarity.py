"""Linear CKA against an independent numpy HSIC implementation and its invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthlab.theory.similarity import cka_distance, linear_cka


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(d: int, *, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(_randn(d, d, seed=seed))
    return q * torch.sign(torch.diagonal(r))  # a Haar-distributed orthogonal matrix


def _hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)) with linear kernels; no centring of X or Y."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k = x @ x.T
    l_ = y @ y.T
    khlh = np.trace(k @ h @ l_ @ h)
    return float(khlh / np.sqrt(np.trace(k @ h @ k @ h) * np.trace(l_ @ h @ l_ @ h)))


def test_identical_representations_have_cka_one() -> None:
    x = _randn(20, 6, seed=0)
    torch.testing.assert_close(linear_cka(x, x), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(cka_distance(x, x), torch.tensor(0.0, dtype=torch.float64))


@pytest.mark.parametrize(("n", "p"), [(30, 5), (6, 12)])  # feature-space and Gram-space paths
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(n: int, p: int) -> None:
    x = _randn(n, p, seed=1)
    y = _randn(n, 4, seed=2) + x[:, :4]
    base = linear_cka(x, y)
    q = _orthogonal(p, seed=3)
    torch.testing.assert_close(linear_cka(x @ q, y), base)
    torch.testing.assert_close(linear_cka(7.5 * x, 0.01 * y), base)
    torch.testing.assert_close(linear_cka(x @ q, y * 3.0), base)
    # Identical up to rotation and scale: CKA is exactly 1.
    torch.testing.assert_close(linear_cka(x, 2.0 * x @ q), torch.tensor(1.0, dtype=torch.float64))


def test_not_invariant_to_anisotropic_scaling() -> None:
    x = _randn(40, 5, seed=4)
    y = _randn(40, 5, seed=5) + x
    scaled = x * torch.tensor([10.0, 1.0, 1.0, 0.1, 1.0], dtype=torch.float64)
    assert abs(linear_cka(scaled, y).item() - linear_cka(x, y).item()) > 1e-2
    assert linear_cka(scaled, x).item() < 1 - 1e-2


def test_invariant_to_column_offsets() -> None:
    x = _randn(15, 4, seed=6)
    y = _randn(15, 3, seed=7)
    torch.testing.assert_close(linear_cka(x + 5.0, y - 2.0), linear_cka(x, y))


@pytest.mark.parametrize(("n", "p", "q", "seed"), [(25, 4, 7, 0), (8, 20, 3, 1), (5, 9, 11, 2)])
def test_matches_independent_numpy_hsic(n: int, p: int, q: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) + 3.0  # uncentred on purpose: H does the centring
    y = rng.normal(size=(n, q)) @ rng.normal(size=(q, q)) + x[:, :1]
    got = linear_cka(torch.from_numpy(x), torch.from_numpy(y)).item()
    assert got == pytest.approx(_hsic_cka(x, y), rel=1e-10, abs=1e-12)


def test_trailing_dimensions_are_flattened() -> None:
    x = _randn(10, 2, 3, 4, seed=8)
    y = _randn(10, 5, seed=9)
    torch.testing.assert_close(linear_cka(x, y), linear_cka(x.reshape(10, -1), y))
    expected = _hsic_cka(x.reshape(10, -1).numpy(), y.numpy())
    assert linear_cka(x, y).item() == pytest.approx(expected, rel=1e-10)


def test_between_zero_and_one() -> None:
    for seed in range(20):
        n = 3 + seed
        value = linear_cka(_randn(n, 1 + seed % 5, seed=seed), _randn(n, 2 + seed % 3, seed=99))
        assert 0.0 <= value.item() <= 1.0 + 1e-12
        assert 0.0 <= cka_distance(_randn(n, 3, seed=seed), _randn(n, 2, seed=50)).item() <= 1.0


def test_float32_inputs_give_float32() -> None:
    x = _randn(12, 3, seed=10).float()
    out = linear_cka(x, x * 2)
    assert out.dtype == torch.float32 and out.dim() == 0
    assert out.item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("n", "p", "q"), [(6, 3, 2), (4, 5, 6)])
def test_differentiable_gradcheck(n: int, p: int, q: int) -> None:
    x = _randn(n, p, seed=11).requires_grad_(True)
    y = _randn(n, q, seed=12).requires_grad_(True)
    assert torch.autograd.gradcheck(linear_cka, (x, y))
    assert torch.autograd.gradcheck(cka_distance, (x, y))


def test_errors_on_mismatched_or_too_few_examples() -> None:
    with pytest.raises(ValueError, match=r"same number of examples.*\(5, 3\).*\(4, 3\)"):
        linear_cka(torch.zeros(5, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="at least 2 examples, got n=1"):
        linear_cka(torch.ones(1, 3), torch.ones(1, 2))
    with pytest.raises(ValueError, match="same number of examples"):
        linear_cka(torch.tensor(1.0), torch.ones(1))
