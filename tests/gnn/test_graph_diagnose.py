"""Every probe runs on every graph family (rows are nodes; the first rows' subgraph)."""

from __future__ import annotations

import pytest

from depthlab import ArchSpec, DataSpec, build_model
from depthlab.diagnosis import DEFAULT_PROBES, DiagnoseOptions, diagnose
from depthlab.diagnosis.sources import dataset_source

FAMILIES = ["gcn", "sage", "gin", "gat", "dagnn", "graph_transformer", "sheaf"]


@pytest.fixture(scope="module")
def source():
    return dataset_source(DataSpec(name="csbm", n_samples=80, n_classes=3, homophily=0.3))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_probe_runs_on_a_graph_family(source, family):
    batch, in_shape, out_dim, graph = source
    kw = {"sheaf_maps": "general"} if family == "sheaf" else {}
    spec = ArchSpec(family=family, depth=2, width=8, heads=2, stalk_dim=2, **kw)
    model = build_model(spec, in_shape=in_shape, out_dim=out_dim, graph=graph)
    probes = (*DEFAULT_PROBES, "smoothing", "homophily")
    options = DiagnoseOptions(probes=probes, seeds=1, ntk_samples=16, batch_size=32)
    result = diagnose(model, batch, options, progress=False)
    # mean-field theory covers plain fully connected nets only; everything else measures
    assert set(result["skipped"]) <= {"meanfield"}, result["skipped"]
    assert len(result["smoothing"]["layers"]) == 3
    assert result["verdict"]
