"""Per-layer statistics over a real training run, every few optimizer steps.

A *layer* is a module holding a ``weight`` of at least two dimensions
(``depthlab.probes.layers.is_layer``). On a statistics step ``t`` each layer gets one row:

- ``signal``: the second moment E[h²] of its output h (the pre-activation of mean-field
  theory), averaged over every element of the step's first training forward pass;
- ``gradient``: the second moment E[(∂L/∂h)²] of the loss gradient at that output, from the
  same pass's backward (``None`` where no gradient flows to it);
- ``grad_ratio``: ‖∇W‖ / ‖W‖ of its weight (Frobenius norms), the gradient the optimizer
  applied at step ``t``;
- ``update_ratio``: ‖W_t − W_{t−1}‖ / ‖W_{t−1}‖, the relative change step ``t`` made — the
  quantity whose healthy scale is about 1e-3 for Adam-family training (Karpathy's rule of thumb;
  fastai's ``ActivationStats`` tracks the activations' side).

The hooks exist only between ``arm`` (after step ``t − 1``) and ``collect`` (after step ``t``),
record only a pass in training mode with gradients enabled (not an evaluation in between), and
never change an output or a gradient. The weights of step ``t − 1`` are copied at ``arm``: one
copy of the layers' weights for one step. All numbers of a row come to the host in one transfer.

History is bounded: at most ``max_rows`` rows are kept; past that every other row is dropped
and the step stride doubles, so the kept rows still span the whole run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from depthlab.probes.layers import weight_layers

#: Statistics steps kept at most (per layer); older rows are thinned, never the whole history.
MAX_ROWS = 256
FIELDS = ("signal", "gradient", "grad_ratio", "update_ratio")


class LayerStats:
    """Hooks on ``model``'s layers for one step at a time (see the module doc)."""

    def __init__(self, model: nn.Module, *, max_rows: int = MAX_ROWS) -> None:
        self.layers = weight_layers(model)
        self.max_rows = max_rows
        self.steps: list[int] = []
        self.rows: dict[str, list[list[float | None]]] = {n: [] for n, _ in self.layers}
        self.stride = 1
        self._kept = 0
        self._handles: list[Any] = []
        self._signal: dict[str, torch.Tensor] = {}
        self._gradient: dict[str, torch.Tensor] = {}
        self._before: dict[str, torch.Tensor] = {}

    @property
    def armed(self) -> bool:
        return bool(self._handles)

    def arm(self) -> None:
        """Hook the layers for the next step's forward and backward; copy their weights."""
        self.disarm()
        self._signal, self._gradient = {}, {}
        with torch.no_grad():
            self._before = {n: _weight(m).detach().clone() for n, m in self.layers}
        for name, module in self.layers:
            self._handles.append(module.register_forward_hook(self._forward_hook(name)))

    def disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _forward_hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if name in self._signal or not module.training or not torch.is_grad_enabled():
                return
            if not isinstance(out, torch.Tensor) or not out.is_floating_point():
                return
            with torch.no_grad():
                h = out.detach()
                self._signal[name] = torch.linalg.vector_norm(
                    h, dtype=torch.float32
                ).square() / max(h.numel(), 1)
            if out.requires_grad:

                def on_grad(g: torch.Tensor) -> None:
                    if name not in self._gradient:
                        with torch.no_grad():
                            norm = torch.linalg.vector_norm(g.detach(), dtype=torch.float32)
                            self._gradient[name] = norm.square() / max(g.numel(), 1)

                out.register_hook(on_grad)  # returns None: the gradient passes unchanged

        return hook

    def collect(self, step: int) -> dict[str, dict[str, float | None]]:
        """Remove the hooks and record step ``step``'s row per layer; the rows recorded."""
        self.disarm()
        values: list[torch.Tensor] = []
        slots: list[tuple[str, str]] = []
        with torch.no_grad():
            for name, module in self.layers:
                weight = _weight(module)
                w = weight.detach()
                wn = torch.linalg.vector_norm(w, dtype=torch.float32)
                if name in self._signal:
                    values.append(self._signal[name].to(w.device))
                    slots.append((name, "signal"))
                if name in self._gradient:
                    values.append(self._gradient[name].to(w.device))
                    slots.append((name, "gradient"))
                grad = weight.grad
                if grad is not None:
                    values.append(torch.linalg.vector_norm(grad.detach(), dtype=torch.float32) / wn)
                    slots.append((name, "grad_ratio"))
                before = self._before.get(name)
                if before is not None and before.shape == w.shape:
                    b = before.to(w.device)
                    delta = torch.linalg.vector_norm(w - b, dtype=torch.float32)
                    values.append(delta / torch.linalg.vector_norm(b, dtype=torch.float32))
                    slots.append((name, "update_ratio"))
            numbers = _to_host(values)
        self._before, self._signal, self._gradient = {}, {}, {}
        out: dict[str, dict[str, float | None]] = {n: dict.fromkeys(FIELDS) for n, _ in self.layers}
        for (name, field), value in zip(slots, numbers, strict=True):
            out[name][field] = value
        self._keep(step, out)
        return out

    def _keep(self, step: int, out: dict[str, dict[str, float | None]]) -> None:
        self._kept += 1
        if (self._kept - 1) % self.stride:
            return
        self.steps.append(step)
        for name, row in out.items():
            self.rows[name].append([row[f] for f in FIELDS])
        if len(self.steps) > self.max_rows:
            self.steps = self.steps[::2]
            self.rows = {n: r[::2] for n, r in self.rows.items()}
            self.stride *= 2

    def last(self) -> dict[str, dict[str, float | None]]:
        """The latest kept row of every layer."""
        if not self.steps:
            return {}
        return {n: dict(zip(FIELDS, r[-1], strict=True)) for n, r in self.rows.items() if r}

    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": list(FIELDS),
            "steps": list(self.steps),
            "stride": self.stride,
            "layers": {n: [list(r) for r in rows] for n, rows in self.rows.items()},
        }


def _weight(module: nn.Module) -> torch.Tensor:
    """A layer's own ``weight`` parameter (``is_layer`` guarantees one)."""
    w = module._parameters["weight"]
    assert w is not None
    return w


def _to_host(values: list[torch.Tensor]) -> list[float]:
    """The scalars as floats in one device-to-host transfer per device."""
    if not values:
        return []
    devices = {v.device for v in values}
    if len(devices) == 1:
        return [float(x) for x in torch.stack([v.reshape(()) for v in values]).tolist()]
    return [float(v) for v in values]
