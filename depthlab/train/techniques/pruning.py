"""Pruning at initialisation: ``prune_at_init`` (magnitude, SNIP, GraSP, random), any family.

A run spec::

    train:
      techniques:
        - {name: prune_at_init, method: snip, sparsity: 0.9, rescale: true, scope: global}

Before the first step, every layer (a module with a ≥ 2-D ``weight``: ``depthlab.probes.layers``,
the readout included) gets a 0/1 mask keeping the ``1 − sparsity`` highest-scoring weights
(``masks.attach_mask``: kept through training, the trial's copy included). Scores:

- ``magnitude``: |W_ij| (Han et al. 2015; at initialisation, Frankle et al. 2021's baseline);
- ``snip``: |W_ij · ∂L/∂W_ij| on the first ``batch_size`` training samples (Lee et al. 2019);
- ``grasp``: W_ij · (H g)_ij, H the loss Hessian and g the gradient on that batch; the weights
  whose removal reduces the gradient norm most, −W ⊙ Hg largest, go first (Wang et al. 2020);
- ``random``: a uniformly random subset, the same fraction in every layer.

``scope: global`` ranks all layers' scores together (as the papers do; it can remove a whole
layer, Hayou et al. 2021: the *disconnected* finding of the verdict), ``layer`` keeps the same
fraction in each layer. ``rescale: true`` then multiplies each output unit's kept weights by
``masks.rescale_factors`` (Hayou et al. 2021's rescaling, stated there in ``formulas.md`` terms)
so the sparse net keeps the dense net's variance map and edge of chaos.

``depthlab diagnose --spec`` applies the same pruning to the network it diagnoses
(``apply_at_init``), so the probes and the verdict see the sparse net the run will train.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable

import torch
from torch import nn

from depthlab.exceptions import SpecError
from depthlab.probes.layers import weight_layers
from depthlab.spec import Spec, TrainSpec
from depthlab.spec.base import check_choice, check_min, check_range
from depthlab.train.callbacks import Technique, TrainState, register_technique
from depthlab.train.techniques.masks import attach_mask, mask_of, masked_layers, rescale_factors

METHODS = ("magnitude", "snip", "grasp", "random")
SCOPES = ("global", "layer")
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class PruneParams(Spec):
    """``method``: how weights are scored; ``sparsity``: the fraction removed (0 ≤ s < 1);
    ``rescale``: Hayou et al.'s variance-preserving rescaling; ``scope``: one ranking over all
    layers (``global``) or per layer; ``batch_size``: samples SNIP and GraSP score on;
    ``seed``: the random method's seed (``null``: the run's seed)."""

    method: str = "magnitude"
    sparsity: float = 0.9
    rescale: bool = False
    scope: str = "global"
    batch_size: int = 256
    seed: int | None = None

    def _check(self) -> None:
        check_choice("method", self.method, METHODS)
        check_range("sparsity", self.sparsity, 0.0, 1.0, hi_open=True)
        check_choice("scope", self.scope, SCOPES)
        check_min("batch_size", self.batch_size, 1)


def weight_of(module: nn.Module) -> torch.Tensor:
    """A layer's ``weight`` (``depthlab.probes.layers.is_layer`` guarantees a tensor)."""
    return typing.cast(torch.Tensor, module.weight)


def _batch_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss, mask: torch.Tensor | None
) -> torch.Tensor:
    out = model(x)
    if mask is not None:
        out, y = out[mask], y[mask]
    return loss(out, y)


