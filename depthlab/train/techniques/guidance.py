"""Guidance (Subramaniam et al. 2024, "Training the Untrainable: Introducing Inductive Bias via
Representational Alignment").

A frozen *guide* network sees every training batch alongside the *target* being trained, and
the target's objective gains

    L = L_task + w · Σ_(t, g) [1 − CKA(T_t(x), G_g(x))]

summed over mapped layer pairs (t, g): T_t(x) is target layer t's representation of the
minibatch x (n × features, taken from the same forward pass as the task loss, so gradients
flow through it), G_g(x) the guide's, computed without gradients, and CKA linear centred kernel
alignment (Kornblith et al. 2019; :func:`depthlab.theory.similarity.cka_distance`). The guide
never changes: its parameters are frozen and it runs in eval mode (or train mode, with its
buffers restored after every pass). An untrained guide carries only its architecture's prior
to the target; a trained one carries its knowledge as well.

A run spec::

    train:
      techniques:
        - name: guidance
          guide: {family: cnn1d, depth: 3, width: 25, kernel: [5, 3, 3], stride: 2}
          guide_train: null        # untrained; or TrainSpec fields, fitted at train start
          weight: 1.0
          layers: auto             # or all, or [[target_layer, guide_layer], ...]

``layers`` names modules by their ``named_modules`` names. ``auto`` takes each network's hidden
representations — the outputs of its elementwise activation modules (its weight layers but the
last when it has none) — and pairs every layer of the shallower network with the layer at the
same relative depth in the deeper one (so both last hidden layers are paired); ``all`` gives
every target hidden layer the guide layer at its relative depth.

The target's forward hooks live from ``on_train_start`` to ``on_train_end`` (however the run
ends); they record only forwards with autograd on.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from depthlab.exceptions import SpecError
from depthlab.models import build_model
from depthlab.probes.layers import activation_modules, capture, weight_layers
from depthlab.spec import ArchSpec, Spec, TrainSpec
from depthlab.spec.base import check_choice, check_min
from depthlab.theory.similarity import cka_distance
from depthlab.train.callbacks import Technique, TrainState, register_technique
from depthlab.train.loop import fit

LAYER_MAPPINGS = ("auto", "all")
GUIDE_MODES = ("eval", "train")


@dataclasses.dataclass(frozen=True)
class GuidanceParams(Spec):
    """``guide``: the guide's architecture (required). ``guide_train``: how to fit it on the
    run's training data before the target trains (``null``: an untrained guide).
    ``guide_path``: a ``state_dict`` file to load into the guide instead. ``guide_seed``: the
    guide's init seed (``null``: the run's seed). ``weight``: w above. ``layers``: ``auto``,
    ``all`` or explicit ``[target_layer, guide_layer]`` pairs. ``guide_mode``: the mode the
    guide runs in."""

    guide: ArchSpec | None = None
    guide_train: TrainSpec | None = None
    guide_path: str = ""
    guide_seed: int | None = None
    weight: float = 1.0
    layers: str | tuple[tuple[str, ...], ...] = "auto"
    guide_mode: str = "eval"

    def _check(self) -> None:
        if self.guide is None:
            raise SpecError(
                "guide", "is required: the guide's architecture, e.g. {family: cnn1d, depth: 3}"
            )
        if self.guide_train is not None and self.guide_path:
            raise SpecError(
                "guide_path",
                f"{self.guide_path!r} given together with guide_train; "
                "a guide is either trained here or loaded, not both",
            )
        check_min("weight", self.weight, 0)
        check_choice("guide_mode", self.guide_mode, GUIDE_MODES)
        if isinstance(self.layers, str):
            check_choice("layers", self.layers, LAYER_MAPPINGS)
            return
        if not self.layers:
            raise SpecError("layers", "is an empty list; give [target_layer, guide_layer] pairs")
        for i, pair in enumerate(self.layers):
            if len(pair) != 2:
                raise SpecError(
                    f"layers[{i}]",
                    f"{list(pair)!r} is not valid; expected [target_layer, guide_layer]",
                )


def hidden_layers(model: nn.Module) -> list[str]:
    """Names of a network's hidden representations, input to output (see the module doc)."""
    acts = [name for name, _ in activation_modules(model)]
    return acts if acts else [name for name, _ in weight_layers(model)[:-1]]


def map_layers(target: list[str], guide: list[str], mapping: str) -> list[tuple[str, str]]:
    """Pair target and guide layers evenly by relative depth (``auto`` or ``all``)."""
    if not target or not guide:
        raise SpecError(
            "layers",
            f"auto mapping found {len(target)} target and {len(guide)} guide hidden layers; "
            "both need at least one, or give explicit [target_layer, guide_layer] pairs",
        )
    m, k = len(target), len(guide)

    def at(i: int, n_from: int, n_to: int) -> int:
        # Layer i (0-based) of n_from sits at relative depth (i+1)/n_from; same depth in n_to.
        return max(0, math.ceil((i + 1) * n_to / n_from) - 1)

    if mapping == "all" or m <= k:
        return [(target[i], guide[at(i, m, k)]) for i in range(m)]
    return [(target[at(j, k, m)], guide[j]) for j in range(k)]


