"""The ``trial`` probe: the first steps of the real training run, as direct evidence.

A copy of the network trains for ``steps`` optimizer steps with the user's own training setup
(``train``: optimizer, learning rate and schedule, momentum, weight decay, batch size, gradient
clipping) on the batch's samples, drawn as the trainer draws them, with the run's
``train.techniques`` acting through the trainer's callback hooks (``TrialTechniques``). It
records the minibatch loss and the global gradient norm ‖∇_θ L‖₂ of every step, where a loss,
gradient or parameter first became NaN/inf, and the mean loss and accuracy on a fixed evaluation
subset (the first ``eval_samples`` samples) before and after.

``steps: 0`` (default) takes ``fraction`` of the run's budget, ``train.epochs`` ×
⌈N / batch⌉ steps, at least ``min_steps`` and at most ``max_steps``: a few percent of the cost of
training, by construction.

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
from depthlab.spec import Spec, TrainSpec
from depthlab.spec.base import check_min, check_range


@dataclasses.dataclass(frozen=True)
class TrialParams(Spec):
    train: TrainSpec = dataclasses.field(default_factory=TrainSpec)
    steps: int = 0  # 0: fraction of the budget, within [min_steps, max_steps]
    fraction: float = 0.08
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
    """A short real training run with the user's setup (see the module doc)."""

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
        result = run_trial(net, batch, p.train, steps, p.eval_samples)
        if p.reference and torch.is_floating_point(batch.x):
            ref = reference_trial(batch, p.train, steps, p.eval_samples, result["out_dim"])
            result["reference"] = {
                k: ref[k]
                for k in ("diverged", "improvement", "progress", "loss_after_ratio")
                + ("accuracy_before", "accuracy_after")
            }
        return result


def trial_steps(p: TrialParams, n: int) -> int:
    """The trial's steps for ``n`` samples: ``fraction`` of the budget, at least ``min_steps``
    (but never more than a quarter of a short budget), at most ``max_steps``."""
    budget = budget_steps(p.train, n)
    floor = min(p.min_steps, math.ceil(0.25 * budget))
    steps = p.steps or min(p.max_steps, max(floor, round(p.fraction * budget)))
    return min(steps, budget)


def reference_trial(
    batch: ProbeBatch, train: TrainSpec, steps: int, eval_samples: int, out_dim: int
) -> dict[str, Any]:
    """The same trial on the shallow reference net — two hidden layers of 128 ReLU units, He
    init, seeded by ``train.seed`` — on the flattened inputs: how fast this optimizer, learning
    rate and data let *any* network learn, against which the network's own trial is read.
    Built and initialised on the host (the same net on every device), then moved to the
    batch's device."""
    gen = torch.Generator().manual_seed(train.seed)
    d = int(batch.x[0].numel())
    with torch.device("cpu"):
        net = nn.Sequential(
            nn.Flatten(), nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
            nn.Linear(128, out_dim),
        ).to(batch.x.dtype)  # fmt: skip
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, math.sqrt(2.0 / m.in_features), generator=gen)
                m.bias.zero_()
    net.to(batch.x.device)
    return run_trial(net, batch, train, steps, eval_samples)


def run_trial(
    net: nn.Module, batch: ProbeBatch, train: TrainSpec, steps: int, eval_samples: int
) -> dict[str, Any]:
    """Train ``net`` (in place) for ``steps`` steps as the trainer would; the trial's summary."""
    from depthlab.train.schedule import lr_at, make_optimizer

    n = len(batch.x)
    size = n if train.batch_size == 0 else min(train.batch_size, n)
    per_epoch = math.ceil(n / size)
    budget = budget_steps(train, n)
    net.train()
    params = [q for q in net.parameters() if q.requires_grad]
    optimizer = make_optimizer(train, params)
    ex, ey = batch.x[:eval_samples], batch.y[:eval_samples]
    evaluation = dataclasses.replace(batch, x=ex, y=ey)
    before = _evaluate(net, evaluation)
    out_dim = int(before.pop("out_dim"))
    # minibatch orders drawn on the host (the same on every device), moved once per epoch
    generator = torch.Generator().manual_seed(train.seed)
    device = batch.x.device
    losses: list[float] = []
    grad_norms: list[float] = []
    diverged: int | None = None
    order = torch.randperm(n, generator=generator, device="cpu").to(device)
    techniques = TrialTechniques(train, net, optimizer, batch, generator)
    techniques.start()
    for step in range(steps):
        i = step % per_epoch
        if i == 0 and step > 0:
            order = torch.randperm(n, generator=generator, device="cpu").to(device)
        idx = order[i * size : (i + 1) * size]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(train, step, per_epoch)
        xb, yb = batch.x[idx], batch.y[idx]
        out = net(xb)
        loss = batch.loss_fn(out, yb)
        value = loss.item()
        objective = techniques.objective(loss, xb, yb, out)
        if not (math.isfinite(value) and math.isfinite(objective.item())):
            diverged = step
            break
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        techniques.after_backward()
        grads = [widen(q.grad.detach()).pow(2).sum() for q in params if q.grad is not None]
        sq = float(torch.stack(grads).sum()) if grads else 0.0
        norm = math.sqrt(sq) if math.isfinite(sq) else math.inf
        if not math.isfinite(norm):
            diverged = step
            break
        if train.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, train.grad_clip)
        optimizer.step()
        techniques.step_end(value)
        losses.append(value)
        grad_norms.append(norm)
    techniques.end()
    if diverged is None and not all(bool(torch.isfinite(q).all()) for q in params):
        diverged = len(losses)
    after = _evaluate(net, evaluation) if diverged is None else {}
    after.pop("out_dim", None)
    base = baseline_loss(evaluation, out_dim)
    loss_before, loss_after = before["loss"], after.get("loss", math.inf)
    if not math.isfinite(loss_after) and diverged is None:
        diverged = len(losses)
    scale = base if base > 0 else 1.0
    return {
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
