"""scikit-learn's bundled datasets (no download): digits, breast_cancer, wine, iris, diabetes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from depthlab.data.base import RawData, register_dataset
from depthlab.spec import DataSpec


def _sklearn(name: str, doc: str, integral: bool) -> None:
    def load(spec: DataSpec) -> RawData:
        from sklearn import datasets

        fetch: Callable[..., Any] = getattr(datasets, f"load_{name}")
        x, y = fetch(return_X_y=True)
        y = y.astype(np.int64) if integral else y.astype(np.float64)
        return RawData(np.asarray(x, dtype=np.float64), y, source=name)

    register_dataset(name, doc)(load)


_sklearn("digits", "8×8 handwritten digits, 1,797 samples, 10 classes (scikit-learn)", True)
_sklearn("breast_cancer", "Wisconsin breast cancer, 569 samples, 30 features, 2 classes", True)
_sklearn("wine", "wine recognition, 178 samples, 13 features, 3 classes", True)
_sklearn("iris", "iris flowers, 150 samples, 4 features, 3 classes", True)
_sklearn("diabetes", "diabetes progression, 442 samples, 10 features, regression", False)
