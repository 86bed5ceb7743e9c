"""A λ path: the convex program solved for a sequence of penalties, each solve warm-started from
the last, under one time budget.

λ runs from large to small: at large λ few groups carry weight, so the first solves are cheap and
each solution is a good start for the next (the working set and the screening carry over in
spirit — a warm start already has the right support nearly). Past the budget the path stops and
says so; every λ it reached has its own bounds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch

from depthlab.convex.fit import ConvexResult, fit_convex
from depthlab.exceptions import SpecError

__all__ = ["PathResult", "fit_path", "parse_lam_path"]


@dataclasses.dataclass(frozen=True, eq=False)
class PathResult:
    """One ``ConvexResult`` per λ reached, in the order solved; ``complete`` when all were."""

    lams: tuple[float, ...]
    results: tuple[ConvexResult, ...]
    complete: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "lams": list(self.lams),
            "complete": self.complete,
            "seconds": self.seconds,
            "path": [r.to_dict() for r in self.results],
        }


def parse_lam_path(text: str) -> tuple[float, ...]:
    """``"START:STOP:COUNT"`` → COUNT values spaced geometrically from START down (or up) to
    STOP, largest first; e.g. ``1e-1:1e-4:20``."""
    parts = text.split(":")
    bad = SpecError(
        "lam-path", f"{text!r} is not valid; expected START:STOP:COUNT like 1e-1:1e-4:20"
    )
    if len(parts) != 3:
        raise bad
    try:
        a, b, k = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise bad from None
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b) and k >= 1):
        raise bad
    lams = np.geomspace(a, b, k) if k > 1 else np.array([a])
    return tuple(float(v) for v in sorted(lams, reverse=True))


def fit_path(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    lams: tuple[float, ...],
    *,
    model: str = "relu",
    loss: str = "squared",
    patterns: str | int = "exact",
    seed: int = 0,
    tol: float = 1e-8,
    cert_tol: float = 1e-6,
    max_seconds: float = math.inf,
    solver: str = "auto",
) -> PathResult:
    """``fit_convex`` at every λ of ``lams`` (solved largest first), warm-starting each
    first-order solve from the previous solution on the same patterns; ``max_seconds`` bounds
    the whole path."""
    if not lams:
        raise SpecError("lam-path", "an empty path is not valid; expected at least one λ")
    order = tuple(sorted(lams, reverse=True))
    start = time.perf_counter()
    results: list[ConvexResult] = []
    warm: list[torch.Tensor] | None = None
    for lam in order:
        left = max_seconds - (time.perf_counter() - start)
        if left <= 0:
            break
        res = fit_convex(
            x, y, lam=lam, model=model, loss=loss, patterns=patterns, seed=seed, tol=tol,
            cert_tol=cert_tol, max_seconds=left, solver=solver, warm=warm,
        )  # fmt: skip
        results.append(res)
        warm = res.weights
    return PathResult(
        lams=order[: len(results)],
        results=tuple(results),
        complete=len(results) == len(order),
        seconds=time.perf_counter() - start,
    )
