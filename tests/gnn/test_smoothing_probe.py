"""Smoothing and homophily probes: formulas on hand graphs, oversmoothing seen, diagnose JSON."""

from __future__ import annotations

import json
import math

import pytest
import torch

from depthlab import ArchSpec, DataSpec, RunSpec, build_model, load_data
from depthlab import _registry as reg
from depthlab.exceptions import ProbeError
from depthlab.probes.base import ProbeBatch
from depthlab.probes.smoothing import (
    dirichlet_energy,
    fit_decay,
    homophily,
    mean_average_distance,
    normalized_dirichlet_energy,
)
from depthlab.testing.cli import run_cli


def _both(pairs):
    e = torch.tensor(pairs).T
    return torch.cat([e, e.flip(0)], dim=1)


PATH = _both([(0, 1), (1, 2), (2, 3)])  # 0 - 1 - 2 - 3
TRIANGLE_AND_TAIL = _both([(0, 1), (1, 2), (0, 2), (2, 3)])


def test_dirichlet_energy_on_a_path_by_hand():
    x = torch.tensor([[0.0], [1.0], [3.0], [3.0]])
    # edges both ways: 2·(1² + 2² + 0²) = 10, over N = 4 nodes
    assert dirichlet_energy(x, PATH) == pytest.approx(10 / 4)
    # normalised: degrees 1, 2, 2, 1 → x/√(1+d) = 0, 1/√3, 3/√3, 3/√2
    v = [0, 1 / math.sqrt(3), 3 / math.sqrt(3), 3 / math.sqrt(2)]
    by_hand = 2 * ((v[0] - v[1]) ** 2 + (v[1] - v[2]) ** 2 + (v[2] - v[3]) ** 2) / 4
    assert normalized_dirichlet_energy(x, PATH) == pytest.approx(by_hand)


