"""The diagnosis report: the trial's curve figure, and a summary table without empty columns."""

from __future__ import annotations

from pathlib import Path

import torch

from depthlab import ArchSpec, build_model
from depthlab.diagnosis.run import DiagnoseOptions, diagnose
from depthlab.probes import ProbeBatch
from depthlab.report import write_report
from depthlab.spec import TrainSpec


def _diagnosis() -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=gen)
    batch = ProbeBatch.from_tensors(x, (x @ torch.randn(10, 3, generator=gen)).argmax(1))
    model = build_model(ArchSpec(depth=2, width=32), in_shape=(10,), out_dim=3, seed=0)
    train = TrainSpec(optimizer="adam", lr=1e-2, epochs=100, batch_size=32)
    options = DiagnoseOptions(probes=("signal", "trial"), train=train, seeds=1)
    return diagnose(model, batch, options, name="small", progress=False)


def test_the_report_plots_the_trial_and_leaves_out_probes_that_did_not_run(tmp_path: Path):
    d = _diagnosis()
    assert d["trial"]["engine"]["looked"], "the engine looked at least once"
    page = write_report([d], tmp_path).read_text()
    assert (tmp_path / "trial.png").stat().st_size > 10_000
    assert "trial.png" in page
    # signal ran: its columns are there; jacobian, ntk and hessian did not: theirs are not
    assert "E[h²] last/first" in page
    for absent in ("Jacobian mean σ²", "NTK condition", "Hessian λ_max"):
        assert absent not in page
    assert "predicted progress" in page and "P(trains)" in page
