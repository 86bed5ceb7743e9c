"""The verdict speaks graph: oversmoothing and heterophily on networks built to have them."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from depthlab import ArchSpec, DataSpec, RunSpec, build_model
from depthlab.diagnosis import DiagnoseOptions, diagnose
from depthlab.diagnosis.advice import candidate_fixes
from depthlab.diagnosis.graph_rules import MAD_FLOOR, oversmoothing
from depthlab.diagnosis.sources import dataset_source

RULES = DiagnoseOptions(probes=("signal", "correlation", "smoothing", "homophily"), seeds=1)


@pytest.fixture(scope="module")
def homophilous():
    return dataset_source(DataSpec(name="csbm", n_samples=300, n_classes=3, homophily=0.8))


@pytest.fixture(scope="module")
def heterophilous():
    return dataset_source(DataSpec(name="csbm", n_samples=300, n_classes=3, homophily=0.1))


def _diagnose(source, options=RULES, **arch):
    batch, in_shape, out_dim, graph = source
    spec = ArchSpec(width=32, act="relu", init="he", **arch)
    model = build_model(spec, in_shape=in_shape, out_dim=out_dim, seed=0, graph=graph)
    return diagnose(model, batch, options, progress=False), model


def _found(result):
    return {f["verdict"]: f for f in result["findings"]}


def test_a_64_layer_gcn_is_oversmoothed_with_energy_and_mad_evidence(homophilous):
    result, _ = _diagnose(homophilous, family="gcn", depth=64)
    found = _found(result)
    assert result["verdict"] == "oversmoothing", result["findings"]
    smooth = result["smoothing"]
    last = smooth["layers"][-1]
    assert last["mad"] < MAD_FLOOR
    evidence, advice = found["oversmoothing"]["evidence"], found["oversmoothing"]["advice"]
    # depth is the user's 64 message-passing layers; the input and output maps are named apart
    assert "of 64 onward" in evidence and "at layer 64" in evidence
    assert "input map embed.0 and output map readout" in evidence
    assert f"{last['normalized_energy']:.2g} at layer 64" in evidence
    assert f"→ {last['mad']:.2g}" in evidence
    assert "e-folds per layer" in evidence
    for remedy in ("arch.initial_residual", "arch.norm: pair", "arch.family: dagnn"):
        assert remedy in advice
    # the generic correlation rule does not speak for a graph network
    assert "correlation collapse" not in found and "chaotic" not in found
    assert result["architecture"]["kind"] == "graph"
    assert result["architecture"]["graph_layers"] == ["GCNLayer"]


def test_a_2_layer_gcn_is_not_oversmoothed(homophilous):
    result, _ = _diagnose(homophilous, family="gcn", depth=2)
    assert "oversmoothing" not in _found(result)
    assert result["smoothing"]["layers"][-1]["mad"] > 100 * MAD_FLOOR


def _train_accuracy(model, batch, epochs: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(model(batch.x), batch.y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(batch.x).argmax(1) == batch.y).float().mean())


def test_a_64_layer_gcnii_trains_and_is_not_called_oversmoothed():
    """Initial residual (GCNII) at 64 layers: no oversmoothing finding, and training on the same
    graph shows it was right (the plain GCN of the same depth, the control, stays near chance)."""
    source = dataset_source(DataSpec(name="csbm", n_samples=120, n_classes=3, homophily=0.8))
    batch = source[0]
    gcnii, model = _diagnose(source, family="gcn", depth=64, initial_residual=0.1)
    plain, control = _diagnose(source, family="gcn", depth=64)
    assert "oversmoothing" not in _found(gcnii)
    assert "oversmoothing" in _found(plain)
    assert _train_accuracy(model, batch, epochs=30) >= 0.9
    assert _train_accuracy(control, batch, epochs=30) <= 0.6


def test_dagnn_is_outside_the_rule_even_though_its_steps_smooth(homophilous):
    """DAGNN's output weighs every propagation step: the last step's smoothing is not the
    output's, so the rule is silent (its domain) although the steps themselves collapse."""
    result, _ = _diagnose(homophilous, family="dagnn", depth=64)
    assert result["smoothing"]["readout_reads_last"] is False
    assert result["smoothing"]["layers"][-1]["mad"] < MAD_FLOOR
    assert "oversmoothing" not in _found(result)


def test_low_homophily_gcn_gets_heterophily_and_sheaf_or_sage_do_not(heterophilous):
    gcn, _ = _diagnose(heterophilous, family="gcn", depth=2)
    found = _found(gcn)
    assert "heterophily" in found
    adjusted = gcn["homophily"]["class_adjusted"]
    assert f"class-adjusted homophily {adjusted:.2f}" in found["heterophily"]["evidence"]
    assert "arch.family: sheaf" in found["heterophily"]["advice"]
    # a warning: it qualifies the accuracy to expect, it does not decide trainability alone
    assert gcn["verdict"] != "heterophily"
    for family in ("sheaf", "sage"):
        other, _ = _diagnose(heterophilous, family=family, depth=2)
        assert "heterophily" not in _found(other), family