def test_dirichlet_energy_is_the_laplacian_quadratic_form():
    """(1/N) Σ_i Σ_{j∈N(i)} ‖X_i − X_j‖² = (2/N) tr(Xᵀ L X), L = D − A."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    a = torch.zeros(4, 4, dtype=torch.float64)
    a[TRIANGLE_AND_TAIL[0], TRIANGLE_AND_TAIL[1]] = 1
    lap = torch.diag(a.sum(1)) - a
    assert dirichlet_energy(x, TRIANGLE_AND_TAIL) == pytest.approx(
        float(2 * torch.trace(x.T @ lap @ x) / 4)
    )
    # constant features have zero energy and zero mean average distance
    const = torch.ones(4, 3)
    assert dirichlet_energy(const, TRIANGLE_AND_TAIL) == 0.0
    assert mean_average_distance(const, TRIANGLE_AND_TAIL) == pytest.approx(0.0, abs=1e-12)


def test_mean_average_distance_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
    # cosines: (0,1) 0, (1,2) 0, (2,3) −1/√2; MAD = mean of 1 − cos over the 6 directed edges
    expected = (1 + 1 + (1 + 1 / math.sqrt(2))) / 3
    assert mean_average_distance(x, PATH) == pytest.approx(expected)


def _homophily_by_loops(ei, y):
    edges = list(zip(ei[0].tolist(), ei[1].tolist(), strict=True))
    edge = sum(y[u] == y[v] for u, v in edges) / len(edges)
    per_node = []
    for i in range(len(y)):
        nb = [u for u, v in edges if v == i]
        if nb:
            per_node.append(sum(y[u] == y[i] for u in nb) / len(nb))
    c = max(y) + 1
    adj = 0.0
    for k in range(c):
        out_k = [(u, v) for u, v in edges if y[v] == k]
        h_k = sum(y[u] == k for u, _ in out_k) / len(out_k)
        adj += max(0.0, h_k - y.count(k) / len(y))
    return edge, sum(per_node) / len(per_node), adj / (c - 1)


def test_homophily_against_python_loops():
    d = load_data(DataSpec(name="csbm", n_samples=80, n_classes=3, homophily=0.4, degree=3))
    h = homophily(d.edge_index, d.y_train)
    edge, node, adj = _homophily_by_loops(d.edge_index, d.y_train.tolist())
    assert h["edge"] == pytest.approx(edge)
    assert h["node"] == pytest.approx(node)
    assert h["class_adjusted"] == pytest.approx(adj, abs=1e-6)


def test_fit_decay_recovers_an_exponential():
    out = fit_decay([5.0 * math.exp(-0.7 * k) for k in range(10)])
    assert out["rate"] == pytest.approx(0.7)
    assert out["per_layer"] == pytest.approx([0.7] * 9)


@pytest.fixture(scope="module")
def csbm():
    d = load_data(DataSpec(name="csbm", n_samples=300, n_classes=3, homophily=0.7))
    return d, ProbeBatch.from_tensors(d.x_train, d.y_train)


def _smoothing(csbm, **arch):
    d, batch = csbm
    spec = ArchSpec(depth=16, width=32, **arch)
    model = build_model(spec, in_shape=d.in_shape, out_dim=3, seed=0, graph=d.edge_index)
    return reg.PROBES.get("smoothing")().run(model, batch)


def test_a_deep_gcn_oversmooths_and_initial_residual_does_not(csbm):
    """Negative control included: the same probe on GCNII-style layers sees no decay."""
    plain = _smoothing(csbm, family="gcn")
    remedied = _smoothing(csbm, family="gcn", initial_residual=0.2)
    assert [r["name"] for r in plain["layers"]] == ["input"] + [f"layer{i}" for i in range(1, 17)]
    assert plain["decay"]["relative_rate"] > 0.3
    assert plain["layers"][-1]["mad"] < 1e-3
    assert abs(remedied["decay"]["relative_rate"]) < 0.1
    assert remedied["layers"][-1]["mad"] > 0.05
    # the fit agrees with the first and last layers' ratio
    rows = plain["layers"][1:]
    slope = math.log(rows[0]["energy_ratio"] / rows[-1]["energy_ratio"]) / (len(rows) - 1)
    assert plain["decay"]["relative_rate"] == pytest.approx(slope, rel=0.3)


def test_graph_probes_skip_a_network_without_a_graph(csbm):
    _, batch = csbm
    mlp = build_model(ArchSpec(depth=2, width=8), in_shape=(20,), out_dim=3)
    for name in ("smoothing", "homophily"):
        with pytest.raises(ProbeError, match="needs a graph network"):
            reg.PROBES.get(name)().run(mlp, batch)


def test_diagnose_json_of_a_graph_model(tmp_path):
    spec = RunSpec.from_dict(
        {
            "arch": {"family": "gcn", "depth": 4, "width": 16},
            "data": {"name": "csbm", "n_samples": 200, "n_classes": 2, "homophily": 0.3},
        }
    )
    (tmp_path / "g.yaml").write_text(spec.to_yaml())
    out = tmp_path / "d.json"
    res = run_cli(
        "diagnose", "--spec", str(tmp_path / "g.yaml"), "--probes", "all", "--json", str(out)
    )
    assert res.returncode == 0, res.stderr
    d = json.loads(out.read_text())
    layers = d["smoothing"]["layers"]
    assert [r["name"] for r in layers] == ["input", "layer1", "layer2", "layer3", "layer4"]
    assert set(layers[0]) >= {"name", "dirichlet_energy", "mad"}
    data = load_data(spec.data)
    assert layers[0]["dirichlet_energy"] == pytest.approx(
        dirichlet_energy(data.x_train, data.edge_index)
    )
    assert d["homophily"] == pytest.approx(homophily(data.edge_index, data.y_train))
    assert abs(d["homophily"]["edge"] - 0.3) <= 0.05
    # the existing probes run on the graph network, not skipped
    for probe in ("signal", "gradients", "ntk", "hessian"):
        assert probe in d and probe not in d["skipped"], d["skipped"]
