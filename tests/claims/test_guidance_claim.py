"""The guidance claim: its quick run reaches the recorded outcome and its control fails.

The recorded outcome is "does not reproduce" (``reproduces = False``): guidance by an untrained
CNN did not make the deep MLP beat its unguided twin on MNIST-1D here (see the claim's
``analysis``), so the quick run's criterion comes out failed.
"""

from __future__ import annotations

import json

import pytest

from depthlab.claims.base import claim_names, get_claim, reproduce

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick():
    return reproduce("guidance", quick=True)


@pytest.fixture(scope="module")
def control():
    return reproduce("guidance", quick=True, control=True)


def test_registered_with_its_criterion_fixed():
    assert "guidance" in claim_names()
    cls = get_claim("guidance")
    assert cls.reproduces is False
    assert cls.analysis and cls.full_time and cls.control_doc and cls.experiment_doc
    assert ">= 2 points" in cls.criterion and "every seed" in cls.criterion


def test_quick_mode_reaches_its_recorded_outcome(quick):
    assert quick.as_recorded
    assert quick.passed is False
    assert len(quick.evidence.table) == 3


def test_control_fails(control):
    assert control.control
    assert control.passed is False
    assert control.as_recorded


def test_json_has_claim_passed_measured_expected(quick):
    out = json.loads(json.dumps(quick.to_dict()))
    assert out["claim"] == "guidance"
    assert out["passed"] is False
    assert (
        set(out["measured"])
        == set(out["expected"])
        == {
            "seeds where guided > unguided",
            "mean gain (points)",
        }
    )


def test_plot_writes_a_png(quick, tmp_path):
    path = get_claim("guidance")().plot(quick.evidence, tmp_path / "guidance.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
