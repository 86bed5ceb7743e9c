"""Finding a network's layers from the outside, with hooks: works on any ``nn.Module``.

A *layer* is a module holding a weight matrix or kernel (``nn.Linear``, ``nn.Conv1d``,
``nn.Conv2d``); its output is the pre-activation h^l of mean-field theory. An *activation* is
an elementwise nonlinearity module; its output is φ(h).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

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


class Call(NamedTuple):
    """One forward call of a hooked module: its positional ``args`` and its ``output``."""

    name: str
    module: nn.Module
    args: tuple[Any, ...]
    output: Any


@contextlib.contextmanager
def hooked(
    modules: Iterable[tuple[str, nn.Module]], on_call: Callable[[Call], Any]
) -> Iterator[None]:
    """Pass every forward call of ``modules`` to ``on_call`` while open (what it returns, if not
    None, replaces the module's output); the forward hooks are removed on exit, whatever
    happens."""
    handles = []
    try:
        for name, module in modules:

            def hook(mod: nn.Module, args: tuple[Any, ...], out: Any, name: str = name) -> Any:
                return on_call(Call(name, mod, args, out))

            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def recording(modules: Iterable[tuple[str, nn.Module]]) -> Iterator[list[Call]]:
    """Every forward call of ``modules`` made while open, in the order they ran (a module
    called twice appears twice). Tensors are kept as the hooks saw them, not detached."""
    calls: list[Call] = []
    with hooked(modules, calls.append):
        yield calls


@contextlib.contextmanager
def capture(
    modules: list[tuple[str, nn.Module]], *, inputs: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record each module's output (or first input) of the last forward pass, by name."""
    store: dict[str, torch.Tensor] = {}

    def keep(call: Call) -> None:
        store[call.name] = call.args[0] if inputs else call.output

    with hooked(modules, keep):
        yield store


def per_sample(t: torch.Tensor) -> torch.Tensor:
    """``(N, ...)`` → ``(N, features)``: channels × positions flattened together."""
    return t.reshape(len(t), -1)
