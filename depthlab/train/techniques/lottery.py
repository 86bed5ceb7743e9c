"""Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

A run spec::

    train:
      epochs: 40
      techniques:
        - {name: iterative_magnitude, sparsity: 0.875, rounds: 3, rewind_to: 50}

The run's ``epochs`` are split into ``rounds + 1`` equal segments (boundaries at epoch
⌊E·r/(R+1)⌉, ``round_boundaries``). Segment 0 trains the dense net; at the end of segment r the
smallest-magnitude surviving weights are pruned, so that a fraction 1 − (1 − s)^{r/R} of each
layer's (``scope: layer``) or of all layers' (``global``) weights is gone, the surviving weights
are *rewound* to their values after ``rewind_to`` optimiser steps of segment 0 (k = 0: the
original initialisation, the lottery-ticket experiment of 2019; an early k > 0: the 2020
stabilised one), the optimiser's state is reset, and training goes on. The last segment trains
the final subnetwork (sparsity s) from the rewound weights; the run's final metrics are its.
``reinit: true`` (the papers' control) draws fresh weights with the run's init for the
survivors instead of rewinding.

Every other parameter and buffer (biases, norm statistics) is rewound with the weights. The
learning-rate schedule runs over the whole run; a constant schedule gives every segment the
same one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from depthlab.exceptions import SpecError
from depthlab.spec import Spec
from depthlab.spec.base import check_choice, check_min, check_range
from depthlab.train.callbacks import Technique, TrainState, register_technique
from depthlab.train.techniques.masks import MASK, enforce_masks, mask_of
from depthlab.train.techniques.pruning import SCOPES, apply_masks, masks_from_scores, scores


@dataclasses.dataclass(frozen=True)
class IterativeParams(Spec):
    """``sparsity``: final pruned fraction; ``rounds``: prune–rewind rounds; ``rewind_to``:
    the optimiser step k of the dense segment the survivors go back to; ``scope``: global or
    per-layer ranking; ``reinit``: fresh random weights instead of rewinding (control)."""

    sparsity: float = 0.8
    rounds: int = 3
    rewind_to: int = 0
    scope: str = "global"
    reinit: bool = False

    def _check(self) -> None:
        check_range("sparsity", self.sparsity, 0.0, 1.0, hi_open=True)
        check_min("rounds", self.rounds, 1)
        check_min("rewind_to", self.rewind_to, 0)
        check_choice("scope", self.scope, SCOPES)


def round_boundaries(epochs: int, rounds: int) -> list[int]:
    """The epochs (1-based, counted as finished) after which rounds 1..R prune and rewind."""
    return [round(epochs * r / (rounds + 1)) for r in range(1, rounds + 1)]


def round_sparsity(sparsity: float, r: int, rounds: int) -> float:
    """The pruned fraction after round r of R: 1 − (1 − s)^{r/R} (the same rate every round)."""
    return 1.0 - (1.0 - sparsity) ** (r / rounds)


@register_technique("iterative_magnitude")
class IterativeMagnitude(Technique):
    """Iterative magnitude pruning with rewinding to step k (lottery tickets)."""

    Params = IterativeParams
    params: IterativeParams

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.initial: dict[str, torch.Tensor] = {}
        self.rewind: dict[str, torch.Tensor] | None = None
        self.boundaries: list[int] = []
        self.rounds: list[dict[str, Any]] = []

    def on_train_start(self, state: TrainState) -> None:
        p = self.params
        epochs = state.spec.epochs
        if epochs < p.rounds + 1:
            raise SpecError(
                "techniques",
                f"iterative_magnitude with {p.rounds} rounds needs epochs >= {p.rounds + 1} "
                f"(one dense segment and one per round); got {epochs}",
            )
        self.boundaries = round_boundaries(epochs, p.rounds)
        self.rounds = []
        self.initial = _snapshot(state.model)
        self.rewind = self.initial if p.rewind_to == 0 else None

    def on_step_end(self, state: TrainState) -> None:
        if self.rewind is None and state.step == self.params.rewind_to:
            self.rewind = _snapshot(state.model)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        if state.epoch + 1 not in self.boundaries:
            return
        r = self.boundaries.index(state.epoch + 1) + 1
        if self.rewind is None:
            raise SpecError(
                "techniques",
                f"rewind_to {self.params.rewind_to} is beyond the {state.step} steps of the "
                "dense segment; choose a smaller step or more epochs",
            )
        model = state.model
        target = round_sparsity(self.params.sparsity, r, self.params.rounds)
        scored = scores(model, "magnitude")
        # pruned weights score −1 so they stay pruned; survivors rank by |W|
        scored = [
            (n, m, torch.where(mask_of(m) > 0, s, -1.0) if MASK in m._buffers else s)
            for n, m, s in scored
        ]
        masks = masks_from_scores(scored, target, self.params.scope)
        self.rounds.append({"round": r, "sparsity": target, **metrics})
        with torch.no_grad():
            current = model.state_dict()
            for k, v in self.rewind.items():
                current[k].copy_(v)
            if self.params.reinit:
                _reinit(model, self.initial, state.spec.seed + 7919 * r)
        apply_masks([(n, m) for n, m, _ in scored], masks, rescale=False)
        enforce_masks(model)
        state.optimizer.state.clear()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer but the masks, cloned."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith(MASK)}


def _reinit(model: nn.Module, initial: dict[str, torch.Tensor], seed: int) -> None:
    """Every layer's weight drawn afresh from N(0, σ²), σ its initial weights' spread."""
    gen = torch.Generator().manual_seed(seed)
    for name, m in model.named_modules():
        w = m._parameters.get("weight")
        key = f"{name}.weight" if name else "weight"
        if isinstance(w, nn.Parameter) and w.dim() >= 2 and key in initial:
            std = float(initial[key].double().std())
            w.copy_(torch.randn(w.shape, generator=gen, dtype=w.dtype, device="cpu") * std)
