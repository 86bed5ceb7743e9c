"""One JSON encoding for every file depthlab writes: results, diagnoses, the run store.

JSON has no NaN or infinity, and a diverged run's losses are often exactly that. Every
non-finite float is written as the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` and
``from_json`` reads it back as the float it was, so ``json.dumps(..., allow_nan=False)`` accepts
the output and a round trip is exact. Those three strings are reserved.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data, non-finite floats as their reserved strings.

    Mappings become dicts with string keys, sequences lists; objects with ``tolist`` (numpy
    scalars and arrays, tensors) are converted first. Anything else is a ``TypeError``.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "Infinity" if f > 0 else "-Infinity"
        return f
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if hasattr(value, "tolist"):
        return to_json(value.tolist())
    raise TypeError(f"cannot write a value of type {type(value).__name__} as JSON: {value!r}")


def from_json(value: Any) -> Any:
    """Inverse of :func:`to_json`: the reserved strings become floats again."""
    if isinstance(value, str):
        return _NONFINITE.get(value, value)
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value
