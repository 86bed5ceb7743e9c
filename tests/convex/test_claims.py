"""The convex claims' quick modes reach their recorded outcome; their controls fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from depthlab.claims import get_claim, reproduce


@pytest.mark.slow
def test_convex_equivalence_quick_holds(tmp_path: Path) -> None:
    result = reproduce("convex-equivalence", quick=True, out=tmp_path)
    assert result.as_recorded and result.passed == get_claim("convex-equivalence").reproduces
    json.dumps(result.to_dict(), allow_nan=False)
    assert result.figure is not None and result.figure.stat().st_size > 0


def test_convex_equivalence_control_fails(tmp_path: Path) -> None:
    result = reproduce("convex-equivalence", quick=True, control=True, out=tmp_path)
    assert result.passed is False and result.as_recorded
    json.dumps(result.to_dict(), allow_nan=False)


@pytest.mark.slow
def test_brenier_icnn_quick_holds(tmp_path: Path) -> None:
    result = reproduce("brenier-icnn", quick=True, out=tmp_path)
    assert result.as_recorded and result.passed
    assert result.figure is not None and result.figure.stat().st_size > 0


def test_brenier_icnn_control_fails() -> None:
    result = reproduce("brenier-icnn", quick=True, control=True)
    assert result.passed is False and result.as_recorded
