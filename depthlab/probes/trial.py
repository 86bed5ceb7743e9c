"""The ``trial`` probe: the first steps of the real training run, as direct evidence.

A copy of the network trains step by step with the user's own training setup (``train``:
optimizer, learning rate and schedule, momentum, weight decay, batch size, gradient clipping)
on the batch's samples, drawn as the trainer draws them — the run's own first steps: same
initial weights, batches and schedule. Each step's minibatch loss and global gradient norm
‖∇_θ L‖₂ feed the verdict engine (``depthlab.diagnosis.engine``), which looks at the curve at
growing checkpoints of the budget (1, 2, 4, 8, 16 %) and the trial **stops as soon as the
engine is done**: decided, or at its cap (``fraction`` of the budget, ``train.epochs`` ×
⌈N / batch⌉ steps, at least ``min_steps`` and at most ``max_steps``). ``steps > 0`` runs exactly
that many steps instead. The run's ``train.techniques`` act through the trainer's callback
hooks (``TrialTechniques``). It records where a loss, gradient or parameter first became
NaN/inf, and the mean loss and accuracy on a fixed evaluation subset (the first
``eval_samples`` samples) before and after.

The shallow reference net's run under the same data and setup (``reference``) is advanced
only as far as the engine looks, and kept per process and setup
(``depthlab.probes.stepper.reference_run``): a sweep over networks pays it once.

The summary numbers the verdict reads, all on the evaluation subset:

- ``baseline_loss``: the loss of the best constant predictor — the entropy of the label
  frequencies (cross-entropy), or the variance of the targets (MSE); a network that has learnt
  nothing sits at or above it;
- ``improvement`` = (loss_before − loss_after) / baseline_loss;
- ``progress`` = (min(loss_before, baseline_loss) − loss_after) / baseline_loss: how far below
  the constant predictor (or the start, if lower) the trial got — learning the class prior or
  shrinking a huge initial loss is not progress;
- ``loss_after_ratio`` = loss_after / baseline_loss;
- ``loss_growth`` = max step loss / first step loss (> 1 for an unstable step size).

The engine's answer comes with it: ``verdict`` (``trainable``, a cause, or ``undecided``),
``p_trains``, ``predicted_progress`` with ``progress_interval``, ``decided``, ``decided_at`` (the
step) and ``engine`` (the losses it kept and where it looked, for the report's curve plot).

The original network is never touched: the trial trains a deep copy.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import torch
from torch import nn

from depthlab._device import widen
from depthlab.exceptions import ProbeError
from depthlab.probes.base import Probe, ProbeBatch, register_probe
from depthlab.probes.stepper import ReferenceRun, Stepper, reference_net, reference_run
from depthlab.spec import Spec, TrainSpec
from depthlab.spec.base import check_min, check_range


@dataclasses.dataclass(frozen=True)
class TrialParams(Spec):
    train: TrainSpec = dataclasses.field(default_factory=TrainSpec)
    steps: int = 0  # 0: sequential, until the verdict engine is done (at most max_steps)
    fraction: float = 0.16  # the cap, as a fraction of the budget (the engine's last checkpoint)
    min_steps: int = 10
    max_steps: int = 300
    eval_samples: int = 512
    reference: bool = True  # also trial the shallow reference net (real-valued inputs)

    def _check(self) -> None:
        check_min("steps", self.steps, 0)
        check_range("fraction", self.fraction, 0.0, 1.0, lo_open=True)
        check_min("min_steps", self.min_steps, 1)
        check_min("max_steps", self.max_steps, self.min_steps)
        check_min("eval_samples", self.eval_samples, 1)


def budget_steps(train: TrainSpec, n_samples: int) -> int:
    """The optimizer steps of the whole run: epochs × ⌈N / batch⌉."""
    batch = n_samples if train.batch_size == 0 else min(train.batch_size, n_samples)
    return train.epochs * math.ceil(n_samples / batch)


def baseline_loss(batch: ProbeBatch, out_dim: int) -> float:
    """The mean loss of the best constant prediction on ``batch`` (see the module doc)."""
    y = batch.y
    if batch.task == "classification":
        if getattr(batch.loss_fn, "__name__", "") == "mse_onehot":
            freq = widen(torch.bincount(y, minlength=out_dim)) / len(y)
            return float((freq * (1 - freq)).sum() / out_dim)
        freq = widen(torch.bincount(y)) / len(y)
        freq = freq[freq > 0]
        return float(-(freq * freq.log()).sum())
    return float(widen(y.reshape(len(y), -1)).var(0, unbiased=False).mean())


@register_probe("trial")
class TrialProbe(Probe):
    """A short real training run with the user's setup, read by the verdict engine as it goes
    (see the module doc)."""

    Params = TrialParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        p: TrialParams = self.params
        n = len(batch.x)
        if n < 2:
            raise ProbeError("trial needs at least 2 samples")
        steps = trial_steps(p, n)
        net = copy.deepcopy(model)
        if not any(q.requires_grad for q in net.parameters()):
            raise ProbeError("trial found no trainable parameter")
        ref = None
        if p.reference and torch.is_floating_point(batch.x):
            ref = reference_run(batch, p.train, _out_dim(net, batch))
        result = run_trial(
            net, batch, p.train, steps, p.eval_samples, sequential=p.steps == 0, reference=ref
        )
        if ref is not None:
            result["reference"] = {
                "loss": list(ref.losses[: result["steps"]]),
                "diverged": ref.diverged,
            }
        return result


def trial_steps(p: TrialParams, n: int) -> int:
    """The trial's most steps for ``n`` samples: ``steps`` when given, else the engine's cap
    (``fraction`` of the budget, at least ``min_steps`` but never more than a quarter of a short
    budget, at most ``max_steps``)."""
    budget = budget_steps(p.train, n)
    floor = min(p.min_steps, math.ceil(0.25 * budget))
    steps = p.steps or min(p.max_steps, max(floor, math.ceil(p.fraction * budget)))
    return min(steps, budget)


def _out_dim(net: nn.Module, batch: ProbeBatch) -> int:
    from depthlab.probes.base import preserved

    with torch.no_grad(), preserved(net):
        net.eval()
        return int(net(batch.x[:2]).shape[-1])


def reference_trial(
    batch: ProbeBatch, train: TrainSpec, steps: int, eval_samples: int, out_dim: int
) -> dict[str, Any]:
    """The same trial, ``steps`` in full, on the shallow reference net
    (``depthlab.probes.stepper.reference_net``): how fast this optimizer, learning rate and
    data let *any* network learn, against which the network's own trial is read."""
    return run_trial(
        reference_net(batch, train, out_dim), batch, train, steps, eval_samples, sequential=False
    )


