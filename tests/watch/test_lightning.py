"""A real ``lightning.Trainer`` (CPU) with ``DepthlabCallback``: a run whose learning rate is far
past the edge of stability is stopped within 10 % of its budget with the verdict *diverges*
in its logs; a healthy run goes to the end and is called *trainable*."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

L = pytest.importorskip("lightning", reason="lightning is a test dependency (make setup)")

from depthlab.data import load_data  # noqa: E402
from depthlab.spec import DataSpec  # noqa: E402
from depthlab.watch.lightning import DepthlabCallback  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
]
EPOCHS, BATCH = 12, 64


class Net(L.LightningModule):
    def __init__(self, optimizer: str, lr: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                                 nn.Linear(64, 10))  # fmt: skip
        self.optimizer, self.lr = optimizer, lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr)
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def fit(tmp_path: Path, optimizer: str, lr: float) -> tuple[L.Trainer, DepthlabCallback, int]:
    data = load_data(DataSpec(name="digits"))
    ds = torch.utils.data.TensorDataset(data.x_train, data.y_train)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    torch.manual_seed(0)
    callback = DepthlabCallback(every_n_steps=50)
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        devices=1,
        callbacks=[callback],
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(Net(optimizer, lr), loader)
    return trainer, callback, EPOCHS * len(loader)


def logged(trainer: L.Trainer, key: str) -> list[float]:
    with open(Path(trainer.log_dir) / "metrics.csv") as fh:
        return [float(r[key]) for r in csv.DictReader(fh) if r.get(key)]


def test_a_diverging_run_is_stopped_early(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="depthlab.watch"):
        trainer, callback, budget = fit(tmp_path, "sgd", 1e30)
    assert trainer.global_step <= 0.1 * budget
    report = json.loads((Path(trainer.log_dir) / "depthlab" / "watch.json").read_text())
    assert report["verdict"] == "diverges" and report["should_stop"]
    assert (Path(trainer.log_dir) / "depthlab" / "index.html").exists()
    assert logged(trainer, "depthlab/stop")[-1] == 1.0
    assert any("stopping the run" in r.message and "diverges" in r.message for r in caplog.records)


def test_a_healthy_run_goes_to_the_end_and_is_trainable(tmp_path: Path) -> None:
    trainer, callback, budget = fit(tmp_path, "adam", 3e-3)
    assert trainer.global_step == budget
    assert callback.monitor is not None and callback.monitor.verdict == "trainable"
    report = json.loads((Path(trainer.log_dir) / "depthlab" / "watch.json").read_text())
    assert report["verdict"] == "trainable" and report["theory"] is not None
    assert logged(trainer, "depthlab/decided")[-1] == 1.0
    assert logged(trainer, "depthlab/update_ratio_median")  # layer statistics every 50 steps
