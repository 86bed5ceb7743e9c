"""Finding a network's layers from the outside, with hooks: works on any ``nn.Module``.

A *layer* is a module that holds, as its own parameter, a ``weight`` of two or more dimensions:
``nn.Linear``, every convolution, embeddings, and any user or library module built the same way
(HuggingFace's ``Conv1D``); its output is the pre-activation h^l of mean-field theory. An
*activation* is an elementwise nonlinearity module; its output is φ(h).

A layer's *role* is its module name with every index replaced by ``*``, but a last one (a
position inside an ``nn.Sequential``): ``encoder.layer.3.output.dense`` →
``encoder.layer.*.output.dense``, ``blocks.2.0`` → ``blocks.*.0``. The layers of one role
do the same job at different depths, so depth trends compare them with each other
(``role_group``), not the first and last layer in module order.

A layer's output need not start with the batch: attention over windows (Swin) gives
``(N·windows, tokens, C)``, sequence-first modules ``(T, N, C)``. ``per_sample`` finds the batch
dimension of each output (``batch_layout``) or says why it cannot.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import torch
from torch import nn

from depthlab.layers.activations import Lambda

#: The common layer types (for ``isinstance`` checks); ``is_layer`` is the rule.
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)
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


def is_layer(module: nn.Module) -> bool:
    """A module with its own ``weight`` parameter of at least two dimensions."""
    w = module._parameters.get("weight")
    return isinstance(w, torch.Tensor) and w.dim() >= 2


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every layer (``is_layer``), in module order."""
    return [(n or "model", m) for n, m in model.named_modules() if is_layer(m)]


def coverage(model: nn.Module) -> dict[str, Any]:
    """How much of the model the layer-based probes see: layers found, and the parameters those
    layers hold (their own, e.g. weight and bias) against all trainable parameters."""
    layers = weight_layers(model)
    seen: set[int] = set()
    covered = 0
    for _, m in layers:
        for p in m.parameters(recurse=False):
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                covered += p.numel()
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "layers": len(layers),
        "layer_types": sorted({type(m).__name__ for _, m in layers}),
        "params_covered": covered,
        "params_total": total,
        "fraction": covered / total if total else 0.0,
    }


def role(name: str) -> str:
    """``name`` with every all-digit component but a last one replaced by ``*``: indices name
    the block, a last index the position inside an ``nn.Sequential`` (a different job)."""
    parts = name.split(".")
    return ".".join(
        "*" if part.isdigit() and i < len(parts) - 1 else part for i, part in enumerate(parts)
    )


def role_group(names: list[str]) -> tuple[str | None, int, int]:
    """The role whose layers span the network's depth, and the positions (in ``names``, the
    layer calls in the order they ran) of its first and last call.

    Among roles called at least twice, the one called most often; among those, the role of the
    latest call (the end of a block: every block's MLP output in a transformer, the hidden
    ``Linear`` of a plain MLP). When no role repeats, ``(None, 0, len(names) − 1)``: the first
    and last layer in the order they ran.
    """
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        positions.setdefault(role(name), []).append(i)
    repeated = {r: ps for r, ps in positions.items() if len(ps) >= 2}
    if not repeated:
        return None, 0, len(names) - 1
    most = max(len(ps) for ps in repeated.values())
    best = max((r for r, ps in repeated.items() if len(ps) == most), key=lambda r: positions[r][-1])
    return best, positions[best][0], positions[best][-1]


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


def batch_layout(shape: tuple[int, ...], n: int) -> str | None:
    """Where the batch of ``n`` samples sits in an output of ``shape``: ``"first"`` (dimension
    0 is N), ``"blocks"`` (dimension 0 is k·N, batch-major: N blocks of k windows or chunks),
    ``"dim:d"`` (dimension d is N, e.g. sequence-first ``(T, N, C)``), or ``None``."""
    if not shape:
        return None
    if shape[0] == n:
        return "first"
    if n > 1 and shape[0] % n == 0:
        return "blocks"
    for d, size in enumerate(shape[1:], start=1):
        if size == n:
            return f"dim:{d}"
    return None


def per_sample(t: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """``(N, ...)`` → ``(N, features)``: channels × positions flattened together. With ``n``,
    the batch dimension is found first (``batch_layout``); ``ValueError`` if there is none."""
    if n is None:
        return t.reshape(len(t), -1)
    layout = batch_layout(tuple(t.shape), n)
    if layout is None:
        raise ValueError(f"no batch dimension of size {n} in an output of shape {tuple(t.shape)}")
    if layout.startswith("dim:"):
        t = t.movedim(int(layout[4:]), 0)
    return t.reshape(n, -1)
