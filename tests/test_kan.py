"""The kan family: its B-spline basis against a direct Cox–de Boor evaluation, the layer
against an edge-by-edge loop, grid extension, conformance, training and diagnosis."""

from __future__ import annotations

import pytest
import torch

from depthlab import ArchSpec, SpecError, build_model
from depthlab.models.kan import KAN, bspline_basis, knots, uniform_bspline_basis
from depthlab.testing import check_arch


def cox_de_boor(x: float, t: list[float], j: int, p: int) -> float:
    """B_{j,p}(x) by the textbook recursion, one scalar at a time (0/0 taken as 0)."""
    if p == 0:
        return 1.0 if t[j] <= x < t[j + 1] else 0.0
    out = 0.0
    if t[j + p] != t[j]:
        out += (x - t[j]) / (t[j + p] - t[j]) * cox_de_boor(x, t, j, p - 1)
    if t[j + p + 1] != t[j + 1]:
        out += (t[j + p + 1] - x) / (t[j + p + 1] - t[j + 1]) * cox_de_boor(x, t, j + 1, p - 1)
    return out


@pytest.mark.parametrize("grid,order", [(5, 3), (3, 0), (4, 1), (7, 2)])
def test_basis_matches_the_direct_cox_de_boor_recursion(grid, order):
    t = knots(grid, order, 1.5, dtype=torch.float64)
    x = torch.linspace(-3.0, 3.0, 97, dtype=torch.float64)
    fast = bspline_basis(x, t, order)
    assert fast.shape == (97, grid + order)
    tl = t.tolist()
    direct = torch.tensor(
        [[cox_de_boor(float(v), tl, j, order) for j in range(grid + order)] for v in x],
        dtype=torch.float64,
    )
    torch.testing.assert_close(fast, direct, rtol=0, atol=1e-12)


@pytest.mark.parametrize("grid,order", [(5, 3), (3, 0), (4, 1), (7, 2), (20, 3)])
def test_local_support_basis_equals_the_full_recursion(grid, order):
    t = knots(grid, order, 2.0, dtype=torch.float64)
    x = torch.cat([torch.linspace(-6.0, 6.0, 501, dtype=torch.float64), t])  # knots included
    fast = uniform_bspline_basis(x, grid, order, 2.0)
    torch.testing.assert_close(fast, bspline_basis(x, t, order), rtol=0, atol=1e-12)


def test_basis_is_a_partition_of_unity_on_the_grid():
    t = knots(6, 3, 2.0, dtype=torch.float64)
    x = torch.linspace(-1.999, 1.999, 200, dtype=torch.float64)
    torch.testing.assert_close(bspline_basis(x, t, 3).sum(-1), torch.ones(200, dtype=torch.float64))


def test_layer_equals_the_sum_of_its_edge_functions():
    spec = ArchSpec(family="kan", depth=1, width=4, act="silu", grid=4)
    model = build_model(spec, in_shape=(3,), out_dim=2, seed=1).double()
    layer = model.layers[0]
    x = torch.randn(11, 3, dtype=torch.float64)
    b = bspline_basis(x, layer.knots, layer.order)
    expected = torch.zeros(11, 4, dtype=torch.float64)
    for j in range(4):  # φ_ji(x_i) = w_b silu(x_i) + Σ_m c_m B_m(x_i), edge by edge
        for i in range(3):
            w = layer.weight[j, i]
            expected[:, j] += w[0] * torch.nn.functional.silu(x[:, i]) + b[:, i] @ w[1:]
    expected += layer.bias
    torch.testing.assert_close(layer(x), expected)


def test_grid_extension_keeps_the_function_and_grows_the_parameters():
    # one layer, inputs inside the grid [-2, 2]: there the coarse splines lie in the span of
    # the fine ones (nested uniform knots), so the refit is exact up to the ridge
    spec = ArchSpec(family="kan", depth=0, act="silu", grid=3)
    model = build_model(spec, in_shape=(2,), out_dim=3, seed=0).double()
    assert isinstance(model, KAN)
    x = torch.rand(400, 2, dtype=torch.float64) * 3 - 1.5
    before, n_before = model(x), sum(p.numel() for p in model.parameters())
    model.extend_grid(x, 12)
    after, n_after = model(x), sum(p.numel() for p in model.parameters())
    assert model.layers[0].grid == 12 and n_after > n_before
    assert float((after - before).detach().abs().max()) < 1e-5


def test_seeded_init_and_spec_errors():
    spec = ArchSpec(family="kan", depth=2, width=6, act="silu")
    check_arch(spec, in_shape=(5,), out_dim=3)
    check_arch(spec.replace(spline_order=1, grid=2, act="tanh"), in_shape=(4,), out_dim=2)
    a = build_model(spec, in_shape=(5,), out_dim=3, seed=3)
    b = build_model(spec, in_shape=(5,), out_dim=3, seed=3)
    assert torch.equal(a.layers[0].weight, b.layers[0].weight)
    with pytest.raises(SpecError, match="norm"):
        build_model(spec.replace(norm="batch"), in_shape=(5,), out_dim=3)
    with pytest.raises(SpecError, match="grid"):
        ArchSpec(family="kan", grid=0)


def test_grid_extension_technique_refines_the_grid_during_training():
    from depthlab import DataSpec, RunSpec, TrainSpec
    from depthlab.train import run

    spec = RunSpec(
        arch=ArchSpec(family="kan", depth=1, width=4, act="silu", grid=3),
        data=DataSpec(name="teacher", task="regression", n_features=2, n_samples=200),
        train=TrainSpec(
            epochs=3,
            techniques=({"name": "grid_extension", "grids": [6, 12], "at_epochs": [1, 2]},),
        ),
    )
    result = run(spec, progress=False)
    assert result.state.value == "COMPLETE"
    assert [layer.grid for layer in result.model.layers] == [12, 12]
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    with pytest.raises(SpecError, match="kan"):
        run(spec.replace(arch=ArchSpec(family="mlp", depth=1, width=4)), progress=False)
