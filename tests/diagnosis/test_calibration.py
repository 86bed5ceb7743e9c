"""The calibration split is fixed and cannot leak; the scores match independent computations."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import scipy.stats

from depthlab.diagnosis import calibration as cal
from depthlab.exceptions import DepthlabError
from depthlab.store import RunRecord, RunState, SQLiteStore
from depthlab.sweep import SweepSpec, planned_records


def _grid_ids() -> list[str]:
    return [r.run_id for s in cal.GRID for r in planned_records(SweepSpec.from_dict(s))]


def test_the_grid_is_large_and_split_in_two_fixed_halves():
    ids = _grid_ids()
    assert len(ids) == len(set(ids)) >= 250
    halves = [cal.half_of(i) for i in ids]
    assert 0.4 < halves.count("test") / len(ids) < 0.6
    assert halves == [cal.half_of(i) for i in _grid_ids()]  # the same on every call
    specs = [r.spec for s in cal.GRID for r in planned_records(SweepSpec.from_dict(s))]
    assert max(s["arch"]["depth"] for s in specs) >= 96
    assert {s["arch"]["family"] for s in specs} == {"mlp", "resmlp", "cnn1d"}
    assert {s["train"]["optimizer"] for s in specs} == {"sgd", "momentum", "adam", "adamw"}
    assert len({s["data"]["name"] for s in specs}) >= 4


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


def test_loading_the_tuning_half_reads_no_test_run(tmp_path):
    """A test run in the tuning file is dropped, and the test file is never opened."""
    specs = [r.spec for r in planned_records(SweepSpec.from_dict(cal.GRID[0]))][:30]
    with SQLiteStore(tmp_path / "runs.db") as store:
        records = [RunRecord.pending(f"h{k}", s, 0) for k, s in enumerate(specs)]
        store.add_pending(records)
        for r in records:
            claimed = store.claim(r.run_id, host="h")
            done = dataclasses.replace(
                claimed, state=RunState.COMPLETE, metrics={"test_accuracy": 0.4}, seconds=1.0
            )
            store.finish(done)
        ids = [r.run_id for r in store.runs()]
    refs = {f"reference-{d}-adam": {"test_accuracy": 0.9} for d in cal.DATASETS}
    (tmp_path / "references.json").write_text(json.dumps(refs))
    lines = [json.dumps({"run_id": i, "diagnosis": {}, "seconds": 0.1}) for i in ids]
    (tmp_path / "diagnoses-tuning.jsonl").write_text("\n".join(lines))
    (tmp_path / "diagnoses-test.jsonl").write_text("not json: opening this file is a leak")
    rows = cal.load_half(tmp_path, "tuning")
    assert rows and all(cal.half_of(r["run_id"]) == "tuning" for r in rows)
    assert len(rows) == sum(cal.half_of(i) == "tuning" for i in ids) < len(ids)


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
