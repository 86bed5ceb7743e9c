"""Graph families: conformance on a graph, permutation equivariance, the first-rows subgraph."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import erdos_renyi_graph, to_undirected

from depthlab import ArchSpec, SpecError, build_model
from depthlab import _registry as reg
from depthlab.testing import check_arch

GRAPH_FAMILIES = ["gcn", "sage", "gin", "gat", "dagnn", "graph_transformer", "sheaf"]
N, F, C = 14, 5, 3


def _graph(n: int = N, p: float = 0.3, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    ei = to_undirected(erdos_renyi_graph(n, p))
    # a path through every node keeps the graph connected and every node in it
    path = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    return to_undirected(torch.cat([ei, path], dim=1))


def _families():
    return [f for f in GRAPH_FAMILIES if f in reg.ARCHS]


def _spec(family: str, **kw) -> ArchSpec:
    base = dict(family=family, depth=3, width=8, heads=2, stalk_dim=2, pe_dim=3)
    base.update(kw)
    return ArchSpec(**base)


CASES = [
    dict(norm="none", residual="none"),
    dict(norm="batch", residual="fixed", dropout=0.1),
    dict(norm="pair", residual="inv_sqrt_depth", initial_residual=0.2),
    dict(norm="layer", residual="rezero", act="tanh", init="xavier"),
]


@pytest.mark.parametrize("family", _families())
@pytest.mark.parametrize("case", range(len(CASES)))
def test_conformance_on_a_graph(family, case):
    check_arch(_spec(family, **CASES[case]), in_shape=(F,), out_dim=C, batch=N, graph=_graph())


@pytest.mark.parametrize("family", _families())
@pytest.mark.parametrize("norm", ["none", "batch", "pair"])
def test_permuting_the_nodes_permutes_the_outputs(family, norm):
    spec = _spec(family, norm=norm, initial_residual=0.1)
    ei = _graph()
    x = torch.randn(N, F, generator=torch.Generator().manual_seed(3))
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(4))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(N)
    model = build_model(spec, in_shape=(F,), out_dim=C, seed=0, graph=ei)
    permuted = build_model(spec, in_shape=(F,), out_dim=C, seed=0, graph=inv[ei])
    out = model.eval()(x)
    out_p = permuted.eval()(x[perm])
    torch.testing.assert_close(out_p, out[perm], atol=1e-5, rtol=1e-4)
    # the graph matters: the same features on another graph give other outputs
    other = build_model(spec, in_shape=(F,), out_dim=C, seed=0, graph=_graph(seed=9))
    assert not torch.allclose(other.eval()(x), out, atol=1e-4)


@pytest.mark.parametrize("family", _families())
def test_the_first_rows_run_on_their_induced_subgraph(family):
    from torch_geometric.utils import subgraph

    spec = _spec(family)
    ei = _graph()
    x = torch.randn(N, F, generator=torch.Generator().manual_seed(5))
    model = build_model(spec, in_shape=(F,), out_dim=C, seed=0, graph=ei).eval()
    sub = subgraph(torch.arange(6), ei, num_nodes=N)[0]
    alone = build_model(spec, in_shape=(F,), out_dim=C, seed=0, graph=sub).eval()
    torch.testing.assert_close(model(x[:6]), alone(x[:6]), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", _families())
def test_any_depth_builds_and_depth_counts_graph_layers(family):
    for depth in (0, 1, 12):
        model = build_model(_spec(family, depth=depth), in_shape=(F,), out_dim=C, graph=_graph())
        assert len(model.layers) == depth
        assert model(torch.randn(N, F)).shape == (N, C)


def test_a_graph_family_without_a_graph_is_one_clear_error():
    with pytest.raises(SpecError, match="gcn is a graph network and needs graph data"):
        build_model(ArchSpec(family="gcn"), in_shape=(F,), out_dim=C)


def test_gat_heads_must_divide_the_width():
    with pytest.raises(SpecError, match="heads"):
        build_model(_spec("gat", width=9, heads=2), in_shape=(F,), out_dim=C, graph=_graph())


def test_gcn_layer_is_the_normalised_adjacency_times_the_weights():
    """W·(Âh) against a dense D̃^{-1/2}(A + I)D̃^{-1/2} built by hand."""
    ei = _graph()
    spec = ArchSpec(family="gcn", depth=1, width=8, act="linear", init="xavier")
    model = build_model(spec, in_shape=(F,), out_dim=C, graph=ei).double().eval()
    x = torch.randn(N, F, dtype=torch.float64)
    a = torch.zeros(N, N, dtype=torch.float64)
    a[ei[0], ei[1]] = 1.0
    a = a + torch.eye(N, dtype=torch.float64)
    d = a.sum(1).rsqrt()
    a_hat = d[:, None] * a * d[None, :]
    lin = model.layers[0].lin
    h = model.embed(x)
    expected = model.readout(a_hat @ h @ lin.weight.T + lin.bias)
    torch.testing.assert_close(model(x), expected)


def test_pairnorm_fixes_the_mean_squared_distance_between_nodes():
    from depthlab.layers.pairnorm import PairNorm

    x = torch.randn(30, 4, dtype=torch.float64) * 5 + 3
    y = PairNorm(scale=2.0)(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(4, dtype=torch.float64))
    # Σ_{i,j} ‖y_i − y_j‖² = 2N Σ_i ‖y_i‖² = 2N²s²
    pair = torch.cdist(y, y).pow(2).sum()
    torch.testing.assert_close(pair, torch.tensor(2 * 30**2 * 4.0, dtype=torch.float64))
