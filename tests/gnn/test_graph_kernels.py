"""The NTK and Jacobian of a graph network are the full-graph ones: dense autograd oracles."""

from __future__ import annotations

import copy

import pytest
import torch

from depthlab import ArchSpec, DataSpec, build_model, load_data
from depthlab import _registry as reg
from depthlab.probes.base import ProbeBatch
from depthlab.probes.graph_kernels import is_graph_model
from depthlab.probes.jacobian import JacobianParams
from depthlab.probes.ntk import NTKParams
from depthlab.probes.ntk_func import jacobian_kernel

NODES = 10


@pytest.fixture(scope="module")
def graph():
    d = load_data(DataSpec(name="csbm", n_samples=24, n_classes=3, homophily=0.6, n_features=5))
    return d, ProbeBatch.from_tensors(d.x_train, d.y_train)


def _model(graph, family):
    d, _ = graph
    spec = ArchSpec(family=family, depth=2, width=8, heads=2, sheaf_maps="general")
    return build_model(spec, in_shape=d.in_shape, out_dim=3, seed=0, graph=d.edge_index)


def _dense_ntk(model, x, nodes):
    """Θ_ij = Σ_k ⟨∂F_ik/∂θ, ∂F_jk/∂θ⟩ by one autograd call per (node, output), float64."""
    net = copy.deepcopy(model).double().eval()
    params = [p for p in net.parameters() if p.requires_grad]
    out = net(x.double())
    theta = torch.zeros(nodes, nodes, dtype=torch.float64)
    for k in range(out.shape[1]):
        rows = []
        for i in range(nodes):
            grads = torch.autograd.grad(out[i, k], params, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g).flatten()
                        for p, g in zip(params, grads, strict=True)
                    ]
                )
            )
        jac = torch.stack(rows)
        theta += jac @ jac.T
    return theta


@pytest.mark.parametrize("family", ["gcn", "gat", "sheaf"])
def test_graph_ntk_matches_a_dense_full_graph_oracle(graph, family):
    _, batch = graph
    model = _model(graph, family)
    assert is_graph_model(model)
    probe = reg.PROBES.get("ntk")(NTKParams(samples=NODES, return_kernel=True))
    result = probe.run(model, batch)
    assert result["method"] == "graph" and result["n_samples"] == NODES
    theta = torch.tensor(result["kernel"], dtype=torch.float64)
    oracle = _dense_ntk(model, batch.x, NODES)
    assert float((theta - oracle).norm() / oracle.norm()) <= 1e-5
    # the per-node kernel of the subgraph of the first rows (what treating nodes as samples
    # gives) is a different matrix: the nodes are coupled
    per_node = jacobian_kernel(
        copy.deepcopy(model).double().eval(),
        batch.x[:NODES].double(),
        [n for n, p in model.named_parameters() if p.requires_grad],
        budget=10**8,
    )
    assert float((per_node - oracle).norm() / oracle.norm()) > 0.05


def test_graph_jacobian_matches_a_dense_full_graph_oracle(graph):
    _, batch = graph
    model = _model(graph, "gcn").eval()
    probe = reg.PROBES.get("jacobian")(JacobianParams(samples=NODES))
    result = probe.run(model, batch)
    full = torch.autograd.functional.jacobian(lambda z: model(z)[:NODES], batch.x)
    # (S, K, N, F): node i's output against every node's input
    per_node = full.reshape(NODES, full.shape[1], -1).double()
    expected = torch.linalg.svdvals(per_node).flatten().sort(descending=True).values
    got = torch.tensor(result["singular_values"], dtype=torch.float64)
    assert result["n_samples"] == NODES
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7 * float(expected[0]))
    # neighbours' inputs matter: node 0's Jacobian has non-zero blocks beyond its own
    blocks = full[0].reshape(full.shape[1], len(batch.x), -1).norm(dim=(0, 2))
    assert int((blocks > 0).sum()) > 1
