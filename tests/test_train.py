"""The trainer: seeded, learns, never raises on divergence, schedules and techniques work."""

from __future__ import annotations

import math

import pytest
import torch

from depthlab import (
    ArchSpec,
    Callback,
    DataSpec,
    RunSpec,
    RunState,
    SpecError,
    TrainSpec,
    build_model,
    fit,
    load_data,
    run,
)
from depthlab.train import lr_at
from depthlab.train.techniques import noise_variance

SMALL = RunSpec(
    arch=ArchSpec(depth=2, width=32),
    data=DataSpec(name="iris"),
    train=TrainSpec(epochs=15, batch_size=16, lr=1e-2),
)


def test_a_small_run_learns_and_reports_every_metric():
    result = run(SMALL, progress=False)
    assert result.state is RunState.COMPLETE and result.diverged_step is None
    m = result.metrics
    assert set(m) == {f"{p}_{k}" for p in ("train", "val", "test") for k in ("loss", "accuracy")}
    assert m["train_accuracy"] > 0.9 and m["test_accuracy"] > 0.8
    assert len(result.history) == 15
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < first["train_loss"]
    assert "val_accuracy" in last and last["step"] == 15 * math.ceil(105 / 16)
    assert result.to_dict()["spec"] == SMALL.to_dict()


def test_same_seed_same_numbers_and_other_seed_other_numbers():
    a, b = run(SMALL, progress=False), run(SMALL, progress=False)
    assert a.metrics == b.metrics and a.history == b.history
    c = run(SMALL.replace(train=SMALL.train.replace(seed=1)), progress=False)
    assert c.metrics != a.metrics


def test_dropout_runs_are_seeded_and_leave_global_rng_alone():
    spec = SMALL.replace(arch=SMALL.arch.replace(dropout=0.3))
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    a = run(spec, progress=False)
    assert torch.equal(torch.rand(1), before)
    assert run(spec, progress=False).metrics == a.metrics


@pytest.mark.parametrize("optimizer,lr", [("sgd", 1e6), ("momentum", 1e6), ("adam", 1e5)])
def test_absurd_learning_rate_ends_diverged_with_its_step(optimizer, lr):
    spec = SMALL.replace(
        arch=ArchSpec(depth=6, width=64),
        train=TrainSpec(optimizer=optimizer, lr=lr, epochs=50, batch_size=16),
    )
    result = run(spec, progress=False)
    assert result.state is RunState.DIVERGED
    assert result.diverged_step is not None and 0 <= result.diverged_step < 50 * 7
    assert str(result.diverged_step) in result.error
    assert result.steps == result.diverged_step
    assert result.to_dict()["state"] == "DIVERGED"


def test_regression_uses_mse_and_full_batch():
    spec = RunSpec(
        arch=ArchSpec(depth=1, width=32),
        data=DataSpec(name="diabetes"),
        train=TrainSpec(epochs=30, batch_size=0, lr=1e-2),
    )
    result = run(spec, progress=False)
    assert result.state is RunState.COMPLETE and result.steps == 30
    assert "train_accuracy" not in result.metrics
    assert result.metrics["train_loss"] < 0.7  # standardised targets: variance 1 at the start


def test_mse_on_class_labels_and_cross_entropy_on_regression():
    spec = SMALL.replace(train=SMALL.train.replace(loss="mse", epochs=3))
    assert run(spec, progress=False).state is RunState.COMPLETE
    bad = RunSpec(data=DataSpec(name="diabetes"), train=TrainSpec(loss="cross_entropy"))
    with pytest.raises(SpecError, match="train.loss"):
        run(bad, progress=False)


def test_schedules():
    spec = TrainSpec(lr=1.0, epochs=10, schedule="cosine", warmup_epochs=2)
    lrs = [lr_at(spec, s, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.05) and lrs[19] == pytest.approx(1.0)
    assert lrs[20] == pytest.approx(1.0) and lrs[99] < 1e-3
    assert all(b <= a + 1e-12 for a, b in zip(lrs[20:], lrs[21:], strict=False))
    step = TrainSpec(lr=1.0, epochs=10, schedule="step", step_size=3, step_gamma=0.5)
    assert [lr_at(step, e * 10, 10) for e in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert lr_at(TrainSpec(lr=0.3), 1234, 10) == 0.3


def test_gradient_clipping_bounds_the_update():
    data = load_data(DataSpec(name="iris"))
    seen = []

    class Spy(Callback):
        def on_step_end(self, state):
            seen.append(state.step)

    spec = TrainSpec(optimizer="sgd", lr=1.0, epochs=1, batch_size=0, grad_clip=1e-3)
    model = build_model(ArchSpec(depth=1, width=8), in_shape=(4,), out_dim=3)
    before = [p.detach().clone() for p in model.parameters()]
    fit(model, data, spec, callbacks=[Spy()], progress=False)
    moved = torch.sqrt(
        sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before, strict=True))
    )
    assert moved.item() <= 1e-3 + 1e-7 and seen == [1]


def test_gradient_noise_has_the_annealed_variance():
    assert noise_variance(0, 0.3, 0.55) == pytest.approx(0.3)
    assert noise_variance(99, 1.0, 0.55) == pytest.approx(100**-0.55)
    # With a zero learning signal, the gradient seen by the optimiser is the noise itself.
    data = load_data(DataSpec(name="iris"))
    spec = TrainSpec(
        optimizer="sgd",
        lr=1e-12,
        epochs=1,
        batch_size=0,
        techniques=({"name": "gradient_noise", "eta": 0.5, "gamma": 0.55},),
    )
    model = build_model(ArchSpec(depth=1, width=512, init="zero"), in_shape=(4,), out_dim=3)
    grads = []

    class Grab(Callback):
        def on_step_end(self, state):
            grads.append(torch.cat([p.grad.flatten() for p in state.model.parameters()]))

    # Zero weights: only the readout bias gets a signal; every other entry is pure noise.
    fit(model, data, spec, callbacks=[Grab()], progress=False)
    noise = grads[0][: 512 * 4]
    assert noise.var().item() == pytest.approx(0.5, rel=0.1)


def test_callbacks_see_every_epoch():
    rows = []

    class Rows(Callback):
        def on_epoch_end(self, state, metrics):
            rows.append((state.epoch, metrics["train_loss"]))

    run(SMALL.replace(train=SMALL.train.replace(epochs=4)), callbacks=[Rows()], progress=False)
    assert [e for e, _ in rows] == [0, 1, 2, 3]


def test_eval_every_zero_evaluates_only_at_the_end():
    result = run(SMALL.replace(train=SMALL.train.replace(epochs=3, eval_every=0)), progress=False)
    assert "val_loss" not in result.history[0] and "val_loss" in result.history[-1]
