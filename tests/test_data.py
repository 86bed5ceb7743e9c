"""Datasets: every registered one loads; splits are deterministic; standardisation is fitted on
the training part only; user files are checked and fail with one clear message."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthlab import DataError, DataSpec, load_data
from depthlab import _registry as reg

BUILTIN = [
    "digits",
    "breast_cancer",
    "wine",
    "iris",
    "diabetes",
    "mnist1d",
    "mnist1d_shuffled",
    "teacher",
]
EXPECTED = {  # (samples, features, classes or 0 for regression)
    "digits": (1797, 64, 10),
    "breast_cancer": (569, 30, 2),
    "wine": (178, 13, 3),
    "iris": (150, 4, 3),
    "diabetes": (442, 10, 0),
    "mnist1d": (5000, 40, 10),
    "mnist1d_shuffled": (5000, 40, 10),
    "teacher": (2000, 20, 10),
}


def test_every_registered_dataset_is_covered():
    # graph datasets (csbm, karate) are covered by tests/gnn/test_graph_data.py
    assert set(reg.DATASETS.names()) == set(BUILTIN) | {"npz", "csv", "csbm", "karate"}


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_datasets_load_with_their_shapes(name):
    ds = load_data(DataSpec(name=name))
    n, features, classes = EXPECTED[name]
    assert sum(ds.sizes().values()) == n
    assert ds.in_shape == (features,)
    assert ds.n_classes == classes
    assert ds.task == ("classification" if classes else "regression")
    assert ds.x_train.dtype == torch.float32
    for part in ("train", "val", "test"):
        x, y = ds.split(part)
        assert torch.isfinite(x).all() and len(x) == len(y)


def test_split_is_deterministic_and_seeded():
    a, b = load_data(DataSpec(name="wine", seed=3)), load_data(DataSpec(name="wine", seed=3))
    c = load_data(DataSpec(name="wine", seed=4))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    sizes = a.sizes()
    assert sizes["test"] == round(0.2 * 178) and sizes["val"] == round(0.1 * 178)


def test_standardisation_uses_the_training_part_only():
    ds = load_data(DataSpec(name="breast_cancer", seed=1))
    x = ds.x_train.double()
    assert torch.allclose(x.mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(x.std(0, unbiased=False), torch.ones(30, dtype=torch.float64), atol=1e-4)
    # The test part is transformed with the training moments, so its own are not exactly 0 / 1.
    assert ds.x_test.double().mean(0).abs().max() > 1e-3


def test_mnist1d_keeps_its_canonical_test_split_and_global_rng_state():
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    ds = load_data(DataSpec(name="mnist1d", val_fraction=0.0))
    assert np.random.rand() == expected_next
    assert ds.sizes() == {"train": 4000, "val": 0, "test": 1000}
    shuffled = load_data(DataSpec(name="mnist1d_shuffled", val_fraction=0.0))
    assert torch.equal(ds.y_test, shuffled.y_test)
    assert not torch.allclose(ds.x_test, shuffled.x_test)


def test_teacher_regression_and_noise():
    spec = DataSpec(name="teacher", task="regression", n_samples=300, n_features=5, noise=0.1)
    ds = load_data(spec)
    assert ds.task == "regression" and ds.out_dim == 1 and ds.in_shape == (5,)
    assert torch.equal(load_data(spec).y_train, ds.y_train)


def test_npz_and_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_data(DataSpec(name="npz", path=str(tmp_path / "d.npz")))
    assert ds.n_classes == 2 and ds.in_shape == (3,)
    rows = ["a,b,label,c"] + [f"{p},{q},{t},{r}" for (p, q, r), t in zip(x, y, strict=True)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    ds = load_data(DataSpec(name="csv", path=str(tmp_path / "d.csv"), target="label"))
    assert ds.n_classes == 2 and ds.in_shape == (3,)


@pytest.mark.parametrize(
    "case,match",
    [
        ("missing", "data file not found"),
        ("no_y", "no array 'y'; the file holds: x"),
        ("mismatch", "x has 10 samples but y has 9"),
        ("nan", "NaN/inf values"),
        ("not_npz", "not a readable .npz"),
        ("csv_target", "target column 'nope' not found; columns: a, b"),
        ("csv_text", "non-numeric value"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, case, match):
    p = tmp_path / "d.npz"
    name, target = "npz", ""
    if case == "no_y":
        np.savez(p, x=np.zeros((10, 2)))
    elif case == "mismatch":
        np.savez(p, x=np.zeros((10, 2)), y=np.zeros(9))
    elif case == "nan":
        x = np.zeros((10, 2))
        x[3, 1] = np.nan
        np.savez(p, x=x, y=np.zeros(10))
    elif case == "not_npz":
        p.write_text("hello")
    elif case.startswith("csv"):
        p = tmp_path / "d.csv"
        p.write_text("a,b\n1,2\n3,x\n" if case == "csv_text" else "a,b\n1,2\n3,4\n")
        name, target = "csv", "nope" if case == "csv_target" else "b"
    with pytest.raises(DataError, match=match) as info:
        load_data(DataSpec(name=name, path=str(p), target=target))
    assert "\n" not in str(info.value)
