"""Graph data: the CSBM's homophily, the karate club, a user's npz graph and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from depthlab import DataError, DataSpec, RunSpec, load_data
from depthlab.testing.cli import run_cli


def _edge_homophily(ei: torch.Tensor, y: torch.Tensor) -> float:
    return float((y[ei[0]] == y[ei[1]]).double().mean())


@pytest.mark.parametrize("homophily", [0.0, 0.1, 0.2, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("classes", [2, 5])
def test_csbm_edge_homophily_is_within_003_of_the_request(homophily, classes):
    data = load_data(
        DataSpec(name="csbm", n_samples=600, n_classes=classes, homophily=homophily, seed=3)
    )
    measured = _edge_homophily(data.edge_index, data.y_train)
    assert abs(measured - homophily) <= 0.03, measured


def test_csbm_shape_degree_balance_and_seed():
    spec = DataSpec(name="csbm", n_samples=500, n_classes=4, n_features=7, degree=6.0, seed=1)
    a, b = load_data(spec), load_data(spec)
    assert a.x_train.shape == (500, 7) and a.n_classes == 4
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x_train, b.x_train)
    other = load_data(spec.replace(seed=2))
    assert not torch.equal(other.edge_index, a.edge_index)
    assert a.edge_index.shape[1] == 500 * 6  # both directions of N·degree/2 edges
    counts = torch.bincount(a.y_train)
    assert counts.max() - counts.min() <= 1
    # undirected, no self-loops, no repeats
    ei = a.edge_index
    assert not bool((ei[0] == ei[1]).any())
    pairs = set(map(tuple, ei.T.tolist()))
    assert len(pairs) == ei.shape[1] and all((v, u) in pairs for u, v in pairs)


def test_csbm_signal_separates_the_class_means():
    """Distance between class means ≈ signal (features before standardisation are N(μ, I))."""
    spec = DataSpec(
        name="csbm", n_samples=4000, n_classes=2, n_features=10, signal=3.0, standardize=False
    )
    d = load_data(spec)
    x, y = d.x_train.double(), d.y_train
    gap = (x[y == 0].mean(0) - x[y == 1].mean(0)).norm()
    assert abs(float(gap) - 3.0) < 0.15


def test_masks_split_the_nodes_and_standardise_on_the_training_nodes():
    d = load_data(DataSpec(name="csbm", n_samples=300, val_fraction=0.2, test_fraction=0.3))
    m = d.masks
    assert d.sizes() == {"train": 150, "val": 60, "test": 90}
    assert not bool((m["train"] & m["val"]).any() | (m["train"] & m["test"]).any())
    assert bool((m["train"] | m["val"] | m["test"]).all())
    xt = d.x_train[m["train"]].double()
    torch.testing.assert_close(xt.mean(0), torch.zeros(xt.shape[1], dtype=torch.float64))


def test_karate_club():
    d = load_data(DataSpec(name="karate"))
    assert d.x_train.shape == (34, 34) and d.edge_index.shape == (2, 156) and d.n_classes == 4


def _write(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _good(n=20):
    rng = np.random.default_rng(0)
    ei = np.stack([np.arange(n - 1), np.arange(1, n)])
    return dict(x=rng.standard_normal((n, 3)), y=np.arange(n) % 2, edge_index=ei)


def test_npz_graph_with_and_without_masks(tmp_path):
    arrays = _good()
    d = load_data(DataSpec(name="npz", path=_write(tmp_path / "g.npz", **arrays)))
    assert d.is_graph and d.edge_index.shape == (2, 38) and sum(d.sizes().values()) == 20
    train = np.zeros(20, bool)
    train[:8] = True
    test = ~train
    d = load_data(
        DataSpec(
            name="npz",
            standardize=False,
            path=_write(tmp_path / "m.npz", train_mask=train, test_mask=test, **arrays),
        )
    )
    assert d.sizes() == {"train": 8, "val": 0, "test": 12}
    np.testing.assert_allclose(d.x_train.numpy(), arrays["x"].astype(np.float32))


BAD = {
    "out of range": (
        dict(edge_index=np.array([[0, 1], [1, 20]])),
        "edge_index holds node index 20, out of range for 20 nodes",
    ),
    "negative": (dict(edge_index=np.array([[0, -1], [1, 2]])), "edge_index holds node index -1"),
    "shape": (
        dict(edge_index=np.zeros((3, 4), int)),
        r"edge_index must have shape \(2, E\), got \(3, 4\)",
    ),
    "float edges": (
        dict(edge_index=np.zeros((2, 4))),
        "edge_index holds float64 values; expected integers",
    ),
    "nan": (dict(x=np.full((20, 3), np.nan)), "x has 60 NaN/inf values"),
    "mask dtype": (
        dict(train_mask=np.ones(20, int)),
        r"train_mask must be a boolean array of shape \(20,\)",
    ),
    "mask length": (
        dict(train_mask=np.ones(7, bool)),
        r"train_mask must be a boolean array of shape \(20,\)",
    ),
    "y length": (dict(y=np.zeros(19, int)), "x has 20 samples but y has 19"),
    "x shape": (dict(x=np.zeros((20, 3, 2))), r"x must have shape \(nodes, features\)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_graph_files_name_the_array_and_the_problem(tmp_path, case):
    change, message = BAD[case]
    path = _write(tmp_path / "bad.npz", **{**_good(), **change})
    with pytest.raises(DataError, match=message):
        load_data(DataSpec(name="npz", path=path))


def test_train_cli_end_to_end_and_a_bad_graph_exits_2(tmp_path):
    spec = RunSpec.from_dict(
        {
            "arch": {"family": "gcn", "depth": 2, "width": 16},
            "data": {"name": "csbm", "n_samples": 300, "n_classes": 2, "homophily": 0.9},
            "train": {"optimizer": "adam", "lr": 0.02, "epochs": 30, "batch_size": 0},
        }
    )
    (tmp_path / "run.yaml").write_text(spec.to_yaml())
    res = run_cli(
        "train", str(tmp_path / "run.yaml"), "--quiet", "--json", str(tmp_path / "r.json")
    )
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert metrics["test_accuracy"] > 0.85  # homophilous CSBM: GCN averages the noise away

    bad = _write(tmp_path / "bad.npz", **{**_good(), "edge_index": np.array([[0, 1], [1, 99]])})
    spec = spec.replace(data=spec.data.replace(name="npz", path=bad))
    (tmp_path / "bad.yaml").write_text(spec.to_yaml())
    res = run_cli("train", str(tmp_path / "bad.yaml"), "--quiet")
    assert res.returncode == 2
    assert "edge_index holds node index 99" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
