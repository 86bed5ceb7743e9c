"""``DataSpec``: which data, how it is generated and split. Every knob is explicit."""

from __future__ import annotations

import dataclasses

from depthlab import _registry as reg
from depthlab.exceptions import SpecError
from depthlab.spec.base import Spec, check_choice, check_min, check_range

TASKS = ("auto", "classification", "regression")


@dataclasses.dataclass(frozen=True)
class DataSpec(Spec):
    """A dataset by registered name, with the seed of its split and of any generator.

    Splits are deterministic for a seed: ``test_fraction`` and ``val_fraction`` of the samples
    (datasets with a canonical test split, such as ``mnist1d``, keep theirs). Standardisation
    is fitted on the training part only. Fields a dataset does not use are ignored by it:
    ``n_samples``, ``n_features``, ``n_classes`` and the ``teacher_*`` fields shape generated
    data; ``path`` and ``target`` name a user's ``npz``/``csv`` file. ``homophily`` (edge
    homophily), ``degree`` (mean degree) and ``signal`` (distance of the class means in units of
    the feature noise) shape the contextual stochastic block model ``csbm``.
    """

    name: str = "digits"
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    standardize: bool = True
    task: str = "auto"
    n_samples: int | None = None
    n_features: int = 20
    n_classes: int = 10
    teacher_depth: int = 2
    teacher_width: int = 64
    teacher_act: str = "tanh"
    noise: float = 0.0
    path: str = ""
    target: str = ""
    homophily: float = 0.5
    degree: float = 5.0
    signal: float = 1.0

    def _check(self) -> None:
        reg.DATASETS.get(self.name, field="name")
        check_range("val_fraction", self.val_fraction, 0.0, 1.0, hi_open=True)
        check_range("test_fraction", self.test_fraction, 0.0, 1.0, hi_open=True)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise SpecError(
                "val_fraction",
                f"{self.val_fraction!r} + test_fraction {self.test_fraction!r} leaves no "
                "training data; keep their sum below 1",
            )
        check_choice("task", self.task, TASKS)
        if self.n_samples is not None and self.n_samples < 10:
            raise SpecError("n_samples", f"{self.n_samples!r} is not valid; expected >= 10")
        check_min("n_features", self.n_features, 1)
        check_min("n_classes", self.n_classes, 2)
        check_min("teacher_depth", self.teacher_depth, 0)
        check_min("teacher_width", self.teacher_width, 1)
        reg.ACTIVATIONS.get(self.teacher_act, field="teacher_act")
        check_range("noise", self.noise, 0.0)
        check_range("homophily", self.homophily, 0.0, 1.0)
        check_range("degree", self.degree, 0.0, lo_open=True)
        check_range("signal", self.signal, 0.0)
