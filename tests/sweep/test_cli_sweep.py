"""``depthlab sweep``, ``runs`` and ``report`` as a user runs them (subprocesses)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from depthlab.testing.cli import run_cli

SWEEP = """
base:
  arch:  {family: mlp, depth: 1, width: 8, act: relu, init: he}
  data:  {name: iris, seed: 0}
  train: {optimizer: sgd, lr: 0.05, epochs: 3, batch_size: 16}
axes:  {arch.depth: [1, 2], train.lr: [0.05, 1.0e9]}
seeds: [0]
"""


depthlab = run_cli


def test_sweep_then_runs_and_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    db = str(tmp_path / "runs.db")
    out = depthlab("sweep", str(sweep), "--store", db, "--workers", "2")
    assert out.returncode == 0, out.stderr  # DIVERGED runs are results, not failures
    assert "4 planned" in out.stderr and "2 complete" in out.stderr and "2 diverged" in out.stderr
    assert "[4/4]" in out.stderr  # a progress line per finished run when not on a terminal
    again = depthlab("sweep", str(sweep), "--store", db, "--quiet")
    assert again.returncode == 0 and "0 run now, 4 already finished" in again.stderr

    table = depthlab("runs", "--store", db, "--state", "diverged")
    assert table.returncode == 0 and table.stdout.count("DIVERGED") == 2
    rows = list(csv.DictReader(io.StringIO(depthlab("runs", "--store", db, "--csv").stdout)))
    assert len(rows) == 4 and {r["state"] for r in rows} == {"COMPLETE", "DIVERGED"}
    assert all(0 <= float(r["test_accuracy"]) <= 1 for r in rows if r["state"] == "COMPLETE")

    rep = depthlab("report", "--store", db, "--out", str(tmp_path / "report"))
    assert rep.returncode == 0, rep.stderr
    html = (tmp_path / "report" / "index.html").read_text()
    assert "DIVERGED" in html or "diverged" in html
    assert (tmp_path / "report" / "phase.png").stat().st_size > 0


def test_a_run_that_fails_makes_the_sweep_exit_4(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP.replace("train.lr: [0.05, 1.0e9]", "data.name: [iris, npz]"))
    out = depthlab("sweep", str(sweep), "--store", str(tmp_path / "r.db"), "--quiet")
    assert out.returncode == 4, out.stderr
    failed = depthlab("runs", "--store", str(tmp_path / "r.db"), "--state", "FAILED")
    assert failed.stdout.count("FAILED") == 2 and "path" in failed.stdout


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("axes: {arch.depht: [1, 2]}", ["axes.arch.depht", "unknown axis path", "arch.depth"]),
        ("axes: {arch.depth: []}", ["axes.arch.depth", "empty"]),
        ("axes: {}", ["axes", "empty"]),
        ("axes: {arch.act: [relu, swishy]}", ["axes.arch.act[1]", "swishy", "choices"]),
        ("axes: {arch.depth: [1]}\nstrategy: tpe\nbudget: 1", ["objective", "required"]),
        ("axes: {arch.depth: [1]\n", ["sweep.yaml"]),  # malformed YAML
    ],
)
def test_bad_sweep_files_give_one_line_and_exit_2(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(text)
    out = depthlab("sweep", str(sweep), "--store", str(tmp_path / "r.db"))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "r.db").exists()  # nothing written for a sweep that never started


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["runs", "--store", "missing.db"], ["no run store", "missing.db"]),
        (["report", "--store", "missing.db", "--out", "r"], ["no run store"]),
        (["runs", "--store", "DB", "--state", "DONE"], ["unknown state 'DONE'", "COMPLETE"]),
        (["sweep", "S", "--store", "DB", "--executor", "slurm"], ["unknown executor", "ray"]),
        (["sweep", "S", "--store", "DB", "--address", "x:1"], ["--address", "ray"]),
        (["sweep", "missing.yaml", "--store", "DB"], ["missing.yaml"]),
        (
            ["sweep", "S", "--store", "DB", "--executor", "ray", "--address", "127.0.0.1:1"],
            ["cannot reach a Ray cluster at 127.0.0.1:1"],
        ),
    ],
)
def test_bad_arguments_give_one_line(tmp_path: Path, args: list[str], words: list[str]) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    db = tmp_path / "runs.db"
    if "DB" in args and args[0] == "runs":
        depthlab("sweep", str(sweep), "--store", str(db), "--quiet")
    args = [str(db) if a == "DB" else str(sweep) if a == "S" else a for a in args]
    args = [str(tmp_path / a) if a.startswith("missing") else a for a in args]
    out = depthlab(*args)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    for word in words:
        assert word in out.stderr
    if args[0] == "sweep":
        assert not db.exists()  # a sweep that never started writes no store


def test_ctrl_c_stops_with_one_line_and_the_sweep_resumes(tmp_path: Path) -> None:
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        SWEEP.replace("epochs: 3", "epochs: 200").replace("[1, 2]", "[1, 2, 3, 4, 5, 6]")
    )
    db = tmp_path / "runs.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "depthlab.cli.main", "sweep", str(sweep), "--store", str(db)]
        + ["--workers", "2", "--quiet"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # until a first run finished
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            query = "SELECT count(*) FROM runs WHERE state NOT IN ('PENDING', 'RUNNING')"
            done = conn.execute(query).fetchone()[0]
            conn.close()
            if done:
                break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the driver and its workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "sweep interrupted" in err and "resume" in err
    again = depthlab("sweep", str(sweep), "--store", str(db), "--quiet")
    assert again.returncode == 0, again.stderr
    assert "12 planned" in again.stderr and "already finished" in again.stderr
    rows = list(csv.DictReader(io.StringIO(depthlab("runs", "--store", str(db), "--csv").stdout)))
    assert len(rows) == 12 and {r["state"] for r in rows} <= {"COMPLETE", "DIVERGED"}
