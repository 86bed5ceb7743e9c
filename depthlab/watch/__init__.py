"""depthlab inside the user's own training: ``Monitor`` for a plain loop, and callbacks for
Lightning (``depthlab[lightning]``) and the HF Trainer (``depthlab[hf]``), imported lazily.

Each feeds the verdict engine (``depthlab.diagnosis.engine``) from the real run; none of them
knows how it decides."""

from __future__ import annotations

from typing import Any

from depthlab.watch.monitor import STOP_ON, Monitor

__all__ = ["STOP_ON", "DepthlabCallback", "DepthlabTrainerCallback", "Monitor", "WatchCallback"]

_LAZY = {
    "DepthlabCallback": "depthlab.watch.lightning",
    "DepthlabTrainerCallback": "depthlab.watch.hf",
    "WatchCallback": "depthlab.watch.fit",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'depthlab.watch' has no attribute {name!r}")
