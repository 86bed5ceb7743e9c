"""What kind of network this is, read off its module tree: the summary advice is built on.

``architecture(model, x)`` looks at module types and at one forward pass's structure, never at
names a library chose:

- ``attention``: a module that calls ``scaled_dot_product_attention``/softmax over keys is not
  visible from outside, so a module counts as attention when it is an ``nn.MultiheadAttention``
  or its class name contains ``Attention`` (HuggingFace, timm and most hand-written blocks);
- ``residual``: the forward pass adds two earlier results (``x + f(x)``): some module's input
  equals, to rounding, the sum of two earlier modules' outputs, or a depthlab ``Residual``;
- ``norms``, ``activations``: the type names of normalization and elementwise-activation
  modules present, sorted;
- ``token_inputs``: integer inputs (token ids);
- ``kind``: ``transformer`` (attention present), ``cnn``
  (convolutions, no attention), ``graph`` (a ``torch_geometric`` message-passing layer, or a
  model holding its graph as an ``edge_index`` tensor, as every depthlab graph family does),
  ``mlp`` (only ``Linear`` layers), else ``other``;
- ``graph_layers`` (graph networks): the class names of the message-passing layers, the entries
  of the model's ``layers`` list and any ``torch_geometric.nn.conv`` module, sorted (the graph
  rules read the family's assumptions off them).
"""

from __future__ import annotations

import bisect
from typing import Any

import torch
from torch import nn

from depthlab._device import wide_dtype
from depthlab.probes.layers import ELEMENTWISE, Call, hooked, weight_layers

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LocalResponseNorm,
)
if hasattr(nn, "RMSNorm"):
    NORM_TYPES = (*NORM_TYPES, nn.RMSNorm)

# Activation modules beyond depthlab's ELEMENTWISE that libraries define (by class name).
_ACTIVATION_NAMES = ("gelu", "relu", "silu", "swish", "tanh", "sigmoid", "mish", "activation")


def _is_norm(m: nn.Module) -> bool:
    name = type(m).__name__.lower()
    return isinstance(m, NORM_TYPES) or name.endswith("norm") or "layernorm" in name


def _is_activation(m: nn.Module) -> bool:
    if isinstance(m, ELEMENTWISE):
        return True
    name = type(m).__name__.lower()
    return not any(True for _ in m.parameters()) and any(a in name for a in _ACTIVATION_NAMES)


def _is_attention(m: nn.Module) -> bool:
    return isinstance(m, nn.MultiheadAttention) or "attention" in type(m).__name__.lower()


def _is_graph_layer(m: nn.Module) -> bool:
    return any(
        c.__module__.startswith("torch_geometric") and c.__name__ == "MessagePassing"
        for c in type(m).__mro__
    )


def _holds_graph(model: nn.Module) -> bool:
    edge_index = getattr(model, "edge_index", None)
    return isinstance(edge_index, torch.Tensor) and edge_index.dim() == 2 and len(edge_index) == 2


def graph_layers(model: nn.Module) -> list[str]:
    """Class names of a graph network's message-passing layers (module docstring)."""
    names: set[str] = set()
    layers = getattr(model, "layers", None)
    if isinstance(layers, nn.ModuleList):
        names.update(type(m).__name__ for m in layers)
    for m in model.modules():
        if type(m).__module__.startswith("torch_geometric.nn.conv"):
            names.add(type(m).__name__)
    return sorted(names)


