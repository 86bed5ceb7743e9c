"""The examples in examples/ run as documented."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path):
    out = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_diagnose_example_finds_the_vanishing_signal():
    path = next(p for p in EXAMPLES if p.name == "diagnose_my_model.py")
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=600)
    assert "verdict: vanishing" in out.stdout  # signal and gradients both vanish
    assert "critical σ_w²" in out.stdout


def test_the_readme_one_call_snippet_runs_as_shown(tmp_path):
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Will my model train? One call", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    shown = next(line for line in code.splitlines() if line.startswith("print(d.verdict"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == shown.split("# ", 1)[1].strip()
    assert (tmp_path / "diagnosis" / "diagnosis.json").is_file()
    assert (tmp_path / "diagnosis" / "index.html").is_file()
