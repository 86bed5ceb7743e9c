"""Sheaf Laplacian: PSD, the graph Laplacian ⊗ I_d for identity maps, sparse = dense; maps."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import erdos_renyi_graph, to_undirected

from depthlab import ArchSpec, SpecError, build_model
from depthlab.models.graph_transformer import laplacian_pe
from depthlab.models.sheaf import reverse_edges, sheaf_laplacian_apply, sheaf_laplacian_dense

N, D = 9, 3


def _graph():
    torch.manual_seed(1)
    path = torch.stack([torch.arange(N - 1), torch.arange(1, N)])
    return to_undirected(torch.cat([erdos_renyi_graph(N, 0.3), path], dim=1))


def _maps(e, kind="general"):
    g = torch.Generator().manual_seed(2)
    if kind == "identity":
        return torch.eye(D, dtype=torch.float64).expand(e, D, D).clone()
    return torch.randn(e, D, D, generator=g, dtype=torch.float64)


def test_identity_maps_give_the_graph_laplacian_times_identity():
    ei = _graph()
    lap = sheaf_laplacian_dense(_maps(ei.shape[1], "identity"), ei, N)
    a = torch.zeros(N, N, dtype=torch.float64)
    a[ei[0], ei[1]] = 1
    graph_lap = torch.diag(a.sum(1)) - a
    torch.testing.assert_close(lap, torch.kron(graph_lap, torch.eye(D, dtype=torch.float64)))


@pytest.mark.parametrize("seed", range(3))
def test_the_sheaf_laplacian_is_symmetric_psd_and_sparse_equals_dense(seed):
    ei = _graph()
    maps = _maps(ei.shape[1]) * (seed + 1)
    lap = sheaf_laplacian_dense(maps, ei, N)
    torch.testing.assert_close(lap, lap.T)
    eig = torch.linalg.eigvalsh(lap)
    assert eig.min() > -1e-9 * eig.max()
    x = torch.randn(N, D, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    sparse = sheaf_laplacian_apply(x, maps, ei, reverse_edges(ei, N))
    dense = (lap @ x.reshape(N * D, 4)).reshape(N, D, 4)
    torch.testing.assert_close(sparse, dense)


def test_reverse_edges_and_a_directed_graph_is_refused():
    ei = _graph()
    rev = reverse_edges(ei, N)
    assert torch.equal(ei[:, rev], ei.flip(0))
    with pytest.raises(ValueError, match="undirected"):
        reverse_edges(torch.tensor([[0, 1], [1, 2]]), 3)


@pytest.mark.parametrize("kind", ["diagonal", "general", "orthogonal"])
def test_learned_restriction_maps_have_their_kind(kind):
    ei = _graph()
    spec = ArchSpec(family="sheaf", depth=1, width=6, stalk_dim=D, sheaf_maps=kind)
    model = build_model(spec, in_shape=(4,), out_dim=2, graph=ei).double()
    layer = model.layers[0]
    maps = layer.restriction_maps(torch.randn(N, 6, dtype=torch.float64), ei)
    assert maps.shape == (ei.shape[1], D, D)
    eye = torch.eye(D, dtype=torch.float64)
    if kind == "orthogonal":
        torch.testing.assert_close(maps @ maps.transpose(1, 2), eye.expand_as(maps))
    if kind == "diagonal":
        assert torch.equal(maps * (1 - eye), torch.zeros_like(maps))
    eig = torch.linalg.eigvalsh(sheaf_laplacian_dense(maps, ei, N))
    assert eig.min() > -1e-9


def test_stalk_dim_must_divide_the_width():
    with pytest.raises(SpecError, match="stalk_dim"):
        build_model(
            ArchSpec(family="sheaf", width=7, stalk_dim=2), in_shape=(3,), out_dim=2, graph=_graph()
        )


def test_laplacian_pe_are_eigenvectors_of_the_normalised_laplacian():
    ei = _graph()
    pe = laplacian_pe(ei, N, 3).double()
    a = torch.zeros(N, N, dtype=torch.float64)
    a[ei[0], ei[1]] = 1
    d = a.sum(1).rsqrt()
    lap = torch.eye(N, dtype=torch.float64) - d[:, None] * a * d[None, :]
    vals = torch.linalg.eigvalsh(lap)[1:4]
    torch.testing.assert_close(lap @ pe, pe * vals, atol=1e-5, rtol=1e-5)
    # the sign convention: the largest-magnitude entry is positive (up to float32 ties)
    assert bool((pe.max(0).values >= -pe.min(0).values - 1e-6).all())


def test_dagnn_weighs_its_propagation_steps_per_node():
    """DAGNN's output is Σ_k sigmoid(H_k·w) H_k with H_k = Â^k Z, checked with dense Â."""
    ei = _graph()
    model = build_model(
        ArchSpec(family="dagnn", depth=4, width=8), in_shape=(5,), out_dim=3, graph=ei
    )
    model = model.double().eval()
    x = torch.randn(N, 5, dtype=torch.float64)
    a = torch.zeros(N, N, dtype=torch.float64)
    a[ei[0], ei[1]] = 1
    a = a + torch.eye(N, dtype=torch.float64)
    dd = a.sum(1).rsqrt()
    a_hat = dd[:, None] * a * dd[None, :]
    z = model.readout(model.embed(x))
    steps = [torch.linalg.matrix_power(a_hat, k) @ z for k in range(5)]
    expected = sum(torch.sigmoid(model.gate(h)) * h for h in steps)
    torch.testing.assert_close(model(x), expected)