def _residual(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether the forward pass adds two earlier results (``x + f(x)``): some module's input
    equals, to rounding, the sum of two outputs of modules that ran before it (pre- and post-norm
    blocks, ResNet shortcuts), or the model has a depthlab ``Residual``."""
    from depthlab.layers.residual import Residual

    if any(isinstance(m, Residual) for m in model.modules()):
        return True
    modules = [(n or "model", m) for n, m in model.named_modules() if m is not model]
    calls: list[Call] = []

    def keep(call: Call) -> None:
        # a copy: a later in-place add (``h += shortcut``) would make the output the sum itself
        out = call.output.clone() if isinstance(call.output, torch.Tensor) else call.output
        calls.append(call._replace(output=out))

    with torch.no_grad(), hooked(modules, keep):
        model(x)
    # A linear fingerprint per shape, <w, t>: fp(a + b) = fp(a) + fp(b), so a sum of two
    # earlier outputs is found among n² scalars, then confirmed on the tensors.
    gen = torch.Generator().manual_seed(0)
    weights: dict[tuple[int, ...], torch.Tensor] = {}
    seen: dict[tuple[int, ...], list[tuple[float, torch.Tensor]]] = {}

    def fingerprint(t: torch.Tensor) -> float:
        shape = tuple(t.shape)
        if shape not in weights:  # drawn on the host, moved once (float64 where it exists)
            w = torch.randn(shape, generator=gen, dtype=torch.float64, device="cpu")
            weights[shape] = w.to(device=t.device, dtype=wide_dtype(t.device))
        return float((weights[shape] * t.to(weights[shape].dtype)).sum())

    # per shape, the fingerprints kept sorted: each candidate partner b of an earlier output a
    # is found by bisection in O(log n), so a deep net's hundreds of calls stay cheap
    ordered: dict[tuple[int, ...], list[tuple[float, int]]] = {}
    for c in calls:
        inp = c.args[0] if c.args else None
        if isinstance(inp, torch.Tensor) and inp.is_floating_point():
            shape = tuple(inp.shape)
            earlier = seen.get(shape, [])
            keys = ordered.get(shape, [])
            f_in = fingerprint(inp)
            scale = inp.abs().max().item()
            if not scale > 0:
                continue  # an all-zero input is no evidence of a sum
            # relative to the tensor's own scale: a vanished signal's tiny fingerprints must
            # not all match each other
            tol = 1e-4 * (abs(f_in) + scale * inp.numel() ** 0.5)
            checked = 0
            for i, (f_a, a) in enumerate(earlier):
                lo = bisect.bisect_left(keys, (f_in - f_a - tol, -1))
                hi = bisect.bisect_right(keys, (f_in - f_a + tol, len(earlier)))
                for _, j in keys[lo:hi]:
                    if j == i or checked > MAX_CHECKS:
                        continue
                    checked += 1
                    b = earlier[j][1]
                    small = min(a.abs().max().item(), b.abs().max().item())
                    close = (inp - a - b).abs().max().item() <= 1e-5 * scale
                    if close and small > 1e-6 * scale:
                        return True
        out = c.output
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            shape = tuple(out.shape)
            f_out = fingerprint(out)
            seen.setdefault(shape, []).append((f_out, out))
            bisect.insort(ordered.setdefault(shape, []), (f_out, len(seen[shape]) - 1))
    return False


#: Candidate pairs confirmed on the tensors per layer input, at most (a bound on the cost).
MAX_CHECKS = 64


def architecture(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """The summary of the module docstring, from ``model``'s modules and a forward pass on
    ``x`` (a few samples suffice; the model's mode is left to the caller)."""
    mods = list(model.modules())
    norms = sorted({type(m).__name__ for m in mods if _is_norm(m)})
    acts = sorted({type(m).__name__ for m in mods if _is_activation(m) and not _is_norm(m)})
    attention = any(_is_attention(m) for m in mods)
    layers = [m for _, m in weight_layers(model)]
    convs = any(isinstance(m, nn.modules.conv._ConvNd) for m in layers)
    graph = _holds_graph(model) or any(_is_graph_layer(m) for m in mods)
    try:
        residual = _residual(model, x)
    except Exception:  # noqa: BLE001 - a summary: a model the check cannot run is not residual
        residual = False
    if graph:
        kind = "graph"
    elif attention:
        kind = "transformer"
    elif convs:
        kind = "cnn"
    elif layers and all(isinstance(m, nn.Linear) for m in layers):
        kind = "mlp"
    else:
        kind = "other"
    summary: dict[str, Any] = {
        "kind": kind,
        "norms": norms,
        "activations": acts,
        "residual": residual,
        "attention": attention,
        "token_inputs": not torch.is_floating_point(x),
    }
    if graph:
        summary["graph_layers"] = graph_layers(model)
    return summary
