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
