"""The trial probe: a diverging net, a dead net, a healthy one; the model is never touched."""

from __future__ import annotations

import math

import pytest
import torch

from depthlab import ArchSpec, build_model
from depthlab.probes import ProbeBatch
from depthlab.probes.trial import TrialParams, TrialProbe, baseline_loss, budget_steps
from depthlab.spec import TrainSpec


def _batch(n: int = 256, d: int = 10, classes: int = 3) -> ProbeBatch:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=gen)
    w = torch.randn(d, classes, generator=gen)
    return ProbeBatch.from_tensors(x, (x @ w).argmax(1))


def _net(depth: int = 2, **kw) -> torch.nn.Module:
    return build_model(ArchSpec(depth=depth, width=32, **kw), in_shape=(10,), out_dim=3, seed=0)


def _trial(model, train: TrainSpec, **kw) -> dict:
    return TrialProbe(TrialParams(train=train, **kw)).run(model, _batch())


def test_a_healthy_net_improves_and_is_left_untouched():
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = _trial(model, TrainSpec(optimizer="adam", lr=1e-2, epochs=10, batch_size=32), steps=30)
    assert result["steps"] == 30 and not result["diverged"]
    assert result["improvement"] > 0.1 and result["loss_after"] < result["loss_before"]
    assert result["accuracy_after"] > result["accuracy_before"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_huge_learning_rate_diverges_and_says_when():
    model = _net(depth=6)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    result = _trial(model, TrainSpec(optimizer="sgd", lr=1e3, epochs=10), steps=40)
    assert result["diverged"] and result["diverged_step"] is not None
    assert result["diverged_step"] < 40 and result["improvement"] == -math.inf


def test_a_dead_net_makes_no_progress():
    model = _net(depth=4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and m.out_features == 32:
                m.bias.fill_(-50.0)  # every ReLU off for every input: no gradient reaches them
    result = _trial(model, TrainSpec(optimizer="sgd", lr=1e-2, epochs=10), steps=30)
    assert not result["diverged"]
    # only the readout's bias learns: at best the constant predictor, never better
    assert result["loss_after_ratio"] >= 0.99 and result["improvement"] < 0.1


def test_steps_default_to_a_fraction_of_the_budget():
    train = TrainSpec(epochs=20, batch_size=64)
    assert budget_steps(train, 256) == 80
    result = _trial(_net(), train, fraction=0.1, min_steps=2)
    assert result["planned_steps"] == 8 and result["budget_steps"] == 80
    assert result["fraction_of_budget"] == pytest.approx(0.1)


def test_baseline_is_the_constant_predictors_loss():
    batch = _batch()
    freq = torch.bincount(batch.y).double() / len(batch.y)
    assert baseline_loss(batch, 3) == pytest.approx(float(-(freq * freq.log()).sum()))
    # and it is what training only the readout's bias reaches
    bias = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([bias], lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(bias.expand(len(batch.y), 3), batch.y)
        loss.backward()
        opt.step()
    assert float(loss.detach()) == pytest.approx(baseline_loss(batch, 3), rel=1e-4)
    reg = ProbeBatch.from_tensors(batch.x, batch.x[:, 0] * 3.0)
    assert baseline_loss(reg, 1) == pytest.approx(float((batch.x[:, 0] * 3.0).var(unbiased=False)))


def test_multi_output_regression_baseline_is_per_column():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(400, 2, generator=gen) + torch.tensor([0.0, 10.0])
    batch = ProbeBatch.from_tensors(torch.randn(400, 3, generator=gen), y)
    assert baseline_loss(batch, 2) == pytest.approx(float(y.var(0, unbiased=False).mean()))


def test_learning_the_class_prior_is_not_progress():
    """A dead net on 90/10 labels: its loss falls (the readout bias learns the prior) but never
    below the constant predictor's, so the verdict's rule sees no progress."""
    from depthlab.diagnosis.verdict import _trial_progress

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 10, generator=gen)
    y = (torch.rand(400, generator=gen) < 0.1).long()
    model = build_model(ArchSpec(depth=3, width=32), in_shape=(10,), out_dim=2, seed=0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and m.out_features == 32:
                m.bias.fill_(-50.0)
        model[-1].bias.copy_(torch.tensor([-3.0, 3.0]))  # starts far from the prior
    train = TrainSpec(optimizer="adam", lr=1e-2, epochs=10, batch_size=64)
    result = TrialProbe(TrialParams(train=train, steps=40)).run(
        model, ProbeBatch.from_tensors(x, y)
    )
    assert result["improvement"] > 0.3  # the loss did fall a lot ...
    assert result["progress"] <= 0.01 and _trial_progress(result) <= 0.01  # ... to the prior


def test_a_full_batch_short_run_is_not_trialled_whole():
    train = TrainSpec(epochs=8, batch_size=0)
    result = _trial(_net(), train)
    assert result["budget_steps"] == 8 and result["planned_steps"] == 2
