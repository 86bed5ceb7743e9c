"""``TrainSpec``: optimiser, schedule, loss, seed and the techniques applied while training."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar

from depthlab import _registry as reg
from depthlab.exceptions import SpecError
from depthlab.spec.base import Spec, check_choice, check_min, check_range

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
LOSSES = ("auto", "cross_entropy", "mse")


@dataclasses.dataclass(frozen=True)
class TrainSpec(Spec):
    """How to train. ``batch_size: 0`` means full batch; ``grad_clip: 0`` means no clipping.

    ``warmup_epochs`` ramps the learning rate linearly from 0 (may be fractional); ``step``
    multiplies it by ``step_gamma`` every ``step_size`` epochs; ``cosine`` anneals it to 0 over
    the run. ``loss: auto`` is cross-entropy for integer targets and MSE for real ones.
    ``techniques`` is a list of mappings, each with a registered ``name`` and that technique's
    own parameters (``depthlab list techniques``). ``device``: where the run trains — ``auto``
    (CUDA when available, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; checked
    against the machine when the run starts, and not part of the run's hash.
    """

    UNHASHED: ClassVar[tuple[str, ...]] = ("device",)

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 64
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    step_size: int = 10
    step_gamma: float = 0.1
    grad_clip: float = 0.0
    loss: str = "auto"
    seed: int = 0
    eval_every: int = 1
    techniques: tuple[dict[str, Any], ...] = ()
    device: str = "auto"

    def _check(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_range("lr", self.lr, 0.0, lo_open=True)
        check_range("momentum", self.momentum, 0.0, 1.0, hi_open=True)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_min("epochs", self.epochs, 1)
        if self.batch_size < 0:
            raise SpecError(
                "batch_size",
                f"{self.batch_size!r} is not valid; expected >= 1, or 0 for full batch",
            )
        check_choice("schedule", self.schedule, SCHEDULES)
        check_range("warmup_epochs", self.warmup_epochs, 0.0)
        check_min("step_size", self.step_size, 1)
        check_range("step_gamma", self.step_gamma, 0.0, 1.0, lo_open=True)
        check_range("grad_clip", self.grad_clip, 0.0)
        check_choice("loss", self.loss, LOSSES)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise SpecError(
                "device", f"{self.device!r} is not valid; choices: auto, cpu, cuda, cuda:N, mps"
            )
        if self.eval_every < 0:
            raise SpecError(
                "eval_every",
                f"{self.eval_every!r} is not valid; expected >= 0 (0: only at the end)",
            )
        for i, tech in enumerate(self.techniques):
            field = f"techniques[{i}]"
            if "name" not in tech:
                raise SpecError(
                    field, f"{tech!r} has no 'name'; choices: {', '.join(reg.TECHNIQUES.names())}"
                )
            cls = reg.TECHNIQUES.get(tech["name"], field=f"{field}.name")
            params = {k: v for k, v in tech.items() if k != "name"}
            try:
                cls.Params.from_dict(params)
            except SpecError as err:
                raise err.under(field) from None
