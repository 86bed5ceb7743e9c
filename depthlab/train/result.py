"""Run states and the immutable result of a training run."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from torch import nn

from depthlab.spec import RunSpec


class RunState(str, enum.Enum):
    """Life cycle of a run. A run ends COMPLETE, FAILED (an error), DIVERGED (NaN/inf) or
    STOPPED (ended early on purpose: a watched run decided *won't train*; ``error`` says why)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    DIVERGED = "DIVERGED"
    STOPPED = "STOPPED"


@dataclasses.dataclass(frozen=True, eq=False)
class TrainResult:
    """What a run produced.

    ``metrics`` holds the final ``{train,val,test}_loss`` and, for classifiers,
    ``{train,val,test}_accuracy`` (fractions in [0, 1]), each evaluated on the whole split in eval
    mode after the last epoch. ``history`` holds one mapping per epoch: ``epoch``, ``step``,
    ``lr``, the running mean ``train_loss`` (and ``train_accuracy``) over that epoch's batches,
    and the val/test metrics on evaluated epochs. A DIVERGED run records ``diverged_step``, the
    optimiser step whose loss or parameters stopped being finite.
    """

    state: RunState
    metrics: dict[str, float]
    history: tuple[dict[str, float], ...]
    steps: int
    seconds: float
    spec: RunSpec | None = None
    diverged_step: int | None = None
    error: str = ""
    model: nn.Module | None = dataclasses.field(default=None, repr=False)

    def history_frame(self) -> Any:
        """``history`` as a ``pandas.DataFrame``, a row per epoch (``depthlab[frames]``);
        see :func:`depthlab._frames.history_frame`."""
        from depthlab._frames import history_frame

        return history_frame(self.history)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; the model is left out."""
        return {
            "state": self.state.value,
            "metrics": dict(self.metrics),
            "history": [dict(h) for h in self.history],
            "steps": self.steps,
            "seconds": self.seconds,
            "diverged_step": self.diverged_step,
            "error": self.error,
            "spec": self.spec.to_dict() if self.spec is not None else None,
        }
