"""The model factory: ``build_model(spec, in_shape=..., out_dim=..., seed=...)``.

A family is one function ``(spec, parts, in_shape, out_dim) -> nn.Module`` registered with
``@register_arch(name)``; ``build_model`` resolves the building blocks once, builds the module and
initialises every linear and convolutional layer with a generator seeded by ``seed``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

from depthlab import _registry as reg
from depthlab._optional import missing_extra, require
from depthlab.exceptions import SpecError
from depthlab.layers import (
    ActivationDef,
    InitContext,
    Residual,
    ResidualScale,
    init_model,
    make_dropout,
    resolve_activation,
    resolve_init,
    resolve_norm,
)
from depthlab.layers.norms import NormFactory
from depthlab.spec import ArchSpec

Family = Callable[[ArchSpec, "Parts", tuple[int, ...], int], nn.Module]


def register_arch(name: str) -> Callable[[Family], Family]:
    """Register a model family under ``name`` (the ``family`` field of an ``ArchSpec``)."""
    return reg.ARCHS.decorator(name)


@dataclasses.dataclass(frozen=True)
class Parts:
    """The resolved building blocks of one spec, shared by every family."""

    spec: ArchSpec
    act_def: ActivationDef
    norm_factory: NormFactory

    def act(self) -> nn.Module:
        return self.act_def.module()

    def norm(self, features: int, channels_first: bool = False) -> nn.Module:
        return self.norm_factory(features, channels_first)

    def dropout(self) -> nn.Module:
        return make_dropout(self.spec.dropout, self.spec.dropout_kind, self.act_def.name)

    def has_norm(self) -> bool:
        return self.spec.norm != "none"

    def residual(self, branch: nn.Module, post: nn.Module | None = None) -> Residual:
        scale = ResidualScale(
            self.spec.residual, alpha=self.spec.residual_alpha, depth=self.spec.depth
        )
        return Residual(branch, scale, post)


def build_model(
    spec: ArchSpec,
    *,
    in_shape: tuple[int, ...],
    out_dim: int,
    seed: int = 0,
    graph: torch.Tensor | None = None,
) -> nn.Module:
    """Build and initialise the network ``spec`` describes for inputs of ``in_shape``.

    ``in_shape`` excludes the batch dimension; ``out_dim`` is the number of outputs (classes
    for a classifier). Same spec and seed, same weights. ``graph`` (``edge_index``, 2×E) is the
    graph a graph family runs on; other families ignore it (an MLP on node features).
    """
    if out_dim < 1:
        raise SpecError("out_dim", f"{out_dim!r} is not valid; expected >= 1")
    family: Family = reg.ARCHS.get(spec.family, field="family")
    parts = Parts(spec, resolve_activation(spec.act), resolve_norm(spec.norm))
    # Layers draw a default init from torch's global generator as they are constructed; that
    # draw is overwritten below, so keep it from moving the user's global random state.
    what = f"the {spec.family} family"
    with torch.random.fork_rng(devices=[]):
        try:
            model = family(spec, parts, tuple(in_shape), out_dim)
        except ImportError as err:  # an optional package (torch_geometric): one line, its extra
            missing = missing_extra(err, what)
            if missing is None:
                raise
            raise missing from None
    generator = torch.Generator().manual_seed(seed)
    ctx = InitContext(parts.act_def, spec.sigma_b, generator)
    init = resolve_init(spec.init)
    init_model(model, init, ctx)
    for module in model.modules():
        # Layers that are not Linear/Conv (a KAN's spline layer) initialise themselves here, from
        # the same seeded generator, so the same seed still gives the same network.
        seeded = getattr(module, "init_seeded", None)
        if callable(seeded):
            seeded(init, ctx)
    set_graph = getattr(model, "set_graph", None)
    if set_graph is not None:
        require("torch_geometric", what)  # every graph network runs on PyG's scatter/softmax
        if graph is None:
            raise SpecError(
                "family",
                f"{spec.family} is a graph network and needs graph data "
                "(data.name csbm, karate, or an npz with edge_index)",
            )
        set_graph(graph)
    return model


def flat_dim(in_shape: tuple[int, ...]) -> int:
    return math.prod(in_shape) if in_shape else 1