def test_a_homophilous_graph_gets_no_heterophily_finding(homophilous):
    result, _ = _diagnose(homophilous, family="gcn", depth=2)
    assert result["homophily"]["class_adjusted"] > 0.5
    assert "heterophily" not in _found(result)


def _smoothing_rows(mads, ratios):
    rows = [{"name": "input", "mad": 1.0, "energy_ratio": 1.0, "normalized_energy": 1.0}]
    for i, (m, r) in enumerate(zip(mads, ratios, strict=True), start=1):
        rows.append({"name": f"layer{i}", "mad": m, "energy_ratio": r, "normalized_energy": r})
    return {
        "layers": rows,
        "decay": {"normalized_rate": 1.0},
        "readout_reads_last": True,
        "message_passing_layers": len(mads),
    }


def test_the_rule_reports_the_layer_from_which_every_later_one_is_indistinguishable():
    # a transient dip at layer 2 does not count; from layer 4 on every layer is flat
    smooth = _smoothing_rows([0.5, 1e-5, 0.3, 1e-5, 1e-6], [1.0, 0.5, 0.6, 1e-3, 1e-5])
    found = oversmoothing({"smoothing": smooth})
    assert found is not None and found["layer"] == 4 and found["depth"] == 5
    # an energy ratio 10⁴× below its peak counts, even with MAD above the floor
    smooth = _smoothing_rows([0.5, 0.4, 0.3], [2.0, 0.1, 1e-4])
    assert oversmoothing({"smoothing": smooth})["layer"] == 3
    # outside the domain: the readout reads more than the last layer, or unknown
    smooth["readout_reads_last"] = False
    assert oversmoothing({"smoothing": smooth}) is None
    smooth["readout_reads_last"] = None
    assert oversmoothing({"smoothing": smooth}) is None


def test_oversmoothing_fixes_are_graph_edits():
    spec = RunSpec.from_dict({"arch": {"family": "gcn", "depth": 64, "width": 32}})
    edits = candidate_fixes("oversmoothing", spec)
    assert edits[:3] == [
        {"arch.initial_residual": 0.1},
        {"arch.norm": "pair"},
        {"arch.family": "dagnn"},
    ]
    assert candidate_fixes("heterophily", spec)[0] == {"arch.family": "sheaf", "arch.stalk_dim": 2}


def test_graph_fixes_stay_among_graph_families():
    mlp = RunSpec.from_dict({"arch": {"family": "mlp", "depth": 8, "width": 32}})
    for verdict in ("oversmoothing", "heterophily"):
        assert all("arch.family" not in e for e in candidate_fixes(verdict, mlp))


def test_default_probes_of_a_graph_network_include_the_graph_probes():
    source = dataset_source(DataSpec(name="csbm", n_samples=60, n_classes=3, homophily=0.8))
    result, _ = _diagnose(source, DiagnoseOptions(seeds=1), family="gcn", depth=2)
    assert {"smoothing", "homophily"} <= set(result["probes"])
    assert result["probes"]["smoothing"]["status"] == "ok"


class PyGStack(torch.nn.Module):
    """A user's module: PyG GCNConv layers in its own list, the graph held as a buffer; on the
    first n rows alone it runs on the subgraph they induce (the contract probes rely on)."""

    def __init__(self, edge_index, in_dim, width, out_dim, depth):
        from torch_geometric.nn import GCNConv

        super().__init__()
        self.register_buffer("edge_index", edge_index)
        self.inp = torch.nn.Linear(in_dim, width)
        self.convs = torch.nn.ModuleList(GCNConv(width, width) for _ in range(depth))
        self.out = torch.nn.Linear(width, out_dim)

    def forward(self, x):
        from torch_geometric.utils import subgraph

        edges = self.edge_index
        if len(x) <= int(edges.max()):
            edges = subgraph(torch.arange(len(x)), edges, num_nodes=int(edges.max()) + 1)[0]
        h = self.inp(x).relu()
        for conv in self.convs:
            h = conv(h, edges).relu()
        return self.out(h)


@pytest.mark.parametrize("depth", [2, 48])
def test_a_users_pyg_stack_is_judged_by_the_same_rules(homophilous, heterophilous, depth):
    for source in (homophilous, heterophilous):
        batch, in_shape, out_dim, graph = source
        torch.manual_seed(0)
        model = PyGStack(graph, in_shape[0], 32, out_dim, depth)
        result = diagnose(model, batch, RULES, progress=False)
        found = _found(result)
        assert result["architecture"]["graph_layers"] == ["GCNConv"]
        assert result["smoothing"]["message_passing_layers"] == depth
        assert result["smoothing"]["input_maps"] == ["inp"]
        assert result["smoothing"]["output_maps"] == ["out"]
        assert ("oversmoothing" in found) == (depth == 48), found
        assert ("heterophily" in found) == (source is heterophilous)
