"""One optimizer step at a time, exactly as the trainer takes them: the trial's training loop.

:class:`Stepper` draws minibatches as ``depthlab.train.fit`` does (a ``torch.Generator`` seeded
by ``train.seed``, a fresh permutation each epoch), sets the scheduled learning rate, and after
each step reports the minibatch loss and the global gradient norm ‖∇_θ L‖₂ (before clipping),
or where they stopped being finite. :class:`ReferenceRun` is the shallow reference net's run
under the same data and setup, advanced only as far as a trial needs it and kept per setup
(:func:`reference_run`), so a sweep over networks trains it once.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import torch
from torch import nn

from depthlab.probes.base import ProbeBatch
from depthlab.spec import TrainSpec


class Stepper:
    """``net`` trained in place on ``batch`` under ``train``, one :meth:`step` at a time."""

    def __init__(self, net: nn.Module, batch: ProbeBatch, train: TrainSpec) -> None:
        from depthlab.train.schedule import make_optimizer

        self.net, self.batch, self.train = net, batch, train
        n = len(batch.x)
        self.size = n if train.batch_size == 0 else min(train.batch_size, n)
        self.per_epoch = math.ceil(n / self.size)
        self.params = [q for q in net.parameters() if q.requires_grad]
        self.optimizer = make_optimizer(train, self.params)
        self.generator = torch.Generator().manual_seed(train.seed)
        # minibatch orders drawn on the host (the same on every device), moved once per epoch
        self.device = batch.x.device
        self.order = torch.randperm(n, generator=self.generator, device="cpu").to(self.device)
        self.done = 0
        #: the run's techniques (``depthlab.probes.trial.TrialTechniques``), or None
        self.techniques: Any = None
        net.train()

    def step(self) -> tuple[float, float]:
        """One optimizer step: (minibatch loss, ‖∇_θ L‖₂). A non-finite loss or norm is returned
        before the update, which is then not taken."""
        from depthlab.train.schedule import lr_at

        step, batch = self.done, self.batch
        i = step % self.per_epoch
        if i == 0 and step > 0:
            self.order = torch.randperm(len(batch.x), generator=self.generator, device="cpu")
            self.order = self.order.to(self.device)
        idx = self.order[i * self.size : (i + 1) * self.size]
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.train, step, self.per_epoch)
        xb, yb = batch.x[idx], batch.y[idx]
        out = self.net(xb)
        loss = batch.loss_fn(out, yb)
        value = loss.item()
        objective = (
            loss if self.techniques is None else self.techniques.objective(loss, xb, yb, out)
        )
        if not math.isfinite(value) or not math.isfinite(objective.item()):
            return value if math.isfinite(value) else math.nan, math.nan
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if self.techniques is not None:
            self.techniques.after_backward()
        grads = [q.grad.detach() for q in self.params if q.grad is not None]
        # one fused reduction, on the parameters' device
        norm = (
            float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
            if grads
            else 0.0
        )
        if not math.isfinite(norm):
            return value, norm
        if self.train.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.params, self.train.grad_clip)
        self.optimizer.step()
        if self.techniques is not None:
            self.techniques.step_end(value)
        self.done += 1
        return value, norm

    def finite(self) -> bool:
        return all(bool(torch.isfinite(q).all()) for q in self.params)


def reference_net(batch: ProbeBatch, train: TrainSpec, out_dim: int) -> nn.Module:
    """The shallow reference net: two hidden layers of 128 ReLU units, He init, seeded by
    ``train.seed``, on the flattened inputs; built and initialised on the host (the same net on
    every device), then moved to the batch's device."""
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
    return net.to(batch.x.device)


class ReferenceRun:
    """The reference net's run under a setup; :meth:`extend` trains it only as far as asked."""

    def __init__(self, batch: ProbeBatch, train: TrainSpec, out_dim: int) -> None:
        self.stepper = Stepper(reference_net(batch, train, out_dim), batch, train)
        self.losses: list[float] = []
        self.diverged = False
        self.seconds = 0.0

    def extend(self, steps: int) -> list[float]:
        """The reference's step losses, at least ``steps`` of them unless it diverged."""
        started = time.perf_counter()
        while len(self.losses) < steps and not self.diverged:
            loss, norm = self.stepper.step()
            if not (math.isfinite(loss) and math.isfinite(norm)):
                self.diverged = True
                break
            self.losses.append(loss)
        self.seconds += time.perf_counter() - started
        return self.losses


#: Reference runs kept (one per data set and setup); a sweep over networks trains each once.
_REFERENCES: dict[tuple[Any, ...], ReferenceRun] = {}
REFERENCE_CACHE_SIZE = 32


def reference_run(batch: ProbeBatch, train: TrainSpec, out_dim: int) -> ReferenceRun:
    """The cached :class:`ReferenceRun` for this data (shape, dtype, device, checksums) and
    setup (the whole train spec), made on first use."""
    x, y = batch.x, batch.y
    key = (
        tuple(x.shape), str(x.dtype), str(x.device), float(x.double().sum()),
        float(x.flatten()[:64].double().sum()), float(y.double().sum()), batch.task,
        json.dumps(train.to_dict(), sort_keys=True, default=str), out_dim,
    )  # fmt: skip
    if key not in _REFERENCES:
        if len(_REFERENCES) >= REFERENCE_CACHE_SIZE:
            _REFERENCES.pop(next(iter(_REFERENCES)))
        _REFERENCES[key] = ReferenceRun(batch, train, out_dim)
    return _REFERENCES[key]
