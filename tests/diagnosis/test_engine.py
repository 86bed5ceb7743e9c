"""The verdict engine's contract: checkpoints, divergence, bounded memory, both feeds alike."""

from __future__ import annotations

import math

import pytest

from depthlab.diagnosis.engine import CHECKPOINTS, MAX_POINTS, Setup, VerdictEngine


def feed(engine: VerdictEngine, losses: list[float]) -> list[int]:
    """Feed losses until the engine is done; the steps at which it looked."""
    looked = []
    for step, loss in enumerate(losses):
        if engine.observe(step, loss) is not None:
            looked.append(step + 1)
        if engine.done:
            break
    return looked


def test_checkpoints_are_fractions_of_the_budget() -> None:
    engine = VerdictEngine(Setup(budget_steps=1000))
    assert engine.checkpoint_steps == tuple(math.ceil(f * 1000) for f in CHECKPOINTS)
    assert engine.cap == 160
    assert engine.due(9) and not engine.due(10)


def test_before_any_step_theory_alone_and_not_decided() -> None:
    engine = VerdictEngine(Setup(budget_steps=1000))
    assert not engine.decision.decided
    assert engine.decision.decided_by == "theory"


def test_a_nan_loss_decides_diverges_at_once() -> None:
    engine = VerdictEngine(Setup(optimizer="sgd", lr=10.0, budget_steps=1000))
    looked = feed(engine, [2.3, 5.0, 40.0, math.nan, 1.0])
    assert looked == [4]
    d = engine.decision
    assert d.verdict == "diverges" and d.decided and d.p_trains == 0.0 and d.step == 4
    assert engine.observe(5, 1.0) is None  # decided: nothing changes any more


def test_a_falling_curve_and_a_flat_curve_are_read_apart() -> None:
    budget = 1000
    falling = [2.3 * math.exp(-s / 20) + 0.05 for s in range(budget)]
    flat = [2.3 + 0.01 * ((s * 7919) % 13 - 6) / 6 for s in range(budget)]
    up = VerdictEngine(Setup(budget_steps=budget), baseline_loss=2.3)
    down = VerdictEngine(Setup(budget_steps=budget), baseline_loss=2.3)
    feed(up, falling)
    feed(down, flat)
    assert up.decision.p_trains > down.decision.p_trains
    assert up.decision.verdict == "trainable"
    assert down.decision.verdict != "trainable"


def test_memory_is_bounded_over_a_long_run() -> None:
    engine = VerdictEngine(Setup(budget_steps=10**6), checkpoints=(0.5,))
    for step in range(3 * MAX_POINTS):
        engine.observe(step, 1.0 / (1 + step))
    curve = engine.curve()
    assert len(curve["loss"]) <= MAX_POINTS and curve["stride"] >= 2


@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_infinite_gradient_norm_diverges(bad: float) -> None:
    engine = VerdictEngine(Setup(budget_steps=100))
    engine.observe(0, 2.0, grad_norm=bad)
    assert engine.decision.verdict == "diverges"