def scores(
    model: nn.Module,
    method: str,
    *,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    loss: Loss | None = None,
    node_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """``(name, layer, score)`` for every layer; higher scores are kept (see the module doc)."""
    layers = weight_layers(model)
    if not layers:
        raise SpecError(
            "techniques", "prune_at_init found no layer (a module with a >= 2-D weight)"
        )
    weights = [weight_of(m) for _, m in layers]
    if method == "magnitude":
        found = [w.detach().abs() for w in weights]
    elif method == "random":
        gen = generator or torch.Generator().manual_seed(0)
        found = [torch.rand(w.shape, generator=gen, device="cpu").to(w.device) for w in weights]
    else:
        if x is None or y is None or loss is None:
            raise SpecError("method", f"{method!r} scores need a batch of training data")
        was = model.training
        model.train()
        try:
            value = _batch_loss(model, x, y, loss, node_mask)
            grads = torch.autograd.grad(value, weights, create_graph=method == "grasp")
            if method == "snip":
                pairs = zip(weights, grads, strict=True)
                found = [(w.detach() * g.detach()).abs() for w, g in pairs]
            else:  # grasp: Hg = ∂/∂W (g · stop_grad(g)); keep the largest W ⊙ Hg
                dot = torch.stack([(g * g.detach()).sum() for g in grads]).sum()
                hg = torch.autograd.grad(dot, weights)
                found = [(w.detach() * h.detach()) for w, h in zip(weights, hg, strict=True)]
        finally:
            model.train(was)
            model.zero_grad(set_to_none=True)
    return [(n, m, s) for (n, m), s in zip(layers, found, strict=True)]


def masks_from_scores(
    scored: list[tuple[str, nn.Module, torch.Tensor]], sparsity: float, scope: str
) -> list[torch.Tensor]:
    """Keep the top ``1 − sparsity`` of the scores, over all layers or per layer. Ties at the
    threshold are broken by position (exactly the stated number is kept)."""
    if scope == "layer":
        return [_top(s, round((1 - sparsity) * s.numel())) for _, _, s in scored]
    flat = torch.cat([s.reshape(-1).double() for _, _, s in scored])
    keep = _top(flat, round((1 - sparsity) * flat.numel()))
    out, start = [], 0
    for _, _, s in scored:
        out.append(keep[start : start + s.numel()].reshape(s.shape).to(s.dtype))
        start += s.numel()
    return out


def _top(score: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.zeros(score.numel(), dtype=score.dtype, device=score.device)
    if k > 0:
        mask[torch.topk(score.reshape(-1), k).indices] = 1
    return mask.reshape(score.shape)


@torch.no_grad()
def apply_masks(
    layers: list[tuple[str, nn.Module]], masks: list[torch.Tensor], *, rescale: bool
) -> None:
    """Attach each mask to its layer; with ``rescale`` first scale the kept weights per unit."""
    for (_, m), mask in zip(layers, masks, strict=True):
        if rescale:
            w = weight_of(m)
            w.mul_(rescale_factors(w, mask))
        attach_mask(m, mask)


def prune(
    model: nn.Module,
    params: PruneParams,
    *,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    loss: Loss | None = None,
    node_mask: torch.Tensor | None = None,
    seed: int = 0,
) -> None:
    """Prune ``model`` in place as ``params`` says (module doc); ``x, y`` are training samples
    (SNIP and GraSP score on the first ``batch_size``), ``loss`` the training loss."""
    gen = torch.Generator().manual_seed(seed if params.seed is None else params.seed)
    if x is not None and y is not None and node_mask is None:
        x, y = x[: params.batch_size], y[: params.batch_size]
    scored = scores(model, params.method, x=x, y=y, loss=loss, node_mask=node_mask, generator=gen)
    scope = "layer" if params.method == "random" else params.scope
    masks = masks_from_scores(scored, params.sparsity, scope)
    apply_masks([(n, m) for n, m, _ in scored], masks, rescale=params.rescale)


@register_technique("prune_at_init")
class PruneAtInit(Technique):
    """Prune at initialisation: magnitude, SNIP, GraSP or random, optionally rescaled."""

    Params = PruneParams
    params: PruneParams

    def on_train_start(self, state: TrainState) -> None:
        if masked_layers(state.model):
            return  # already pruned (the diagnosis pruned this very network): keep its masks
        from depthlab.train.loop import loss_fn, loss_name

        data = state.data
        loss = loss_fn(loss_name(state.spec, data), data.n_classes)
        prune(
            state.model,
            self.params,
            x=data.x_train,
            y=data.y_train,
            loss=loss,
            node_mask=data.mask("train"),
            seed=state.spec.seed,
        )


def apply_at_init(
    model: nn.Module, train: TrainSpec, x: torch.Tensor, y: torch.Tensor, loss: Loss
) -> bool:
    """Apply the init-time techniques ``train`` lists (``prune_at_init``) to a freshly built
    ``model``, on training samples ``(x, y)``, as ``fit`` would; whether any applied."""
    done = False
    for entry in train.techniques:
        if entry.get("name") != "prune_at_init" or masked_layers(model):
            continue
        params = PruneParams.from_dict({k: v for k, v in entry.items() if k != "name"})
        prune(model, params, x=x, y=y, loss=loss, seed=train.seed)
        done = True
    return done


def layer_sparsities(model: nn.Module) -> dict[str, float]:
    """Pruned fraction of each masked layer's weights, by layer name."""
    return {
        n: 1.0 - float(mask_of(m).count_nonzero()) / mask_of(m).numel()
        for n, m in masked_layers(model)
    }