def guidance_distance(
    target_reps: list[torch.Tensor], guide_reps: list[torch.Tensor]
) -> torch.Tensor:
    """Σ over pairs of 1 − linear CKA between matching representations (n × ... each)."""
    total = torch.zeros((), device=target_reps[0].device if target_reps else None)
    for t, g in zip(target_reps, guide_reps, strict=True):
        total = total + cka_distance(t, g.detach())
    return total


@register_technique("guidance")
class Guidance(Technique):
    """Representational guidance by a frozen guide network (Subramaniam et al. 2024)."""

    Params = GuidanceParams
    params: GuidanceParams

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.guide: nn.Module | None = None
        self.pairs: list[tuple[str, str]] = []
        self._acts: dict[str, torch.Tensor] = {}
        self._handles: list[RemovableHandle] = []
        self._guide_modules: list[tuple[str, nn.Module]] = []
        self._guide_buffers: list[torch.Tensor] = []

    # -- set-up -----------------------------------------------------------------------------
    def build_guide(self, state: TrainState) -> nn.Module:
        """The guide, built (and trained or loaded) for the run's data; frozen."""
        p = self.params
        assert p.guide is not None  # checked by GuidanceParams
        data = state.data
        seed = state.spec.seed if p.guide_seed is None else p.guide_seed
        guide = build_model(p.guide, in_shape=data.in_shape, out_dim=data.out_dim, seed=seed)
        if p.guide_path:
            path = Path(p.guide_path)
            if not path.is_file():
                raise SpecError("guide_path", f"{p.guide_path!r} is not a file")
            try:
                guide.load_state_dict(torch.load(path, weights_only=True))
            except (RuntimeError, OSError) as exc:
                first = str(exc).strip().splitlines()[0]
                raise SpecError("guide_path", f"cannot load {p.guide_path!r}: {first}") from None
        elif p.guide_train is not None:
            fit(guide, data, p.guide_train, progress=False)
        guide.requires_grad_(False)
        guide.train(p.guide_mode == "train")
        return guide

    def on_train_start(self, state: TrainState) -> None:
        self.remove_hooks()
        self.guide = self.build_guide(state)
        target = state.model
        if isinstance(self.params.layers, str):
            self.pairs = map_layers(
                hidden_layers(target), hidden_layers(self.guide), self.params.layers
            )
        else:
            self.pairs = [(t, g) for t, g in self.params.layers]
        t_modules = dict(target.named_modules())
        g_modules = dict(self.guide.named_modules())
        for i, (t, g) in enumerate(self.pairs):
            for side, name, modules in (("target", t, t_modules), ("guide", g, g_modules)):
                if name not in modules:
                    choices = ", ".join(n for n in modules if n) or "(none)"
                    raise SpecError(
                        f"layers[{i}]", f"no {side} layer {name!r}; {side} layers: {choices}"
                    )
        for t in dict.fromkeys(t for t, _ in self.pairs):
            self._handles.append(t_modules[t].register_forward_hook(self._recorder(t)))
        self._guide_modules = [(g, g_modules[g]) for g in dict.fromkeys(g for _, g in self.pairs)]
        self._guide_buffers = [b.detach().clone() for b in self.guide.buffers()]

    def _recorder(self, name: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            # Only training forwards (with a graph) matter; evaluation runs under no_grad.
            if torch.is_grad_enabled():
                self._acts[name] = out

        return hook

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._acts.clear()

    # -- the loss term ----------------------------------------------------------------------
    def guide_representations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The guide's representations of ``x`` at its mapped layers, without gradients."""
        assert self.guide is not None
        with torch.no_grad(), capture(self._guide_modules) as reps:
            self.guide(x)
            if self.params.guide_mode == "train":
                # Train mode updates running statistics; put them back so the guide is unchanged.
                for b, saved in zip(self.guide.buffers(), self._guide_buffers, strict=True):
                    b.copy_(saved)
            return dict(reps)

    def loss_term(
        self, state: TrainState, x: torch.Tensor, y: torch.Tensor, output: torch.Tensor
    ) -> torch.Tensor | None:
        acts, self._acts = self._acts, {}
        if self.params.weight == 0 or len(x) < 2:
            return None  # CKA needs two examples; a lone last example goes unguided.
        missing = [t for t, _ in self.pairs if t not in acts]
        if missing:
            raise SpecError("layers", f"target layer {missing[0]!r} did not run in the forward")
        guide = self.guide_representations(x)
        distance = guidance_distance(
            [acts[t] for t, _ in self.pairs], [guide[g] for _, g in self.pairs]
        )
        return self.params.weight * distance

    def on_train_end(self, state: TrainState) -> None:
        self.remove_hooks()  # leave the trained model as it was handed over