def run_trial(
    net: nn.Module,
    batch: ProbeBatch,
    train: TrainSpec,
    steps: int,
    eval_samples: int,
    *,
    sequential: bool = False,
    reference: ReferenceRun | None = None,
) -> dict[str, Any]:
    """Train ``net`` (in place) as the trainer would, feeding the verdict engine each step's
    loss and gradient norm; at most ``steps`` steps, fewer when ``sequential`` and the engine
    is done. The trial's summary, with the engine's decision and what it saw."""
    from depthlab.diagnosis.engine import Curve, Setup, VerdictEngine

    n = len(batch.x)
    budget = budget_steps(train, n)
    stepper = Stepper(net, batch, train)
    techniques = TrialTechniques(train, net, stepper.optimizer, batch, stepper.generator)
    stepper.techniques = techniques
    size = stepper.size
    ex, ey = batch.x[:eval_samples], batch.y[:eval_samples]
    evaluation = dataclasses.replace(batch, x=ex, y=ey)
    before = _evaluate(net, evaluation)
    out_dim = int(before.pop("out_dim"))
    base = baseline_loss(evaluation, out_dim)
    engine = VerdictEngine(
        Setup(
            optimizer=train.optimizer,
            lr=train.lr,
            momentum=train.momentum,
            budget_steps=budget,
            batch_size=size,
        ),
        baseline_loss=base,
    )
    losses: list[float] = []
    grad_norms: list[float] = []
    diverged: int | None = None
    techniques.start()
    for step in range(steps):
        if reference is not None and engine.due(step):
            # the reference's curve, as far as the engine is about to look
            engine.reference = Curve(tuple(reference.extend(step + 1)), base)
        value, norm = stepper.step()
        if not (math.isfinite(value) and math.isfinite(norm)):
            diverged = step
            engine.observe(step, value, grad_norm=norm)
            break
        losses.append(value)
        grad_norms.append(norm)
        engine.observe(step, value, grad_norm=norm)
        if sequential and engine.done:
            break
    techniques.end()
    if diverged is None and not stepper.finite():
        diverged = len(losses)
    after = _evaluate(net, evaluation) if diverged is None else {}
    after.pop("out_dim", None)
    loss_before, loss_after = before["loss"], after.get("loss", math.inf)
    if not math.isfinite(loss_after) and diverged is None:
        diverged = len(losses)
    scale = base if base > 0 else 1.0
    decision = engine.decision
    return {
        "verdict": decision.verdict,
        "p_trains": decision.p_trains,
        "predicted_progress": decision.predicted_progress,
        "progress_interval": list(decision.progress_interval),
        "decided": decision.decided,
        "decided_at": decision.step,
        "engine": engine.curve(),
        "features": engine.features(),
        "steps": len(losses),
        "planned_steps": steps,
        "budget_steps": budget,
        "fraction_of_budget": len(losses) / budget if budget else 0.0,
        "optimizer": train.optimizer,
        "lr": train.lr,
        "loss": losses,
        "grad_norm": grad_norms,
        "diverged": diverged is not None,
        "diverged_step": diverged,
        "loss_before": loss_before,
        "loss_after": loss_after,
        "accuracy_before": before.get("accuracy"),
        "accuracy_after": after.get("accuracy"),
        "baseline_loss": base,
        "improvement": (loss_before - loss_after) / scale if diverged is None else -math.inf,
        # progress past the best constant predictor, from wherever the net started
        "progress": (min(loss_before, base) - loss_after) / scale
        if diverged is None
        else -math.inf,
        "loss_after_ratio": loss_after / scale if diverged is None else math.inf,
        "loss_growth": (max(losses) / losses[0]) if losses and losses[0] > 0 else math.nan,
        "eval_samples": len(ex),
        "out_dim": out_dim,
    }


