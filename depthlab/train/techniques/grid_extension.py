"""Grid extension for Kolmogorov–Arnold networks (Liu et al. 2024, §2.5), during training.

A run spec::

    arch:  {family: kan, depth: 1, width: 5, act: silu, grid: 3}
    train:
      epochs: 30
      techniques:
        - {name: grid_extension, grids: [10, 20], at_epochs: [10, 20]}

After epoch ``at_epochs[i]`` every KAN layer is refitted on ``grids[i]`` intervals
(``depthlab.models.kan.KAN.extend_grid``, least squares on the layer inputs of up to
``samples`` training samples), so the function carries over while the splines get finer; the
optimiser's state for the resized coefficients starts afresh.
"""

from __future__ import annotations

import dataclasses

from depthlab.exceptions import SpecError
from depthlab.spec import Spec
from depthlab.spec.base import check_min
from depthlab.train.callbacks import Technique, TrainState, register_technique
from depthlab.train.techniques.masks import masked_layers


@dataclasses.dataclass(frozen=True)
class GridExtensionParams(Spec):
    """``grids``: the new interval counts, increasing; ``at_epochs``: after which epoch each
    applies (1-based); ``samples``: training samples the refit uses."""

    grids: tuple[int, ...] = (10,)
    at_epochs: tuple[int, ...] = (1,)
    samples: int = 1024

    def _check(self) -> None:
        if len(self.grids) != len(self.at_epochs) or not self.grids:
            raise SpecError(
                "grids",
                f"{list(self.grids)} and at_epochs {list(self.at_epochs)} need the same, "
                "non-zero length",
            )
        for i, g in enumerate(self.grids):
            check_min(f"grids[{i}]", g, 1)
        for i, e in enumerate(self.at_epochs):
            check_min(f"at_epochs[{i}]", e, 1)
        check_min("samples", self.samples, 1)


@register_technique("grid_extension")
class GridExtension(Technique):
    """Refine a KAN's spline grids at given epochs (Liu et al. 2024)."""

    Params = GridExtensionParams
    params: GridExtensionParams

    def on_train_start(self, state: TrainState) -> None:
        if not callable(getattr(state.model, "extend_grid", None)):
            raise SpecError("techniques", "grid_extension needs a kan network (arch.family: kan)")
        if masked_layers(state.model):
            raise SpecError(
                "techniques",
                "grid_extension resizes the spline weights a pruning mask covers; "
                "use one or the other",
            )

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        if state.epoch + 1 not in self.params.at_epochs:
            return
        grid = self.params.grids[self.params.at_epochs.index(state.epoch + 1)]
        x = state.data.x_train[: self.params.samples]
        before = dict(state.model.named_parameters())
        state.model.extend_grid(x, grid)  # type: ignore[operator]
        # the resized coefficients are new Parameters: hand them to the optimiser, fresh state
        swap = {id(before[k]): p for k, p in state.model.named_parameters() if p is not before[k]}
        for group in state.optimizer.param_groups:
            for i, p in enumerate(group["params"]):
                if id(p) in swap:
                    state.optimizer.state.pop(p, None)
                    group["params"][i] = swap[id(p)]
