"""Sparse networks: a fixed 0/1 mask on a layer's weight, kept through any training loop.

``attach_mask(module, mask)`` zeroes the pruned entries of ``module.weight`` and keeps them
zero from then on, by three means that survive ``copy.deepcopy`` (so the ``trial`` probe's copy
stays sparse) and need no change to the training loop:

- the mask is a buffer, ``weight_mask`` (saved in the ``state_dict``, moved with the model);
- a hook run once ∂L/∂W is accumulated into ``.grad`` multiplies it by the mask in place, so no
  optimiser of the SGD/Adam family (with or without weight decay) moves a pruned entry, and
  gradient clipping and the gradient probes see only the kept weights (``torch.autograd.grad``
  calls, which accumulate nothing, get the unmasked gradient);
- a forward pre-hook re-applies W ← M ⊙ W before a forward pass whenever the weight changed in
  place since the last masking (``Tensor._version``), which catches any other optimiser. It
  never touches a tensor ``torch.func`` substituted for the parameter, so functional probes
  (NTK, Hessian) evaluate the masked function without an in-place write.

The masked net is the one every probe sees: the ``signal``, ``gradients`` and ``correlation``
probes hook the same layers as for a dense net, whose weights now hold exact zeros.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from depthlab.probes.layers import weight_layers

MASK = "weight_mask"


def _mask_grad(module: nn.Module, w: torch.Tensor) -> None:
    """Post-accumulate-grad hook: ∂L/∂W ← M ⊙ ∂L/∂W, in place."""
    if w.grad is not None:
        w.grad.mul_(mask_of(module))


def _reapply(module: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward pre-hook: W ← M ⊙ W when W changed in place since it was last masked."""
    w = module._parameters.get("weight")
    mask = module._buffers.get(MASK)
    if not isinstance(w, nn.Parameter) or mask is None:
        return  # a functional call swapped in another tensor: leave it alone
    if id(w) != getattr(module, "_mask_param", None):
        # A new parameter object (a deep copy): mask its gradient too, in place once it is
        # accumulated into .grad (cheaper than a hook that returns a new gradient).
        w.register_post_accumulate_grad_hook(partial(_mask_grad, module))
        setattr(module, "_mask_param", id(w))  # noqa: B010 - plain attributes on a Module
        setattr(module, "_mask_version", -1)  # noqa: B010
    if w._version != getattr(module, "_mask_version", -1):
        with torch.no_grad():
            w.mul_(mask)
        setattr(module, "_mask_version", w._version)  # noqa: B010


def attach_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Prune ``module.weight`` where ``mask`` is 0, now and through training (module doc).

    A second call replaces the mask (iterative pruning); the hooks are registered once.
    """
    w = module._parameters.get("weight")
    if not isinstance(w, nn.Parameter) or w.shape != mask.shape:
        shape = None if w is None else tuple(w.shape)
        raise ValueError(f"mask of shape {tuple(mask.shape)} for a weight of shape {shape}")
    mask = mask.to(device=w.device, dtype=w.dtype)
    if MASK in module._buffers:
        module._buffers[MASK] = mask
    else:
        module.register_buffer(MASK, mask)
        module.register_forward_pre_hook(_reapply)
    setattr(module, "_mask_version", -1)  # noqa: B010
    _reapply(module, ())


def mask_of(module: nn.Module) -> torch.Tensor:
    """The layer's mask buffer (a ``KeyError`` for a layer without one)."""
    mask = module._buffers[MASK]
    assert mask is not None
    return mask


def masked_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every layer carrying a mask, in module order."""
    return [(n, m) for n, m in weight_layers(model) if MASK in m._buffers]


@torch.no_grad()
def enforce_masks(model: nn.Module) -> None:
    """W ← M ⊙ W on every masked layer, now (the hooks do it lazily before a forward)."""
    for _, m in masked_layers(model):
        _reapply(m, ())


def rescale_factors(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-output-unit factors s_j that give the pruned layer the dense layer's variance map.

    In ``formulas.md``'s terms (Hayou et al. 2021's rescaling, *Pruned networks at
    initialization*): for output unit j with incoming weights W_j· and mask M_j·,

        s_j = sqrt( Σ_i W_ji² / Σ_i (M_ji W_ji)² ),

    so that Σ_i (s_j M_ji W_ji)² = Σ_i W_ji². The length map q^l = σ_w² E φ(h^{l−1})² + σ_b²
    depends on the weights only through σ_w² = fan_in · E W², i.e. through these per-unit sums,
    so the rescaled net keeps the dense net's q*, χ₁ and edge of chaos. A unit with every
    incoming weight pruned has nothing to rescale (s_j = 1). ``weight`` is ``(out, in, ...)``
    (trailing kernel dimensions count as inputs); the result has shape ``(out, 1, ...)``.
    """
    dims = tuple(range(1, weight.dim()))
    dense = weight.double().pow(2).sum(dims, keepdim=True)
    kept = (weight.double() * mask.double()).pow(2).sum(dims, keepdim=True)
    scale = torch.where(kept > 0, (dense / kept.clamp_min(1e-300)).sqrt(), torch.ones_like(kept))
    return scale.to(weight.dtype)


@torch.no_grad()
def sparsity_summary(model: nn.Module, x: torch.Tensor | None = None) -> dict[str, Any] | None:
    """Per masked layer: kept fraction; the layers with every weight pruned; and, given inputs
    ``x``, whether the output still depends on the input at all (``input_reaches_output``: some
    output varies over the batch). ``None`` for a model without masks.

    A fully pruned layer on the only path from input to output disconnects the net (its output
    is a function of the biases alone); inside a residual branch it only removes the branch, and
    the output still varies with the input.
    """
    layers = masked_layers(model)
    if not layers:
        return None
    rows = []
    kept_total = total = 0
    for name, m in layers:
        mask = mask_of(m)
        kept = int(mask.count_nonzero())
        rows.append({"name": name, "kept_fraction": kept / mask.numel(), "kept": kept})
        kept_total += kept
        total += mask.numel()
    out: dict[str, Any] = {
        "layers": rows,
        "sparsity": 1.0 - kept_total / total if total else 0.0,
        "empty_layers": [r["name"] for r in rows if r["kept"] == 0],
        "input_reaches_output": None,
    }
    if x is not None and len(x) >= 2:
        was = [(mod, mod.training) for mod in model.modules()]
        model.eval()
        try:
            y = model(x[: min(len(x), 64)])
        finally:
            for mod, training in was:
                mod.training = training
        spread = (y.double().max(0).values - y.double().min(0).values).abs().max()
        scale = 1.0 + y.double().abs().max()
        out["input_reaches_output"] = bool(float(spread) > 1e-9 * float(scale))
    return out


def kept_fraction(model: nn.Module) -> float:
    """Kept weights over all weights of the masked layers (1.0 without masks)."""
    layers = masked_layers(model)
    total = sum(mask_of(m).numel() for _, m in layers)
    if not total:
        return 1.0
    return sum(int(mask_of(m).count_nonzero()) for _, m in layers) / total
