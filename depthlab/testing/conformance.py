"""Conformance of a model family: shapes, gradients, finiteness and seeded determinism.

A new family passes ``check_arch(spec, in_shape=..., out_dim=...)`` before it is registered in
earnest: the forward pass has shape ``(N, out_dim)``, no output is NaN/inf, every parameter
receives a finite gradient from a scalar loss, and the same seed gives the same weights and
outputs (a different seed different ones).
"""

from __future__ import annotations

import torch
from torch import nn

from depthlab.exceptions import DepthlabError
from depthlab.models import build_model
from depthlab.spec import ArchSpec


class ConformanceError(DepthlabError):
    """A model breaks one of the conformance rules; the message says which."""


def check_module(model: nn.Module, x: torch.Tensor, out_dim: int) -> torch.Tensor:
    """Shape, finiteness and gradient checks on one module; returns the output."""
    model.train()
    out = model(x)
    if tuple(out.shape) != (len(x), out_dim):
        raise ConformanceError(f"output shape {tuple(out.shape)}, expected {(len(x), out_dim)}")
    if not torch.isfinite(out).all():
        raise ConformanceError("output has NaN/inf values")
    model.zero_grad(set_to_none=True)
    # A loss that reaches every output: the sum of squares of a random projection.
    proj = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * proj).sum().backward()
    for name, p in model.named_parameters():
        if p.grad is None:
            raise ConformanceError(f"parameter {name} received no gradient")
        if not torch.isfinite(p.grad).all():
            raise ConformanceError(f"parameter {name} has a NaN/inf gradient")
    return out.detach()


def check_arch(
    spec: ArchSpec,
    *,
    in_shape: tuple[int, ...],
    out_dim: int,
    batch: int = 8,
    seed: int = 0,
    graph: torch.Tensor | None = None,
) -> nn.Module:
    """Build ``spec`` and run every conformance check on it; returns the built model.

    A graph family takes ``graph`` (``edge_index`` over ``batch`` nodes)."""
    x = torch.randn((batch, *in_shape), generator=torch.Generator().manual_seed(seed + 100))
    model = build_model(spec, in_shape=in_shape, out_dim=out_dim, seed=seed, graph=graph)
    twin = build_model(spec, in_shape=in_shape, out_dim=out_dim, seed=seed, graph=graph)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), twin.state_dict().items(), strict=True
    ):
        if not torch.equal(a, b):
            raise ConformanceError(f"same seed, different {name}")
    check_module(model, x, out_dim)
    twin.load_state_dict(model.state_dict())  # the same running statistics after one step
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        out = model(x).detach()
        torch.manual_seed(0)
        again = twin.train()(x).detach()
    if not torch.equal(out, again):
        raise ConformanceError("same seed and input, different output")
    other = build_model(spec, in_shape=in_shape, out_dim=out_dim, seed=seed + 1, graph=graph)
    weights = [(n, p) for n, p in model.named_parameters() if p.dim() > 1]
    seeded_init = isinstance(spec.init, str) and spec.init != "zero"  # a user's may be fixed
    if (
        seeded_init
        and weights
        and all(torch.equal(p, dict(other.named_parameters())[n]) for n, p in weights)
    ):
        raise ConformanceError("a different seed gave the same weights")
    return model
