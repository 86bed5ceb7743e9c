"""trainable-depth: its helpers, its criterion on hand-made depth profiles, and the quick mode
and negative control reaching their recorded outcomes (real training, about a minute each)."""

from __future__ import annotations

import json
import math

import pytest
from scipy.stats import spearmanr

from depthlab.claims import get_claim, reproduce
from depthlab.claims.trainable_depth import (
    DEPTHS,
    TrainableDepth,
    max_trainable_depth,
    spearman,
)

NAME = "trainable-depth"


def test_max_trainable_depth_is_the_last_depth_of_an_unbroken_run():
    assert max_trainable_depth({4: True, 6: True, 8: False}) == 6
    assert max_trainable_depth({4: False}) == 0
    assert max_trainable_depth(dict.fromkeys(DEPTHS, True)) == DEPTHS[-1]
    # a deeper success after a failure does not count: every depth up to L_max must train
    assert max_trainable_depth({4: True, 6: False, 8: True, 12: True}) == 4


@pytest.mark.parametrize(
    "xs, ys",
    [
        ([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 25.0, 40.0]),
        ([16.0, 48.0, 64.0, 32.0], [3.6, 10.7, 11.8, 7.0]),
        ([16.0, 48.0, 48.0, 32.0], [3.6, 10.7, 11.8, 7.0]),  # ties: average ranks
        ([5.0, 1.0, 3.0], [1.0, 2.0, 3.0]),
    ],
)
def test_spearman_matches_scipy(xs, ys):
    assert spearman(xs, ys) == pytest.approx(float(spearmanr(xs, ys).statistic), abs=1e-12)


def test_spearman_of_a_constant_is_nan():
    assert math.isnan(spearman([32.0, 32.0, 32.0], [1.0, 2.0, 3.0]))


XI = {1.0: 3.63, 1.4: 10.73, 2.5: 11.80, 4.0: 6.98}  # mean-field ξ_c at σ_b² = 0.05
CRIT = 1.7609


def _judge(l_max: dict[float, int]) -> list[bool]:
    xi = {**XI, CRIT: math.inf}
    return [c.ok for c in TrainableDepth._checks(tuple(XI), CRIT, l_max, xi, control=False)]


def test_criterion_holds_for_a_profile_that_tracks_six_xi_c():
    assert _judge({1.0: 16, 1.4: 48, 2.5: 64, 4.0: 32, CRIT: 64}) == [True, True, True]


def test_criterion_fails_a_flat_profile_even_inside_the_band():
    # 40 layers everywhere is within a factor 2 of 6 ξ_c (22-71 layers) for every σ_w² here,
    # but does not track ξ_c: the rank correlation is undefined (NaN), so (c) fails.
    checks = _judge({1.0: 40, 1.4: 40, 2.5: 40, 4.0: 40, CRIT: 40})
    assert checks == [True, True, False]


def test_criterion_fails_without_a_peak_at_criticality_or_far_from_six_xi_c():
    assert _judge({1.0: 16, 1.4: 48, 2.5: 64, 4.0: 32, CRIT: 24})[1] is False
    assert _judge({1.0: 96, 1.4: 96, 2.5: 64, 4.0: 96, CRIT: 96})[0] is False


def test_claim_documents_itself():
    cls = get_claim(NAME)
    for attr in ("paper", "statement", "criterion", "experiment_doc", "control_doc", "full_time"):
        assert getattr(cls, attr), attr
    assert cls.threads == 1


@pytest.mark.slow
def test_quick_mode_reaches_its_recorded_outcome(tmp_path):
    result = reproduce(NAME, quick=True, out=tmp_path)
    assert result.as_recorded, result.to_dict()["checks"]
    assert result.passed is get_claim(NAME).reproduces
    d = result.to_dict()
    assert set(d["measured"]) == set(d["expected"]) and len(d["checks"]) == 3
    json.dumps(d, allow_nan=False)
    assert result.figure is not None
    assert result.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_negative_control_fails():
    result = reproduce(NAME, quick=True, control=True)
    assert result.passed is False
    assert result.as_recorded
