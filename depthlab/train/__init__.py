"""Training: the loop, schedules, run results, and techniques as callbacks."""

from depthlab.train import techniques  # noqa: F401  (registers the techniques)
from depthlab.train.callbacks import Callback, Technique, TrainState, register_technique
from depthlab.train.loop import evaluate, fit, run
from depthlab.train.result import RunState, TrainResult
from depthlab.train.schedule import lr_at, make_optimizer

__all__ = [
    "Callback",
    "RunState",
    "Technique",
    "TrainResult",
    "TrainState",
    "evaluate",
    "fit",
    "lr_at",
    "make_optimizer",
    "register_technique",
    "run",
]
