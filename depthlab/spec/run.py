"""``RunSpec``: one training run, the arch, data and train specs together."""

from __future__ import annotations

import dataclasses

from depthlab.spec.arch import ArchSpec
from depthlab.spec.base import Spec
from depthlab.spec.data import DataSpec
from depthlab.spec.train import TrainSpec


@dataclasses.dataclass(frozen=True)
class RunSpec(Spec):
    """A run file::

    arch:  {family: mlp, depth: 8, width: 128, act: relu, init: he, norm: none}
    data:  {name: digits, seed: 0}
    train: {optimizer: adam, lr: 0.001, epochs: 20, batch_size: 64, seed: 0}
    """

    arch: ArchSpec = dataclasses.field(default_factory=ArchSpec)
    data: DataSpec = dataclasses.field(default_factory=DataSpec)
    train: TrainSpec = dataclasses.field(default_factory=TrainSpec)
    name: str = ""