class TrialTechniques:
    """The run's ``train.techniques`` (``depthlab.train.callbacks``) acting on a trial as
    ``depthlab.train.fit`` calls them: ``start`` before the first step, ``objective`` adds each
    technique's loss term to the batch loss, ``after_backward`` before clipping and the step,
    ``step_end`` after it, ``end`` when the trial stops. The techniques see the trial's samples
    as the run's data (train, val and test alike) and the trial's generator, which also draws
    its batches, as the trainer's does."""

    def __init__(
        self,
        train: TrainSpec,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        batch: ProbeBatch,
        generator: torch.Generator,
    ) -> None:
        from depthlab.data import Dataset
        from depthlab.train.callbacks import TrainState, build_techniques

        self.callbacks = build_techniques(train)
        classes = int(batch.y.max()) + 1 if batch.task == "classification" else 0
        x, y = batch.x, batch.y
        data = Dataset("trial", batch.task, x, y, x, y, x, y, classes)
        self.state = TrainState(net, optimizer, data, train, generator)
        self._started = False

    def start(self) -> None:
        for cb in self.callbacks:
            cb.on_train_start(self.state)
        self._started = True

    def objective(
        self, loss: torch.Tensor, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor
    ) -> torch.Tensor:
        for cb in self.callbacks:
            term = cb.loss_term(self.state, x, y, out)
            if term is not None:
                loss = loss + term
        return loss

    def after_backward(self) -> None:
        for cb in self.callbacks:
            cb.on_after_backward(self.state)

    def step_end(self, loss: float) -> None:
        self.state.step += 1
        self.state.loss = loss
        for cb in self.callbacks:
            cb.on_step_end(self.state)

    def end(self) -> None:
        if self._started:
            for cb in self.callbacks:
                cb.on_train_end(self.state)
            self._started = False


@torch.no_grad()
def _evaluate(net: nn.Module, batch: ProbeBatch) -> dict[str, float]:
    """Mean loss (and accuracy) on ``batch`` in train mode, the function training optimises."""
    out = net(batch.x)
    row = {"loss": float(batch.loss_fn(out, batch.y)), "out_dim": float(out.shape[-1])}
    if not math.isfinite(row["loss"]):
        row["loss"] = math.inf
    if batch.task == "classification":
        row["accuracy"] = float(widen(out.argmax(-1) == batch.y).mean())
    return row
