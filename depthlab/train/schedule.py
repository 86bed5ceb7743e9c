"""Optimisers and learning-rate schedules, built from a ``TrainSpec``."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from depthlab.spec import TrainSpec


def make_optimizer(spec: TrainSpec, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """sgd | momentum (SGD with ``momentum``) | adam | adamw, at ``lr`` and ``weight_decay``."""
    params = list(params)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.optimizer == "momentum":
        return torch.optim.SGD(
            params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
        )
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)


def lr_at(spec: TrainSpec, step: int, steps_per_epoch: int) -> float:
    """The learning rate for optimiser step ``step`` (from 0).

    Linear warm-up from 0 over ``warmup_epochs``, then ``constant``, ``step`` (× ``step_gamma``
    every ``step_size`` epochs) or ``cosine`` (half a cosine from ``lr`` to 0 over the epochs
    after warm-up).
    """
    warmup = spec.warmup_epochs * steps_per_epoch
    if step < warmup:
        return spec.lr * (step + 1) / warmup
    if spec.schedule == "constant":
        return spec.lr
    if spec.schedule == "step":
        return spec.lr * spec.step_gamma ** (step // (spec.step_size * steps_per_epoch))
    total = spec.epochs * steps_per_epoch - warmup
    progress = min(1.0, (step - warmup) / max(total, 1.0))
    return spec.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def is_constant(spec: TrainSpec) -> bool:
    return spec.schedule == "constant" and spec.warmup_epochs == 0
