"""``depthlab convex fit`` and ``convex gap`` as a user runs them; the all-train data split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from depthlab.data import load_data
from depthlab.spec import DataSpec
from depthlab.testing.cli import run_cli


def _npz(tmp_path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    return path


def test_fit_npz_json_and_saved_network(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 2))
    y = np.sin(2 * x[:, 0]) + 0.3 * x[:, 1]
    out, net_path = tmp_path / "fit.json", tmp_path / "net.pt"
    proc = run_cli(
        "convex", "fit", "--data", str(_npz(tmp_path, x, y)), "--lam", "0.01",
        "--json", str(out), "--save", str(net_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    for key in ("objective", "lower_bound", "certified", "n_patterns", "neurons", "solver"):
        assert key in res
    assert res["certified"] is True
    assert res["lower_bound"] <= res["objective"]
    net = torch.load(net_path, weights_only=False)
    with torch.no_grad():
        pred = net(torch.from_numpy(x)).reshape(-1).numpy()
    pen = sum(float((p.detach() ** 2).sum()) for p in net.parameters())
    obj = ((pred - y) ** 2).sum() / (2 * len(y)) + 0.01 / 2 * pen
    assert obj == pytest.approx(res["objective"], rel=1e-9)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--lam", "0"], "lam"),
        (["--lam", "-1"], "lam"),
        (["--lam", "0.01", "--loss", "logistic"], "binary"),
        (["--lam", "0.01", "--patterns", "many"], "patterns"),
        (["--lam", "0.01", "--model", "tanh"], "model"),
    ],
)
def test_fit_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    x = np.random.default_rng(0).standard_normal((9, 2))
    path = _npz(tmp_path, x, np.arange(9) % 3)
    proc = run_cli("convex", "fit", "--data", str(path), *args)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_fit_exact_on_high_rank_data_is_refused(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((12, 4))
    proc = run_cli("convex", "fit", "--data", str(_npz(tmp_path, x, x[:, 0])), "--lam", "0.1")
    assert proc.returncode == 2
    assert "rank" in proc.stderr and "choices" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_gap_of_an_adam_trained_net_is_certified_and_non_negative(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 2))
    y = np.abs(x[:, 0]) - 0.5 * x[:, 1]
    data = _npz(tmp_path, x, y.astype(np.float64))
    spec = tmp_path / "run.yaml"
    spec.write_text(
        "arch:  {family: mlp, depth: 1, width: 16, act: relu, init: he}\n"
        f"data:  {{name: npz, path: {data}, val_fraction: 0, test_fraction: 0,"
        " standardize: false}\n"
        "train: {optimizer: adam, lr: 0.01, epochs: 300, batch_size: 0, seed: 0}\n"
    )
    out = tmp_path / "gap.json"
    proc = run_cli(
        "convex", "gap", "--spec", str(spec), "--lam", "0.01", "--json", str(out),
        "--widths", "1,16",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["certified"] is True
    # width vs gap: every width's net is above the optimum; one neuron cannot reach it here
    rows = {r["width"]: r for r in res["width_vs_gap"]}
    assert all(r["trained_objective"] >= res["lower_bound"] - 1e-12 for r in rows.values())
    assert rows[1]["gap"] > rows[16]["gap"]
    # No trained network beats the certified lower bound (Pilanci & Ergen 2020).
    assert res["trained_objective"] >= res["lower_bound"] - 1e-12
    assert res["gap"] >= -1e-9 * res["optimum"]


def test_gap_needs_a_two_layer_network(tmp_path: Path) -> None:
    spec = tmp_path / "run.yaml"
    spec.write_text(
        "arch: {family: mlp, depth: 3, width: 8}\ndata: {name: diabetes}\ntrain: {epochs: 1}\n"
    )
    proc = run_cli("convex", "gap", "--spec", str(spec), "--lam", "0.01")
    assert proc.returncode == 2
    assert "depth 1" in proc.stderr


def test_zero_val_and_test_fractions_train_on_everything() -> None:
    for name in ("diabetes", "breast_cancer"):
        data = load_data(DataSpec(name=name, val_fraction=0.0, test_fraction=0.0))
        sizes = data.sizes()
        assert sizes["val"] == 0 and sizes["test"] == 0
        assert sizes["train"] == len(data.y_train) > 400
