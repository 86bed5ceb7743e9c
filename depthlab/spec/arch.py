"""``ArchSpec``: the shape of a network, every hyperparameter explicit."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from depthlab import _registry as reg
from depthlab.exceptions import SpecError
from depthlab.spec.base import (
    Spec,
    check_choice,
    check_min,
    check_positive_ints,
    check_range,
    import_callable,
)

RESIDUAL_SCALINGS = ("none", "fixed", "inv_sqrt_depth", "rezero")
DROPOUT_KINDS = ("auto", "standard", "alpha")
NORM_PLACEMENTS = ("pre", "post")
SHEAF_MAPS = ("diagonal", "orthogonal", "general")
AGGREGATIONS = ("sum", "mean", "max")
PARAMETRIZATIONS = ("default", "mip")

Component = str | Callable[..., Any]


def check_component(field: str, value: Component, registry: reg.Registry) -> None:
    """A component field holds a registered name, an importable ``module:attr`` or a callable."""
    if callable(value):
        return
    if ":" in value:
        import_callable(value, field)
        return
    registry.get(value, field=field)


@dataclasses.dataclass(frozen=True)
class ArchSpec(Spec):
    """A network family and its hyperparameters.

    ``depth`` counts hidden layers (``mlp``, ``cnn1d``) or residual blocks (``resmlp``), so an
    ``mlp`` of depth 0 is a linear model. ``width`` is one integer, or one per hidden layer
    (hourglass and bottleneck shapes). ``act``, ``init`` and ``norm`` take a registered name,
    an importable ``module:attr`` path or (from Python) a callable.

    Graph families (``gcn``, ``sage``, ``gin``, ``gat``, ``dagnn``, ``graph_transformer``,
    ``sheaf``) count message-passing layers in ``depth`` and use ``initial_residual`` (GCNII's
    α: each layer propagates (1 − α)·ÂH + α·H⁰), ``heads`` (attention heads), ``sheaf_maps``
    and ``stalk_dim`` (neural sheaf diffusion), ``pe_dim`` (Laplacian positional encodings) and
    ``aggr`` (``gin``'s neighbour aggregation: sum, mean or max).

    ``kan`` (Kolmogorov–Arnold network) takes ``grid`` (spline intervals G), ``spline_order``
    (k) and ``grid_range`` (the grid spans [−r, r]); ``act`` is its base activation.
    ``hypernet`` reads the first ``cond_dim`` input features as the conditioning input and
    generates every weight of a target MLP of ``target_depth`` hidden layers of
    ``target_width`` units; ``parametrization`` is ``default`` or ``mip`` (Ortiz et al. 2023).
    """

    HASHED_WHEN_SET: ClassVar[tuple[str, ...]] = (
        "grid", "spline_order", "grid_range", "cond_dim", "target_depth", "target_width",
        "parametrization",
    )  # fmt: skip

    family: str = "mlp"
    depth: int = 2
    width: int | tuple[int, ...] = 128
    act: Component = "relu"
    init: Component = "he"
    norm: Component = "none"
    norm_placement: str = "pre"
    residual: str = "none"
    residual_alpha: float = 1.0
    dropout: float = 0.0
    dropout_kind: str = "auto"
    bias: bool = True
    sigma_b: float = 0.0
    kernel: int | tuple[int, ...] = 3
    stride: int | tuple[int, ...] = 1
    padding: int | tuple[int, ...] = 1
    initial_residual: float = 0.0
    heads: int = 1
    sheaf_maps: str = "diagonal"
    stalk_dim: int = 2
    pe_dim: int = 4
    aggr: str = "sum"
    grid: int = 5
    spline_order: int = 3
    grid_range: float = 2.0
    cond_dim: int = 1
    target_depth: int = 1
    target_width: int = 16
    parametrization: str = "default"

    def _check(self) -> None:
        check_component("family", self.family, reg.ARCHS)
        check_component("act", self.act, reg.ACTIVATIONS)
        check_component("init", self.init, reg.INITS)
        check_component("norm", self.norm, reg.NORMS)
        check_min("depth", self.depth, 0)
        check_positive_ints("width", self.width)
        if isinstance(self.width, tuple) and len(self.width) != self.depth:
            raise SpecError(
                "width",
                f"has {len(self.width)} entries but depth is {self.depth}; "
                "give one width per hidden layer or a single integer",
            )
        check_choice("norm_placement", self.norm_placement, NORM_PLACEMENTS)
        check_choice("residual", self.residual, RESIDUAL_SCALINGS)
        check_choice("dropout_kind", self.dropout_kind, DROPOUT_KINDS)
        if not 0.0 <= self.dropout < 1.0:
            raise SpecError("dropout", f"{self.dropout!r} is not valid; expected 0 <= p < 1")
        check_min("sigma_b", self.sigma_b, 0)
        check_positive_ints("kernel", self.kernel)
        check_positive_ints("stride", self.stride)
        check_positive_ints("padding", self.padding, minimum=0)
        if not 0.0 <= self.initial_residual <= 1.0:
            raise SpecError(
                "initial_residual", f"{self.initial_residual!r} is not valid; expected 0 <= α <= 1"
            )
        check_min("heads", self.heads, 1)
        check_choice("sheaf_maps", self.sheaf_maps, SHEAF_MAPS)
        check_min("stalk_dim", self.stalk_dim, 1)
        check_min("pe_dim", self.pe_dim, 0)
        check_choice("aggr", self.aggr, AGGREGATIONS)
        check_min("grid", self.grid, 1)
        check_min("spline_order", self.spline_order, 0)
        check_range("grid_range", self.grid_range, 0.0, lo_open=True)
        check_min("cond_dim", self.cond_dim, 1)
        check_min("target_depth", self.target_depth, 0)
        check_min("target_width", self.target_width, 1)
        check_choice("parametrization", self.parametrization, PARAMETRIZATIONS)

    def widths(self) -> tuple[int, ...]:
        """One width per hidden layer."""
        return self.width if isinstance(self.width, tuple) else (self.width,) * self.depth


def per_layer(field: str, value: int | tuple[int, ...], depth: int) -> tuple[int, ...]:
    """Broadcast an int-or-list field to one value per layer, or say which lengths fit."""
    if isinstance(value, int):
        return (value,) * depth
    if len(value) != depth:
        raise SpecError(field, f"has {len(value)} entries for {depth} layers; give 1 or {depth}")
    return value
