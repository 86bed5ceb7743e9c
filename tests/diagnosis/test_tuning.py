"""Calibration code paths on a tiny fake calibration directory (synthetic curves, no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from depthlab.diagnosis import calibration as cal
from depthlab.diagnosis import tuning as tu

FACTS = {
    "digits": {"chance": 0.1, "baseline": math.log(10), "n_train": 1280}
}  # 20 steps an epoch, 300 in all


def _fake(out: Path, n: int = 80) -> None:
    """``n`` runs of 300 steps: even ones fall and reach the reference, odd ones stay flat."""
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    refs = {f"reference-digits-short-{o}": {"test_accuracy": 0.9} for o in ("adam", "sgd")}
    (out / "references.json").write_text(json.dumps(refs))
    lines = []
    for i in range(n):
        t = np.arange(1, 301)
        trains = i % 2 == 0
        rate = rng.uniform(20, 60)
        if trains:
            loss = 0.2 + 2.1 * np.exp(-t / rate)
        else:
            loss = 2.3 + 0.0 * t
        loss = loss * (1 + 0.03 * rng.standard_normal(len(t)))
        acc = rng.uniform(0.8, 0.95) if trains else rng.uniform(0.08, 0.15)
        spec = {
            "arch": {"family": "mlp", "act": "relu" if i % 3 else "tanh"},
            "data": {"name": "digits", "seed": 0},
            "train": {"optimizer": "adam", "lr": 1e-3, "epochs": 15, "batch_size": 64},
        }
        lines.append(
            json.dumps(
                {
                    "run_id": f"run{i:03d}-s0",
                    "spec": spec,
                    "state": "COMPLETE",
                    "test_accuracy": acc,
                    "steps": 300,
                    "seconds": 3.0,
                    "theory_seconds": 0.1,
                    "loss": loss.tolist(),
                    "grad_norm": (1.0 + 0 * t).tolist(),
                }
            )
        )
    (out / "labels.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    _fake(tmp_path)
    return tmp_path


def test_halves_are_disjoint_and_labelled(fake: Path) -> None:
    tuning = cal.load_half(fake, "tuning")
    rows = cal.load_labels(fake, facts=FACTS)
    assert {r["run_id"] for r in tuning} == {
        r["run_id"] for r in rows if cal.half_of(r["run_id"]) == "tuning"
    }
    assert all(r["budget"] == "short" and r["dataset"] == "digits" for r in rows)
    assert {r["label"] for r in rows} <= {True, False, None}
    assert rows[0]["progress"] == pytest.approx((rows[0]["test_accuracy"] - 0.1) / 0.8)


def test_fit_replay_and_scores_on_separable_curves(fake: Path) -> None:
    rows = cal.load_labels(fake, facts=FACTS)
    progress = [r["progress"] for r in rows]
    table = tu.feature_table(rows, fit=False)
    assert len(table) == len(rows) and all(len(t) == 5 for t in table)
    names = [n for n in tu.CURVE if n != "extrapolated"]
    p_cv, g_cv = tu.cross_predict(table, progress, names)
    cuts = tu.thresholds(p_cv, progress)
    assert all(-1e-6 <= lo <= 1.0 + 1e-6 and lo <= hi for lo, hi in cuts)  # < 0: never
    answers = tu.replay(p_cv, g_cv, cuts, [tu.budget_of(r) for r in rows])
    s = tu.summary(answers, progress, cost=lambda i, a: a["step"] / a["budget"])
    # falling against flat is easy: the sequential answer agrees and mostly decides early
    assert s["agreement"] >= 0.95 and s["coverage"] >= 0.8
    assert s["spearman_progress"] > 0.5
    assert s["cost_mean"] <= 0.16 + 1e-9  # never past the cap


def test_thresholds_reach_the_stated_precision_on_what_they_were_chosen_on() -> None:
    rng = np.random.default_rng(3)
    progress = [1.0 if rng.random() < 0.5 else 0.0 for _ in range(200)]
    noisy = [min(1, max(0, g * 0.6 + 0.2 + 0.25 * rng.standard_normal())) for g in progress]
    p = np.array([[q] * 5 for q in noisy])
    cuts = tu.thresholds(p, progress)
    lo, hi = cuts[0]
    yes = [g >= 0.5 for q, g in zip(p[:, 0], progress, strict=True) if q >= hi]
    no = [g < 0.5 for q, g in zip(p[:, 0], progress, strict=True) if q <= lo]
    assert not yes or sum(yes) / len(yes) >= tu.PRECISION["trainable"]
    assert not no or sum(no) / len(no) >= tu.PRECISION["won't train"]
