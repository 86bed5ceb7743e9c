"""The callback interface through which techniques act on training, and their registry.

A technique is a ``Callback`` subclass with a nested ``Params`` spec (its hyperparameters,
validated like every spec), registered with ``@register_technique(name)``. A run spec lists
techniques as ``{name: ..., <param>: ...}`` mappings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from depthlab import _registry as reg
from depthlab.data import Dataset
from depthlab.spec import Spec, TrainSpec


@dataclasses.dataclass
class TrainState:
    """The mutable state of a run that callbacks see. ``step`` counts optimiser steps done."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: Dataset
    spec: TrainSpec
    generator: torch.Generator
    step: int = 0
    epoch: int = 0
    loss: float = float("nan")
    #: Set by a callback (in ``on_step_end``) to end the run early: the run ends STOPPED with
    #: this reason.
    stop_reason: str = ""


class Callback:
    """Hooks into the training loop; every hook is optional."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first step."""

    def loss_term(
        self, state: TrainState, x: torch.Tensor, y: torch.Tensor, output: torch.Tensor
    ) -> torch.Tensor | None:
        """An extra term for this batch's training objective, or ``None`` (the default).

        Called after the forward pass on batch ``(x, y)``, whose output is ``output`` (still
        attached to the graph, so forward hooks have seen this very pass). The loop minimises
        the task loss plus every callback's term; the reported ``train_loss`` stays the task
        loss alone.
        """
        return None

    def on_after_backward(self, state: TrainState) -> None:
        """Gradients are in ``.grad``; clipping and the optimiser step come next."""

    def on_step_end(self, state: TrainState) -> None:
        """After the optimiser step; ``state.step`` already counts it."""

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        """After each epoch, with that epoch's history row."""

    def on_train_end(self, state: TrainState) -> None:
        """After the last step, however the run ended (complete, diverged or an exception)."""


class Technique(Callback):
    """A registered callback with validated hyperparameters in ``Params``."""

    Params: ClassVar[type[Spec]]

    def __init__(self, params: Any) -> None:
        self.params = params


def register_technique(name: str) -> Callable[[type[Technique]], type[Technique]]:
    """Register a ``Technique`` subclass under ``name`` for use in run specs."""
    return reg.TECHNIQUES.decorator(name)


def build_techniques(spec: TrainSpec) -> list[Technique]:
    """Instantiate the techniques a train spec lists, in order."""
    out = []
    for i, entry in enumerate(spec.techniques):
        cls: type[Technique] = reg.TECHNIQUES.get(entry["name"], field=f"techniques[{i}].name")
        out.append(cls(cls.Params.from_dict({k: v for k, v in entry.items() if k != "name"})))
    return out
