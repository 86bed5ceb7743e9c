"""The neural-collapse, wide-deep-ntk and lazy-vs-rich claims: quick mode reaches its recorded
outcome, the negative control fails, the JSON is strict and the plot is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from depthlab.claims import get_claim, reproduce

CLAIMS = ["neural-collapse", "wide-deep-ntk", "lazy-vs-rich"]


@pytest.mark.parametrize("name", CLAIMS)
def test_quick_mode_reaches_recorded_outcome(name: str, tmp_path: Path) -> None:
    result = reproduce(name, quick=True, out=tmp_path)
    assert result.as_recorded
    assert result.passed == get_claim(name).reproduces
    out = result.to_dict()
    for key in ("claim", "passed", "measured", "expected"):
        assert key in out
    json.dumps(out, allow_nan=False)
    assert result.figure is not None and result.figure.stat().st_size > 0


@pytest.mark.parametrize("name", CLAIMS)
def test_control_fails(name: str, tmp_path: Path) -> None:
    result = reproduce(name, quick=True, control=True, out=tmp_path)
    assert result.passed is False
    assert result.as_recorded
    json.dumps(result.to_dict(), allow_nan=False)
    assert result.figure is not None and result.figure.stat().st_size > 0


@pytest.mark.parametrize("name", CLAIMS)
def test_claim_documents_itself(name: str) -> None:
    cls = get_claim(name)
    assert cls.criterion and cls.experiment_doc and cls.control_doc and cls.full_time
    if not cls.reproduces:
        assert cls.analysis
