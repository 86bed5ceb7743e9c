"""The calibration split is fixed and cannot leak; the scores match independent computations."""

from __future__ import annotations

import json
import math

import pytest
import scipy.stats

from depthlab.diagnosis import calibration as cal
from depthlab.exceptions import DepthlabError
from depthlab.sweep import SweepSpec, planned_records


def _grid_ids() -> list[str]:
    return [r.run_id for s in cal.GRID for r in planned_records(SweepSpec.from_dict(s))]


def test_the_grid_is_large_and_split_in_two_fixed_halves():
    ids = _grid_ids()
    assert len(ids) == len(set(ids)) >= 600
    halves = [cal.half_of(i) for i in ids]
    assert 0.4 < halves.count("test") / len(ids) < 0.6
    assert halves == [cal.half_of(i) for i in _grid_ids()]  # the same on every call
    specs = [r.spec for s in cal.GRID for r in planned_records(SweepSpec.from_dict(s))]
    assert max(s["arch"]["depth"] for s in specs) >= 32
    assert {cal.kinds(s)["family"] for s in specs} == {"mlp", "resmlp", "cnn1d", "graph"}
    assert {s["train"]["optimizer"] for s in specs} == {"sgd", "momentum", "adam", "adamw"}
    assert len({s["data"]["name"] for s in specs}) >= 5
    # every registered activation and initialisation, and both budgets
    from depthlab import _registry as reg

    assert {s["arch"]["act"] for s in specs} == set(reg.ACTIVATIONS.names())
    assert {s["arch"]["init"] for s in specs} == set(reg.INITS.names())
    assert {cal.kinds(s)["budget"] for s in specs} == set(cal.BUDGETS)


class _R:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id


def test_runs_of_half_never_hands_out_the_other_half():
    records = [_R(f"run-{k}") for k in range(200)]
    tuning, test = cal.runs_of_half(records, "tuning"), cal.runs_of_half(records, "test")
    assert {r.run_id for r in tuning}.isdisjoint({r.run_id for r in test})
    assert len(tuning) + len(test) == 200 and tuning and test
    with pytest.raises(DepthlabError, match="choices: tuning, test"):
        cal.runs_of_half(records, "both")


def test_loading_the_tuning_half_hands_out_no_test_run(tmp_path):
    """``labels.jsonl`` holds both halves; ``load_half`` keeps only the one asked for."""
    specs = [r.spec for r in planned_records(SweepSpec.from_dict(cal.GRID[0]))][:30]
    refs = {
        f"reference-{d}-{b}-adam": {"test_accuracy": 0.9} for d in cal.DATASETS for b in cal.BUDGETS
    }
    (tmp_path / "references.json").write_text(json.dumps(refs))
    ids = [f"h{k}-s0" for k in range(len(specs))]
    lines = [
        json.dumps({"run_id": i, "spec": s, "state": "COMPLETE", "test_accuracy": 0.4,
                    "loss": [2.0], "grad_norm": [1.0], "steps": 1, "seconds": 0.1})
        for i, s in zip(ids, specs, strict=True)
    ]  # fmt: skip
    (tmp_path / "labels.jsonl").write_text("\n".join(lines))
    rows = cal.load_half(tmp_path, "tuning")
    assert rows and all(cal.half_of(r["run_id"]) == "tuning" for r in rows)
    assert len(rows) == sum(cal.half_of(i) == "tuning" for i in ids) < len(ids)
    with pytest.raises(DepthlabError, match="choices: tuning, test"):
        cal.load_half(tmp_path, "both")


def test_scores_against_independent_computations():
    predicted = [0.9, 0.8, 0.3, 0.6, 0.1, 0.95, 0.2, 0.55, 0.7, 0.4]
    progress = [1.0, 0.9, 0.1, 0.2, 0.0, 1.1, 0.5, 0.8, 0.75, 0.05]
    s = cal.scores(predicted, progress)
    clear = [(p, o) for p, o in zip(predicted, progress, strict=True) if not 0.35 < o < 0.65]
    assert s.n == len(clear) == 9 and s.n_ambiguous == 1
    truth = [o >= 0.5 for _, o in clear]
    guess = [p >= 0.5 for p, _ in clear]
    assert s.agreement == pytest.approx(sum(g == t for g, t in zip(guess, truth, strict=True)) / 9)
    tp = sum(g and t for g, t in zip(guess, truth, strict=True))
    assert s.precision == pytest.approx(tp / sum(guess))
    assert s.recall == pytest.approx(tp / sum(truth))
    assert s.brier == pytest.approx(
        sum((p - t) ** 2 for (p, _), t in zip(clear, truth, strict=True)) / 9
    )
    assert s.spearman == pytest.approx(scipy.stats.spearmanr(predicted, progress).statistic)


def test_progress_and_labels():
    assert cal.progress(0.5, 0.1, 0.9) == pytest.approx(0.5)
    assert cal.progress(math.nan, 0.1, 0.9) == 0.0
    assert cal.label(0.7) is True and cal.label(0.2) is False and cal.label(0.5) is None
    with pytest.raises(DepthlabError, match="not above chance"):
        cal.progress(0.5, 0.5, 0.4)


def test_reliability_bins_count_every_clear_run():
    rows = cal.reliability([0.05, 0.15, 0.95, 0.97, 1.0], [0.0, 1.0, 1.0, 1.0, 0.0])
    assert sum(r["n"] for r in rows) == 5
    top = rows[-1]
    assert top["lo"] == 0.9 and top["observed"] == pytest.approx(2 / 3)
