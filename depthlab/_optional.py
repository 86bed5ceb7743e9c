"""Optional dependencies: one clear line naming the extra that brings a missing package.

depthlab's core installs beside a user's own torch and nothing else heavy; the rest comes with
extras (``pip install "depthlab[graph]"``). Code that needs one imports it through
:func:`require`, so a missing package is a :class:`MissingDependencyError` (the CLI: one line,
exit 2), never a traceback from deep inside a model.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from depthlab.exceptions import MissingDependencyError

__all__ = ["EXTRAS", "missing_extra", "require"]

#: Top-level module -> (pip package, the depthlab extra that installs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "torch_geometric": ("torch_geometric", "graph"),
    "pandas": ("pandas", "frames"),
    "pyarrow": ("pyarrow", "frames"),
    "polars": ("polars", ""),  # no extra: to_polars is for those who already use it
    "tensorboard": ("tensorboard", "tensorboard"),
    "ray": ("ray", "ray"),
    "optuna": ("optuna", "optuna"),
    "lightning": ("lightning", "lightning"),
    "transformers": ("transformers", "hf"),
    "accelerate": ("accelerate", "hf"),
}


def _message(module: str, what: str) -> str:
    package, extra = EXTRAS.get(module, (module, ""))
    how = f'pip install "depthlab[{extra}]"' if extra else f"pip install {package}"
    return f"{what} needs {package}, which is not installed: {how}"


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (a top-level name in :data:`EXTRAS`) or raise one clear line saying
    which extra installs it; ``what`` names what needed it (``"the gcn family"``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(_message(module, what)) from None


def missing_extra(err: ImportError, what: str = "this") -> MissingDependencyError | None:
    """The one-line error for an ``ImportError`` of an optional package; None for any other."""
    name = (getattr(err, "name", None) or "").split(".")[0]
    if name not in EXTRAS:
        return None
    return MissingDependencyError(_message(name, what))
