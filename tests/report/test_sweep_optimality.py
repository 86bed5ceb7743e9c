"""Width vs optimality gap in the sweep report, from a real tiny sweep with the optimality probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from depthlab.report import write_sweep_report
from depthlab.store import SQLiteStore
from depthlab.sweep import LocalExecutor, SweepSpec, run_sweep, sweep_records
from depthlab.sweep.task import execute

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LAM = 0.01


def _base(tmp_path: Path, weight_decay: float = LAM) -> dict:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 2))
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.abs(x[:, 0]) - 0.5 * x[:, 1])
    return {
        "arch": {"family": "mlp", "depth": 1, "width": 4, "act": "relu", "init": "he"},
        "data": {
            "name": "npz",
            "path": str(path),
            "val_fraction": 0,
            "test_fraction": 0,
            "standardize": False,
        },
        "train": {
            "optimizer": "adam",
            "lr": 0.01,
            "epochs": 300,
            "batch_size": 0,
            "weight_decay": weight_decay,
        },
    }


def test_sweep_over_width_reports_width_vs_gap(tmp_path: Path) -> None:
    sweep = SweepSpec.from_dict(
        {
            "base": _base(tmp_path),
            "axes": {"arch.width": [1, 16]},
            "seeds": [0],
            "probes": ["optimality"],
        }
    )
    with SQLiteStore(tmp_path / "runs.db") as store:
        run_sweep(sweep, store, LocalExecutor(1), progress=False)
        records = sweep_records(store, sweep)
    gaps = {}
    for r in records:
        opt = r.probes["optimality"]
        assert "diagnose" not in r.probes  # nothing else was asked for at initialisation
        assert opt["certified"] is True and opt["lam"] == LAM
        # no trained network beats the certified optimum (Pilanci & Ergen 2020)
        assert opt["trained_objective"] >= opt["lower_bound"] - 1e-12
        assert opt["gap"] >= -1e-9 * opt["optimum"]
        gaps[r.spec["arch"]["width"]] = opt["gap"]
    assert sorted(gaps) == [1, 16]
    assert gaps[1] > gaps[16]  # one neuron cannot reach the optimum here; sixteen come closer
    page = write_sweep_report(records, tmp_path / "report").read_text()
    assert "id='optimality'" in page and "width_gap.png" in page
    png = tmp_path / "report" / "width_gap.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    section = page.split("id='optimality'")[1]
    for w in (1, 16):
        assert f"<td>{w}</td>" in section


def test_optimality_needs_weight_decay_and_is_reported_not_raised(tmp_path: Path) -> None:
    from depthlab.spec import RunSpec
    from depthlab.store.base import RunRecord, RunState

    spec = RunSpec.from_dict(_base(tmp_path, weight_decay=0.0)).to_dict()
    spec["train"]["epochs"] = 5
    outcome = execute(spec, probes=("optimality",))
    assert outcome["state"] == "COMPLETE"
    assert "weight_decay" in outcome["probes"]["optimality"]["error"]
    # the report lists the run with its reason, and has no gap to plot
    record = RunRecord(
        run_id="a-s0", spec_hash="a", spec=spec, seed=0, state=RunState.COMPLETE,
        metrics=outcome["metrics"], probes=outcome["probes"],
    )  # fmt: skip
    page = write_sweep_report([record], tmp_path / "report").read_text()
    section = page.split("id='optimality'")[1]
    assert "needs train.weight_decay" in section and "No run has a finite gap" in section
    assert not (tmp_path / "report" / "width_gap.png").exists()


def test_no_optimality_records_no_section(tmp_path: Path) -> None:
    from depthlab.spec import RunSpec
    from depthlab.store.base import RunRecord, RunState

    spec = RunSpec.from_dict(_base(tmp_path)).to_dict()
    record = RunRecord(
        run_id="a-s0", spec_hash="a", spec=spec, seed=0, state=RunState.COMPLETE,
        metrics={"train_loss": 0.1},
    )  # fmt: skip
    page = write_sweep_report([record], tmp_path / "report").read_text()
    assert "id='optimality'" not in page


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
