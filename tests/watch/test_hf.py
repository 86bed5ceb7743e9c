"""A real ``transformers.Trainer`` (CPU) on a tiny BERT built from a config (nothing downloaded)
with ``DepthlabTrainerCallback``: a run whose learning rate is far past the edge of stability is
stopped within 10 % of its budget with *diverges* in its log history; a healthy run goes to the
end and is called *trainable* — with ``logging_steps`` far larger than the run, so the verdict
does not rest on the trainer's logged loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is a test dependency")
pytest.importorskip("accelerate", reason="the HF Trainer needs accelerate (depthlab[hf])")

from depthlab.watch.hf import DepthlabTrainerCallback  # noqa: E402

N, LENGTH, VOCAB, CLASSES = 256, 12, 64, 2


class Tokens(torch.utils.data.Dataset):
    """Token sequences labelled by which half of the vocabulary their first token is in."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randint(1, VOCAB, (N, LENGTH), generator=gen)
        self.y = (self.x[:, 0] * CLASSES) // VOCAB

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "labels": self.y[i]}


def train(tmp_path: Path, optim: str, lr: float) -> tuple[object, DepthlabTrainerCallback, int]:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=LENGTH, num_labels=CLASSES,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        num_train_epochs=10,
        learning_rate=lr,
        optim=optim,
        lr_scheduler_type="constant",
        logging_steps=10_000,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    callback = DepthlabTrainerCallback(every_n_steps=50)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Tokens(), callbacks=[callback]
    )
    trainer.train()
    return trainer, callback, args.num_train_epochs * N // 16


def entries(trainer: object, key: str) -> list[object]:
    return [e[key] for e in trainer.state.log_history if key in e]  # type: ignore[attr-defined]


def test_a_diverging_run_is_stopped_early(tmp_path: Path) -> None:
    trainer, callback, budget = train(tmp_path, "sgd", 1e30)
    assert trainer.state.global_step <= 0.1 * budget
    assert entries(trainer, "depthlab/verdict")[-1] == "diverges"
    assert entries(trainer, "depthlab/stop")[-1] == 1.0
    report = json.loads((tmp_path / "depthlab" / "watch.json").read_text())
    assert report["verdict"] == "diverges" and report["should_stop"]


def test_a_healthy_run_goes_to_the_end_and_is_trainable(tmp_path: Path) -> None:
    trainer, callback, budget = train(tmp_path, "adamw_torch", 3e-3)
    assert trainer.state.global_step == budget
    assert callback.monitor is not None and callback.monitor.verdict == "trainable"
    assert callback.monitor.theory is not None  # diagnosed at the start through .logits
    assert entries(trainer, "depthlab/verdict")[-1] == "trainable"
