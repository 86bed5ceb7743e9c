"""The training setup a diagnosis is for, read from what a user already has: an optimizer name,
a ``torch.optim.Optimizer`` instance or a factory of one, a learning rate, a budget in steps or
epochs and a batch size, mapped onto a ``TrainSpec`` for the verdict and the trial.

An optimizer instance is read by its class: ``SGD`` is ``sgd`` (``momentum`` when its momentum
is > 0), ``Adam`` is ``adam``, ``AdamW`` is ``adamw``; its first parameter group gives ``lr``,
``momentum`` and ``weight_decay``. Any other class is read by a stated rule: one whose defaults
hold ``betas`` (NAdam, RAdam, Adamax and most third-party adaptive optimizers) or another
per-coordinate scaling (``alpha`` of RMSprop, ``lr_decay`` of Adagrad, ``rho`` of Adadelta) is
of the adaptive family and read as ``adam`` — ``adamw`` when it decouples weight decay (its
class name ends in ``W`` or its ``decoupled_weight_decay`` is true); one with only ``momentum``
(and ``dampening``/``nesterov``) is of the SGD family. Anything else is an error naming it.
Betas, Nesterov and the like are not part of the setup the verdict is calibrated on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from depthlab.exceptions import SpecError
from depthlab.spec import TrainSpec
from depthlab.spec.train import OPTIMIZERS

ADAPTIVE_KEYS = ("betas", "alpha", "lr_decay", "rho")

OptimizerLike = str | torch.optim.Optimizer | Callable[[Any], torch.optim.Optimizer]


def read_optimizer(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``{optimizer, lr, momentum, weight_decay}`` of an optimizer instance (module doc)."""
    cls = type(optimizer)
    group = optimizer.param_groups[0] if optimizer.param_groups else {}
    defaults = {**optimizer.defaults, **group}
    momentum = float(defaults.get("momentum", 0.0) or 0.0)
    if isinstance(optimizer, torch.optim.AdamW):
        name = "adamw"
    elif isinstance(optimizer, torch.optim.Adam):
        name = "adamw" if defaults.get("decoupled_weight_decay") else "adam"
    elif isinstance(optimizer, torch.optim.SGD):
        name = "momentum" if momentum > 0 else "sgd"
    elif any(k in defaults for k in ADAPTIVE_KEYS):
        decoupled = cls.__name__.endswith("W") or bool(defaults.get("decoupled_weight_decay"))
        name = "adamw" if decoupled else "adam"
    elif "momentum" in defaults:
        name = "momentum" if momentum > 0 else "sgd"
    else:
        raise SpecError(
            "optimizer",
            f"cannot read {cls.__name__}: depthlab judges SGD (with momentum) and the adaptive "
            f"family (Adam-like: 'betas' or another per-coordinate scaling); pass "
            f"optimizer= one of {', '.join(OPTIMIZERS)} with lr=",
        )
    return {
        "optimizer": name,
        "lr": float(defaults.get("lr", 1e-3)),
        "momentum": momentum if momentum > 0 else TrainSpec().momentum,
        "weight_decay": float(defaults.get("weight_decay", 0.0) or 0.0),
    }


def resolve_optimizer(optimizer: OptimizerLike, model: nn.Module) -> dict[str, Any]:
    """A name, an instance, or a factory called on the model's trainable parameters (the
    optimizer it makes is only read, never stepped)."""
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise SpecError(
                "optimizer", f"{optimizer!r} is not valid; choices: {', '.join(OPTIMIZERS)}"
            )
        return {"optimizer": optimizer}
    if isinstance(optimizer, torch.optim.Optimizer):
        return read_optimizer(optimizer)
    if callable(optimizer):
        made = optimizer([p for p in model.parameters() if p.requires_grad])
        if not isinstance(made, torch.optim.Optimizer):
            raise SpecError(
                "optimizer", f"the factory returned {type(made).__name__}, not an Optimizer"
            )
        return read_optimizer(made)
    raise SpecError(
        "optimizer",
        f"{type(optimizer).__name__} is not valid; expected a name "
        f"({', '.join(OPTIMIZERS)}), a torch.optim.Optimizer or a factory of one",
    )


def train_spec(
    optimizer: OptimizerLike,
    model: nn.Module,
    *,
    lr: float | None,
    steps: int | None,
    epochs: int | None,
    batch_size: int | None,
    n_samples: int,
    steps_per_epoch: int | None,
    seed: int,
) -> TrainSpec:
    """The ``TrainSpec`` of the run judged, on the ``n_samples`` samples drawn for the probes.

    The budget is the run's optimizer steps: ``steps``, or ``epochs`` × ``steps_per_epoch``
    (the loader's length; else ⌈n_samples / batch⌉), spread over epochs of the drawn samples
    (rounded to whole epochs, at least one), so the trial takes its share of the real budget.
    Neither: TrainSpec's default of 20 epochs of the drawn samples.
    """
    if steps is not None and epochs is not None:
        raise SpecError("steps", "give steps or epochs, not both")
    for field, value in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size)):
        if value is not None and value < 1:
            raise SpecError(field, f"{value!r} is not valid; expected >= 1")
    fields: dict[str, Any] = {"seed": seed, **resolve_optimizer(optimizer, model)}
    if lr is not None:
        fields["lr"] = lr
    batch = min(batch_size or 64, n_samples)
    fields["batch_size"] = batch
    per_epoch = math.ceil(n_samples / batch)
    if epochs is not None:
        steps = epochs * (steps_per_epoch or per_epoch)
    if steps is not None:
        fields["epochs"] = max(1, round(steps / per_epoch))
    return TrainSpec.from_dict(fields)
