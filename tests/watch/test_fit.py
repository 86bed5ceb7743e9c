"""``depthlab train --watch`` and sweeps with ``watch: true``: a run that won't train ends
STOPPED within a few percent of its budget, its reason and verdict stored; a healthy run goes on
to the end, untouched."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from depthlab.spec import RunSpec
from depthlab.store import RunState, SQLiteStore
from depthlab.sweep import LocalExecutor, SweepSpec, run_sweep
from depthlab.testing.cli import run_cli
from depthlab.train import run
from depthlab.watch.fit import WatchCallback

DATA = {"name": "digits", "seed": 0}
# 24 ReLU layers at LeCun variance (half of He's): the signal halves at every layer.
DOOMED = {
    "arch": {"family": "mlp", "depth": 24, "width": 32, "act": "relu", "init": "lecun"},
    "data": DATA,
    "train": {"optimizer": "sgd", "lr": 0.01, "epochs": 20, "batch_size": 64},
}
HEALTHY = {
    "arch": {"family": "mlp", "depth": 2, "width": 32, "act": "relu", "init": "he"},
    "data": DATA,
    "train": {"optimizer": "adam", "lr": 0.003, "epochs": 4, "batch_size": 64},
}


def test_a_doomed_run_stops_early_with_its_verdict() -> None:
    watch = WatchCallback()
    result = run(RunSpec.from_dict(DOOMED), callbacks=[watch], progress=False)
    summary = watch.summary()
    assert result.state is RunState.STOPPED
    assert result.steps <= 0.1 * summary["budget_steps"]
    assert summary["verdict"] not in ("trainable", "undecided") and summary["decided"]
    assert summary["verdict"] in result.error and result.error.startswith("won't train")
    assert "test_accuracy" in result.metrics  # a stopped run is still evaluated where it stopped


def test_a_healthy_run_is_untouched_by_the_watch() -> None:
    watch = WatchCallback()
    spec = RunSpec.from_dict(HEALTHY)
    watched = run(spec, callbacks=[watch], progress=False)
    plain = run(spec, progress=False)
    assert watched.state is RunState.COMPLETE and watched.steps == watch.summary()["budget_steps"]
    assert watch.summary()["verdict"] != "diverges"
    assert watched.metrics == plain.metrics and watched.history == plain.history


def test_a_sweep_with_watch_stores_stopped_runs_with_their_verdict(tmp_path: Path) -> None:
    sweep = SweepSpec.from_dict(
        {"base": DOOMED, "axes": {"arch.depth": [24]}, "seeds": [0], "watch": True}
    )
    with SQLiteStore(tmp_path / "runs.db") as store:
        summary = run_sweep(sweep, store, LocalExecutor(1), progress=False)
        (record,) = store.runs()
    assert summary.counts[RunState.STOPPED] == 1
    assert record.state is RunState.STOPPED and record.error.startswith("won't train")
    verdict = record.probes["watch"]
    assert verdict["verdict"] in record.error and verdict["steps"] <= 0.1 * verdict["budget_steps"]


def test_cli_train_watch(tmp_path: Path) -> None:
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump(DOOMED))
    out = tmp_path / "result.json"
    done = run_cli("train", str(spec), "--watch", "--quiet", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "run stopped: won't train" in done.stderr
    payload = json.loads(out.read_text())
    assert payload["state"] == "STOPPED" and payload["watch"]["decided"]
    assert payload["watch"]["verdict"] in payload["error"]
