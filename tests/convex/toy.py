"""The small regression problem the convex tests share."""

from __future__ import annotations

import numpy as np


def toy_regression(n: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n points in 2-D (rank 3 with the bias: every pattern enumerable) and a smooth target."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    return x, np.sin(2 * x[:, 0]) + 0.3 * x[:, 1]
