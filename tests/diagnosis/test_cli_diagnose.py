"""``depthlab diagnose`` as a user runs it: presets, run files, a user's factory and .npz."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

FACTORY = """
import torch

def make():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32),
                               torch.nn.Tanh(), torch.nn.Linear(32, 3))

def not_a_model():
    return 42
"""


def depthlab(*args):
    return subprocess.run(
        [sys.executable, "-m", "depthlab.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def user_files(tmp_path):
    (tmp_path / "net.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x=rng.normal(size=(300, 6)).astype(np.float32),
        y=rng.integers(0, 3, 300),
    )
    return tmp_path


def test_user_model_and_npz(user_files):
    out = depthlab(
        "diagnose",
        "--model",
        f"{user_files / 'net.py'}:make",
        "--data",
        str(user_files / "d.npz"),
        "--probes",
        "signal,gradients,jacobian,meanfield",
        "--json",
        str(user_files / "r.json"),
        "--out",
        str(user_files / "report"),
    )
    assert out.returncode == 0, out.stderr
    result = json.loads((user_files / "r.json").read_text())
    # no trial in the list: the rules decide, and say so
    assert result["verdict"] in {"trainable", "vanishing signal", "vanishing gradients"}
    assert result["decided_by"] == "theory"
    assert result["n_samples"] == 300
    assert [row["name"] for row in result["signal"]["layers"]] == ["0", "2", "4"]
    assert all({"name", "mean", "var"} <= set(r) for r in result["signal"]["layers"])
    assert all("grad_norm" in r for r in result["gradients"]["layers"])
    assert len(result["jacobian"]["singular_values"]) == 16 * 3
    assert result["meanfield"]["phase"] in {"ordered", "chaotic", "critical"}
    assert "chi1" in result["meanfield"]
    page = (user_files / "report" / "index.html").read_text()
    assert result["verdict"] in page
    for png in ("signal.png", "gradients.png", "jacobian.png"):
        assert (user_files / "report" / png).stat().st_size > 1000
        assert png in page


def test_spec_file(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text(
        "arch: {family: mlp, depth: 40, width: 64, act: relu, init: lecun}\ndata: {name: iris}\n"
        # SGD: the vanishing-signal rule's domain (Adam would undo this finite scale)
        "train: {optimizer: sgd, lr: 0.01}\n"
    )
    out = depthlab(
        "diagnose",
        "--spec",
        str(spec),
        "--probes",
        "signal,gradients",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["verdict"] == "vanishing signal"
    assert len(result["signal"]["seeds"]["second_moment_ratio"]) == 3
    assert "vanishing signal" in out.stdout


BAD = [
    (["--model", "{d}/net.py:nope", "--data", "{d}/d.npz"], "factory 'nope' not found"),
    (["--model", "{d}/net.py:not_a_model", "--data", "{d}/d.npz"], "returned int"),
    (["--model", "{d}/missing.py:make", "--data", "{d}/d.npz"], "model file not found"),
    (["--model", "{d}/net.py:make", "--data", "{d}/wide.npz"], "rejects inputs of shape (9,)"),
    (
        ["--model", "{d}/net.py:make", "--data", "{d}/d.npz", "--probes", "signal,xray"],
        "unknown probe 'xray'; choices:",
    ),
    (["--preset", "nope", "--data", "iris"], "unknown preset 'nope'"),
    (["--data", "iris"], "give exactly one of"),
    (["--model", "{d}/net.py:make"], "--model needs --data"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_gives_one_clear_line(user_files, args, message):
    np.savez(user_files / "wide.npz", x=np.zeros((10, 9), np.float32), y=np.zeros(10, int))
    out = depthlab("diagnose", *[a.format(d=user_files) for a in args])
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_diagnose_report_renders_in_chromium(tmp_path):
    """The diagnose page as a browser shows it: no console error, every figure decodes."""
    import torch

    from depthlab.diagnosis import DiagnoseOptions, diagnose
    from depthlab.probes.base import ProbeBatch
    from depthlab.report import write_report
    from depthlab.testing.browser import check_page, require_chromium

    chromium = require_chromium()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    batch = ProbeBatch.from_tensors(torch.randn(64, 6), torch.randint(0, 3, (64,)))
    options = DiagnoseOptions(probes=("signal", "gradients", "jacobian"), seeds=1)
    result = diagnose(model, batch, options, name="tiny <mlp>", progress=False)
    report = check_page(write_report([result], tmp_path), chromium=chromium)
    assert report.console_errors == ()
    assert report.broken_images == ()
    assert len(report.images) == 3


def test_the_verdict_is_for_a_stated_training_setup(user_files):
    """Without a train spec the default is assumed and said; --optimizer/--lr/--steps set it."""
    model = ["--model", f"{user_files / 'net.py'}:make", "--data", str(user_files / "d.npz")]
    out = depthlab("diagnose", *model, "--json", str(user_files / "a.json"))
    assert out.returncode == 0, out.stderr
    assumed = json.loads((user_files / "a.json").read_text())
    assert assumed["setup"]["assumed"] and assumed["setup"]["optimizer"] == "adam"
    assert 0.0 <= assumed["p_trains"] <= 1.0 and assumed["decided_by"] in ("trial", "theory")
    assert assumed["trial"]["optimizer"] == "adam"
    args = [
        "--optimizer",
        "sgd",
        "--lr",
        "5",
        "--steps",
        "100",
        "--json",
        str(user_files / "b.json"),
    ]
    out = depthlab("diagnose", *model, *args)
    assert out.returncode == 0, out.stderr
    given = json.loads((user_files / "b.json").read_text())
    assert not given["setup"]["assumed"] and given["setup"]["lr"] == 5.0
    assert given["setup"]["budget_steps"] == 100 and given["trial"]["optimizer"] == "sgd"
    # lr 5 with plain SGD on a tanh net: the trial sees it blow up or stall; not trainable
    assert given["verdict"] != "trainable" and given["p_trains"] < 0.5


def test_advise_writes_a_checked_run_file(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text(
        "arch: {family: mlp, depth: 12, width: 32, act: relu, init: he}\n"
        "data: {name: iris}\n"
        "train: {optimizer: sgd, lr: 50.0, epochs: 20, batch_size: 16}\n"
    )
    fixed = tmp_path / "fixed.yaml"
    out = depthlab(
        "diagnose", "--spec", str(spec), "--advise", str(fixed), "--json", str(tmp_path / "r.json")
    )
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["verdict"] in ("diverges", "unstable step size", "exploding gradients")
    from depthlab.spec import RunSpec

    advised = RunSpec.load(fixed)
    assert advised.train.lr < 50.0 and advised.arch == RunSpec.load(spec).arch
    # the first fix is half the edge of stability 2/λ_max that the unstable trial called for
    stable = result["stability"]["stable_lr"]
    assert result["fix"]["edit"] == {"train.lr": float(f"{stable / 2:.2g}")}
    assert advised.train.lr == float(f"{stable / 2:.2g}")
    assert "advice (" in out.stderr and str(fixed) in out.stderr
    out = depthlab("diagnose", "--preset", "deep-mlp-mnist1d", "--advise", str(fixed))
    assert out.returncode == 2 and "--advise needs --spec" in out.stderr