def test_newton_schulz_inverse_square_root_and_its_gradient_at_repeated_eigenvalues():
    from depthlab.models.sheaf import inv_sqrt_spd

    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 3, 3, generator=g, dtype=torch.float64)
    m = torch.eye(3, dtype=torch.float64) + a @ a.transpose(1, 2)
    vals, vecs = torch.linalg.eigh(m)
    exact = vecs @ torch.diag_embed(vals.rsqrt()) @ vecs.transpose(1, 2)
    torch.testing.assert_close(inv_sqrt_spd(m), exact)
    # 3·I has one eigenvalue three times: eigh's gradient is not finite there, this one is
    iso = (3 * torch.eye(3, dtype=torch.float64)).requires_grad_()
    inv_sqrt_spd(iso[None]).sum().backward()
    assert bool(torch.isfinite(iso.grad).all())
    torch.testing.assert_close(
        inv_sqrt_spd(iso[None].detach())[0], torch.eye(3, dtype=torch.float64) / 3**0.5
    )


@pytest.mark.parametrize("kind", ["diagonal", "general", "orthogonal"])
def test_sheaf_trains_on_a_csbm_without_diverging(kind):
    from depthlab import DataSpec, RunSpec, TrainSpec, run

    spec = RunSpec(
        arch=ArchSpec(family="sheaf", depth=2, width=8, stalk_dim=2, sheaf_maps=kind),
        data=DataSpec(name="csbm", n_samples=120, n_classes=2, homophily=0.2),
        train=TrainSpec(optimizer="adam", lr=0.01, epochs=5, batch_size=0),
    )
    result = run(spec, progress=False)
    assert result.state.value == "COMPLETE", result.error


def test_the_diagonal_fast_path_equals_the_matrix_path():
    """A diagonal-map layer against the same layer computed with (E, d, d) matrices."""
    ei = _graph()
    spec = ArchSpec(family="sheaf", depth=1, width=6, stalk_dim=D, sheaf_maps="diagonal")
    model = build_model(spec, in_shape=(4,), out_dim=2, graph=ei).double().eval()
    layer = model.layers[0]
    h = torch.randn(N, 6, dtype=torch.float64)
    ctx = model.prepare(h, ei)
    fast = layer(h, h, ctx)
    from depthlab.models.sheaf import sheaf_laplacian_apply

    m = layer.restriction_maps(h, ei)
    gram = torch.zeros(N, D, D, dtype=torch.float64).index_add_(0, ei[1], m.transpose(1, 2) @ m)
    vals, vecs = torch.linalg.eigh(gram + torch.eye(D, dtype=torch.float64))
    dis = vecs @ torch.diag_embed(vals.rsqrt()) @ vecs.transpose(1, 2)
    x = h.view(N, D, 2)
    y = layer.w2(layer.w1(x.transpose(1, 2)).transpose(1, 2))
    y = dis @ sheaf_laplacian_apply(dis @ y, m, ei, reverse_edges(ei, N))
    slow = layer.post((x - layer.act(y)).reshape(N, -1))
    torch.testing.assert_close(fast, slow)
