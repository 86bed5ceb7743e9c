"""A sweep over depth × family × homophily through the sweep CLI; its report's graph section."""

from __future__ import annotations

import pytest
import yaml

from depthlab.testing.cli import run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("gnn-sweep")
    sweep = {
        "base": {
            "arch": {"family": "gcn", "depth": 1, "width": 8},
            "data": {"name": "csbm", "n_samples": 60, "n_classes": 2, "degree": 4},
            "train": {"optimizer": "adam", "lr": 0.01, "epochs": 5, "batch_size": 0},
        },
        "axes": {
            "arch.depth": [1, 4],
            "arch.family": ["gcn", "sheaf"],
            "data.homophily": [0.1, 0.9],
        },
        "seeds": [0],
        "probes": ["smoothing", "homophily"],
    }
    (root / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    store = root / "runs.db"
    res = run_cli(
        "sweep", str(root / "sweep.yaml"), "--store", str(store), "--workers", "1", "--quiet"
    )
    assert res.returncode == 0, res.stderr
    res = run_cli("report", "--store", str(store), "--out", str(root / "report"))
    assert res.returncode == 0, res.stderr
    return root


def test_every_graph_run_completes_and_is_diagnosed(swept):
    from depthlab.store.sqlite import SQLiteStore

    with SQLiteStore(swept / "runs.db") as store:
        records = store.runs()
    assert [r.state.value for r in records] == ["COMPLETE"] * 8
    for r in records:
        diagnosis = r.probes["diagnose"]
        assert len(diagnosis["smoothing"]["layers"]) == r.spec["arch"]["depth"] + 1
        assert abs(diagnosis["homophily"]["edge"] - r.spec["data"]["homophily"]) < 0.15


def test_report_shows_the_oversmoothing_and_heterophily_diagrams(swept):
    page = (swept / "report" / "index.html").read_text()
    assert "id='graphs'" in page
    for name in ("oversmoothing.png", "heterophily.png"):
        assert f"src='{name}'" in page
        assert (swept / "report" / name).read_bytes()[:8] == PNG_MAGIC
