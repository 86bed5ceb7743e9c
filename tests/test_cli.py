"""The CLI as a user runs it: a subprocess, one clear line on bad input, documented exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

RUN = """
arch:  {family: mlp, depth: 2, width: 16, act: relu, init: he, norm: none}
data:  {name: iris, seed: 0}
train: {optimizer: adam, lr: 0.01, epochs: 3, batch_size: 32, seed: 0}
"""


def depthlab(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "depthlab.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_train_writes_json_and_an_output_directory(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text(RUN)
    out = depthlab(
        "train",
        str(spec),
        "--json",
        str(tmp_path / "r.json"),
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["state"] == "COMPLETE"
    assert {"train_loss", "test_loss", "test_accuracy"} <= set(result["metrics"])
    assert result["spec"]["arch"]["depth"] == 2
    for name in ("result.json", "spec.yaml", "history.csv", "loss.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_diverged_run_exits_3_with_its_step(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text(
        RUN.replace("optimizer: adam, lr: 0.01", "optimizer: sgd, lr: 1.0e+8").replace(
            "depth: 2", "depth: 6"
        )
    )
    out = depthlab("train", str(spec), "--json", str(tmp_path / "r.json"), "--quiet")
    assert out.returncode == 3, out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["state"] == "DIVERGED" and isinstance(result["diverged_step"], int)
    assert "diverged" in out.stderr


def _npz(tmp_path, case):
    p = tmp_path / "d.npz"
    x, y = np.zeros((20, 3)), np.arange(20) % 2
    if case == "mismatch":
        y = y[:-1]
    if case == "nan":
        x[2, 2] = np.nan
    np.savez(p, x=x, y=y)
    return p


BAD = [
    ("malformed", "arch: {depth: [1, 2\n", "malformed YAML"),
    (
        "unknown_act",
        RUN.replace("act: relu", "act: swishy"),
        "arch.act: unknown activation 'swishy'; choices:",
    ),
    ("negative_width", RUN.replace("width: 16", "width: -4"), "arch.width: -4 is not valid"),
    (
        "unknown_key",
        RUN.replace("seed: 0}", "seed: 0, colour: red}", 1),
        "data.colour: unknown key",
    ),
    ("missing_spec", None, "spec file not found"),
    (
        "missing_data",
        RUN.replace("name: iris", "name: npz, path: /nonexistent/d.npz"),
        "data file not found: '/nonexistent/d.npz'",
    ),
    ("mismatch", "NPZ", "x has 20 samples but y has 19"),
    ("nan", "NPZ", "NaN/inf values"),
]


@pytest.mark.parametrize("case,text,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, case, text, message):
    spec = tmp_path / "run.yaml"
    if text == "NPZ":
        text = RUN.replace("name: iris", f"name: npz, path: {_npz(tmp_path, case)}")
    if text is not None:
        spec.write_text(text)
    out = depthlab("train", str(spec))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert message in lines[0]


def test_list_shows_components_and_rejects_unknown_kinds():
    out = depthlab("list", "activations")
    assert out.returncode == 0 and "selu" in out.stdout and "tanh" in out.stdout
    out = depthlab("list")
    assert out.returncode == 0
    for word in ("mlp", "resmlp", "cnn1d", "mnist1d", "critical", "rms", "gradient_noise"):
        assert word in out.stdout
    out = depthlab("list", "widgets")
    assert out.returncode == 2 and "choices: archs" in out.stderr


def test_demo_runs_small(tmp_path):
    out = depthlab(
        "demo",
        "--epochs",
        "1",
        "--depth",
        "4",
        "--width",
        "16",
        "--probes",
        "signal,gradients,meanfield",
        "--out",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    for name in ("relu+he", "relu+lecun", "tanh+critical", "selu+lecun"):
        assert name in out.stdout
        assert (tmp_path / name / "result.json").exists()
    page = (tmp_path / "index.html").read_text()
    assert "test accuracy after training" in page and "signal.png" in page
    diagnosis = json.loads((tmp_path / "diagnosis.json").read_text())
    assert [d["name"] for d in diagnosis["networks"]] == [
        "relu+he",
        "relu+lecun",
        "tanh+critical",
        "selu+lecun",
    ]
    assert all(d["training"]["state"] == "COMPLETE" for d in diagnosis["networks"])
