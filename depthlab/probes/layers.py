"""Finding a network's layers from the outside, with hooks: works on any ``nn.Module``.

A *layer* is a module holding a weight matrix or kernel (``nn.Linear``, ``nn.Conv1d``,
``nn.Conv2d``); its output is the pre-activation h^l of mean-field theory. An *activation* is
an elementwise nonlinearity module; its output is φ(h).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from depthlab.layers.activations import Lambda

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.SELU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Softplus,
    nn.Mish,
    nn.Hardtanh,
    nn.CELU,
    Lambda,
)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every linear/conv layer, in module order."""
    return [(n or "model", m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]


def activation_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n or "model", m) for n, m in model.named_modules() if isinstance(m, ELEMENTWISE)]


@contextlib.contextmanager
def capture(
    modules: list[tuple[str, nn.Module]], *, inputs: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record each module's output (or first input) of the last forward pass, by name."""
    store: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in modules:

        def hook(mod: nn.Module, args: tuple, out: torch.Tensor, name: str = name) -> None:
            store[name] = args[0] if inputs else out

        handles.append(module.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def per_sample(t: torch.Tensor) -> torch.Tensor:
    """``(N, ...)`` → ``(N, features)``: channels × positions flattened together."""
    return t.reshape(len(t), -1)
