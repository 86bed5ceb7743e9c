"""Gradient flow: per-layer gradient norms of the mean loss, at the current weights and,
optionally, over the first training steps.

For each layer (any module with a ≥ 2-D weight, ``depthlab.probes.layers``): ‖∂L/∂W‖_F,
‖W‖_F and their ratio (how far one SGD step at unit learning rate would move the layer, relative
to its size). Mean field predicts
E‖∂L/∂h^l‖² ∝ χ₁^{L−l}: gradients vanish towards the input for χ₁ < 1 and explode for χ₁ > 1.
``first_to_last`` is the first layer's weight-gradient norm over the last layer's;
``delta_first_to_last`` the same for the pre-activation gradients ‖∂L/∂h^l‖, the quantity whose
decay χ₁^{L−1} mean field predicts (weight gradients δ^l a^{l−1}ᵀ can stay balanced across layers
while both factors shrink, so both are reported).

Both compare layers of one *role* (``role_group``: the same job at every depth, e.g. each
block's MLP output; named by ``role``), the first call against the last, not the first and last
layer in module order: the first ``Linear`` of a transformer is an attention query, whose
gradient is tiny at initialisation whatever the depth. Measured in the probes' mode policy
(batch statistics on, dropout off unless asked).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from typing import Any

import torch
from torch import nn

from depthlab._device import wide_dtype, widen
from depthlab.exceptions import ProbeError, SpecError
from depthlab.probes.base import Probe, ProbeBatch, register_probe
from depthlab.probes.layers import role_group, weight_layers
from depthlab.spec import Spec
from depthlab.spec.base import check_min


@dataclasses.dataclass(frozen=True)
class GradientsParams(Spec):
    batch_size: int = 256
    train_steps: int = 0
    lr: float = 1e-3

    def _check(self) -> None:
        check_min("batch_size", self.batch_size, 1)
        check_min("train_steps", self.train_steps, 0)
        if self.lr <= 0:
            raise SpecError("lr", f"{self.lr!r} is not valid; expected > 0")


def layer_gradients(model: nn.Module, batch: ProbeBatch) -> list[dict[str, Any]]:
    """One backward pass of the mean loss; per-layer weight gradient and weight norms."""
    layers = weight_layers(model)
    if not layers:
        raise ProbeError("gradients found no layer (a module with a >= 2-D weight) in the model")
    model.zero_grad(set_to_none=True)
    delta: dict[str, torch.Tensor] = {}  # read back with the other norms, in one transfer
    order: list[str] = []  # the layers in the order they ran (first call)
    handles = []
    for name, module in layers:
        # ∂L/∂h^l at the layer's output (the pre-activation gradient of mean-field theory).
        def hook(mod: nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> None:
            if name not in order:
                order.append(name)
            if isinstance(out, torch.Tensor) and out.requires_grad:
                out.register_hook(
                    lambda g, name=name: delta.__setitem__(
                        name, widen(g.detach()).pow(2).sum().sqrt()
                    )
                )

        handles.append(module.register_forward_hook(hook))
    try:
        loss = batch.loss_fn(model(batch.x), batch.y)
    finally:
        for h in handles:
            h.remove()
    if not torch.isfinite(loss):
        raise ProbeError(f"the loss is {loss.item()} at these weights; gradients are undefined")
    loss.backward()
    rows = []
    modules = dict(layers)
    ran = order + [name for name, _ in layers if name not in order]
    norms = []
    for name in ran:
        w = typing.cast(torch.Tensor, modules[name].weight)
        g = torch.zeros_like(w) if w.grad is None else w.grad
        zero = torch.zeros((), dtype=wide_dtype(w.device), device=w.device)
        norms.append(
            torch.stack([widen(g).norm(), widen(w.detach()).norm(), delta.get(name, zero)])
        )
    values = torch.stack(norms).tolist() if norms else []
    for name, (g_norm, w_norm, d_norm) in zip(ran, values, strict=True):
        rows.append(
            {
                "name": name,
                "grad_norm": g_norm,
                "weight_norm": w_norm,
                "ratio": g_norm / w_norm if w_norm > 0 else math.inf,
                "delta_norm": d_norm,
                "called": name in order,
            }
        )
    return rows


@register_probe("gradients")
class GradientsProbe(Probe):
    """Per-layer gradient norms and gradient-to-weight ratios."""

    Params = GradientsParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        batch = batch.head(self.params.batch_size)
        self.set_mode(model)
        layers = layer_gradients(model, batch)
        called = [r for r in layers if r["called"]] or layers
        group, i, j = role_group([r["name"] for r in called])
        first, last = called[i]["grad_norm"], called[j]["grad_norm"]
        d_first, d_last = called[i]["delta_norm"], called[j]["delta_norm"]
        with torch.no_grad():
            loss = float(batch.loss_fn(model(batch.x), batch.y))
        out: dict[str, Any] = {
            "layers": layers,
            "first_to_last": first / last if last > 0 else math.inf,
            "delta_first_to_last": d_first / d_last if d_last > 0 else math.inf,
            "max_ratio": max(r["ratio"] for r in layers),
            "role": group,
            "role_layers": [called[i]["name"], called[j]["name"]],
            "loss": loss,
            "n_samples": len(batch.x),
        }
        if self.params.train_steps:
            out["steps"] = self._steps(model, batch)
        return out

    def _steps(self, model: nn.Module, batch: ProbeBatch) -> list[dict[str, Any]]:
        """Adam on a copy (never the user's model) for ``train_steps`` steps on the batch."""
        twin = copy.deepcopy(model)
        opt = torch.optim.Adam(twin.parameters(), lr=self.params.lr)
        history = []
        for step in range(self.params.train_steps):
            layers = layer_gradients(twin, batch)
            history.append({"step": step, "grad_norms": [r["grad_norm"] for r in layers]})
            opt.step()
        return history
