"""The package installs beside a user's torch, works without torch_geometric, and says so."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

import depthlab

ROOT = Path(__file__).parent.parent


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_torch_is_a_range_and_pyg_an_extra() -> None:
    project = _project()
    deps = {Requirement(d).name.replace("_", "-"): Requirement(d) for d in project["dependencies"]}
    torch = deps["torch"]
    assert not any(s.operator in ("==", "===", "~=") for s in torch.specifier), torch
    assert torch.specifier.contains("2.5.1") and torch.specifier.contains("2.13.0")
    assert "torch-geometric" not in deps
    extras = project["optional-dependencies"]
    assert [Requirement(r).name for r in extras["graph"]] == ["torch_geometric"]
    dev = {Requirement(r).name for r in extras["dev"]}
    assert {"torch_geometric", "pandas", "pyarrow", "tensorboard"} <= dev  # the suite needs them
    pins = (ROOT / "constraints.txt").read_text()
    assert "torch==" in pins  # the exact build lives here, for CI and make setup only


def test_one_version_from_the_installed_metadata() -> None:
    assert depthlab.__version__ == metadata.version("depthlab")
    assert "__version__ =" not in (ROOT / "pyproject.toml").read_text()


def test_version_and_python_m(capsys) -> None:  # type: ignore[no-untyped-def]
    from depthlab.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code in (0, None)
    assert capsys.readouterr().out.strip() == f"depthlab {depthlab.__version__}"
    help_ = subprocess.run(
        [sys.executable, "-m", "depthlab", "--help"], capture_output=True, text=True, timeout=300
    )
    assert help_.returncode == 0, help_.stderr
    assert help_.stdout.startswith("Usage: depthlab") and "sweep" in help_.stdout


WITHOUT_PYG = """
import json, sys
sys.modules["torch_geometric"] = None  # import torch_geometric fails, as if never installed
import depthlab as dl
spec = dl.RunSpec.from_dict({
    "arch": {"family": "mlp", "depth": 2, "width": 8},
    "data": {"name": "iris", "seed": 0},
    "train": {"epochs": 2},
})
result = dl.run(spec)
assert result.state is dl.RunState.COMPLETE, result.error
print("mlp trains")
from depthlab.cli.main import main
for args in json.loads(sys.argv[1]):
    try:
        main(args)
    except SystemExit as exit_:
        print("exit", exit_.code)
        print("---", file=sys.stderr)
"""


def test_without_torch_geometric_an_mlp_trains_and_gcn_is_one_line(tmp_path: Path) -> None:
    run = tmp_path / "gcn.yaml"
    run.write_text(
        "arch: {family: gcn, depth: 2, width: 8}\n"
        "data: {name: karate, seed: 0}\n"
        "train: {epochs: 2}\n"
    )
    commands = [["train", str(run)], ["reproduce", "oversmoothing", "--quick"]]
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYG, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.stdout.splitlines() == ["mlp trains", "exit 2", "exit 2"], out.stderr
    assert "Traceback" not in out.stderr
    for stderr in out.stderr.split("---")[:2]:
        errors = [line for line in stderr.splitlines() if line.startswith("depthlab:")]
        assert len(errors) == 1, stderr
        assert "needs torch_geometric" in errors[0]
        assert 'pip install "depthlab[graph]"' in errors[0]
