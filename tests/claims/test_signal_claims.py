"""Signal-propagation claims: SNN fixed point, edge of chaos, residual explosion.

Each claim's quick mode must reach its recorded outcome, its negative control must fail, its
JSON must be strict, and its plot must be written. A few measured numbers are also checked
directly against theory on small networks.
"""

from __future__ import annotations

import functools
import json
import math

import pytest

from depthlab.claims import ClaimResult, get_claim, reproduce
from depthlab.claims.edge_of_chaos import Config, propagate, theory_curves
from depthlab.claims.residual_explosion import stream_variances
from depthlab.claims.snn_fixed_point import layer_moments

NAMES = ["snn-fixed-point", "edge-of-chaos", "residual-explosion"]


@functools.cache
def _run(name: str, control: bool) -> ClaimResult:
    """Each quick run once per session; several tests read the same result."""
    return reproduce(name, quick=True, control=control)


@pytest.mark.parametrize("name", NAMES)
def test_quick_reaches_recorded_outcome(name: str) -> None:
    result = _run(name, False)
    assert result.as_recorded, [c.to_dict() for c in result.checks]
    assert result.passed == get_claim(name).reproduces


@pytest.mark.parametrize("name", NAMES)
def test_negative_control_fails(name: str) -> None:
    result = _run(name, True)
    assert result.passed is False
    assert result.as_recorded
    assert any(not c.ok for c in result.checks)


@pytest.mark.parametrize("name", NAMES)
def test_result_json_is_strict(name: str) -> None:
    out = _run(name, False).to_dict()
    assert out["claim"] == name
    assert isinstance(out["passed"], bool)
    assert set(out["measured"]) == set(out["expected"]) and out["measured"]
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize("name", NAMES)
def test_plot_writes_png(name: str, tmp_path) -> None:
    result = _run(name, False)
    path = get_claim(name)().plot(result.evidence, tmp_path / f"{name}.png")
    assert path is not None and path.exists() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", NAMES)
def test_claim_documents_itself(name: str) -> None:
    cls = get_claim(name)
    for attr in ("paper", "statement", "criterion", "experiment_doc", "control_doc", "full_time"):
        assert getattr(cls, attr), attr


def test_relu_length_ratio_per_layer_is_sigma_w2_over_2() -> None:
    # Mean field: q^{l+1}/q^l = σ_w²/2 exactly for ReLU without bias (χ₁ = σ_w²/2).
    cfg = Config("relu", "relu", 1.6, 0.0, "vanishing")
    ratios = []
    for seed in range(3):
        qs, _, _ = propagate(cfg, width=512, depth=12, pairs=16, seed=seed)
        ratios += [b / a for a, b in zip(qs, qs[1:], strict=False)]
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    assert geo == pytest.approx(0.8, rel=0.03)


def test_relu_critical_theory_keeps_length() -> None:
    qs, cs = theory_curves(Config("relu", "relu", 2.0, 0.0, "critical"), 20)
    assert qs == pytest.approx([2.0] * 20, rel=1e-6)
    assert all(b >= a for a, b in zip(cs, cs[1:], strict=False)) and cs[-1] < 1.0


def test_tanh_ordered_correlation_follows_theory() -> None:
    # 1 − c^l measured on width-512 nets against the mean-field correlation map, 15 layers.
    cfg = Config("tanh", "tanh", 1.2, 0.05, "ordered")
    _, c_th = theory_curves(cfg, 15)
    gaps = [propagate(cfg, width=512, depth=15, pairs=16, seed=s)[2][0] for s in range(2)]
    measured = [(a + b) / 2 for a, b in zip(*gaps, strict=True)]
    for m, c in zip(measured, c_th, strict=True):
        assert m == pytest.approx(1.0 - c, rel=0.15)


def test_resmlp_branch_gain_is_one_and_variance_doubles_per_block() -> None:
    run = stream_variances("none", depth=6, width=512, n_inputs=256, seed=0)
    assert sum(run["gain"]) / 6 == pytest.approx(1.0, abs=0.05)
    assert abs(sum(run["cross"]) / 6) < 0.1
    per_block = run["ratio"][-1] ** (1 / 6)
    assert per_block == pytest.approx(2.0, rel=0.05)


def test_selu_moments_near_fixed_point_relu_not() -> None:
    selu = layer_moments("selu", width=256, depth=8, n_inputs=256, seed=0)
    relu = layer_moments("relu", width=256, depth=8, n_inputs=256, seed=0)
    assert all(abs(m) < 0.1 and 0.8 < v < 1.25 for m, v in selu)
    # LeCun init halves a ReLU net's second moment per layer: var at layer 8 ~ 2^-8 scale.
    assert relu[-1][1] < 0.01
