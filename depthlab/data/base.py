"""The dataset container, the split and the checks every dataset goes through.

A registered dataset is a function ``(spec) -> RawData``; ``load_data(spec)`` checks the arrays
(lengths, finiteness, shapes), splits them deterministically for ``spec.seed``, fits
standardisation on the training part only and returns tensors in a ``Dataset``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from depthlab import _registry as reg
from depthlab._optional import missing_extra, require
from depthlab.exceptions import DataError
from depthlab.spec import DataSpec

Loader = Callable[[DataSpec], "RawData"]


def register_dataset(name: str, doc: str = "") -> Callable[[Loader], Loader]:
    """Register a dataset loader ``(spec: DataSpec) -> RawData`` under ``name``."""
    return reg.DATASETS.decorator(name, doc)


@dataclasses.dataclass(frozen=True)
class RawData:
    """Arrays as a loader produces them. ``x_test``/``y_test`` for a canonical test split."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    source: str = ""
    edge_index: np.ndarray | None = None
    masks: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train/val/test tensors. ``task`` is classification (integer ``y``, ``n_classes`` > 0) or
    regression (float ``y`` of shape ``(N, out_dim)``). ``x`` is float32 ``(N, *in_shape)``.

    A graph (``edge_index`` set, 2×E, both directions of every edge) is one set of N nodes: every
    split holds all nodes' ``x`` and ``y`` (a graph network needs the whole graph), and
    ``masks[part]`` (boolean, N) says which nodes the split scores.
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    edge_index: torch.Tensor | None = None
    masks: dict[str, torch.Tensor] | None = None

    @property
    def is_graph(self) -> bool:
        return self.edge_index is not None

    def to(self, device: torch.device | str) -> Dataset:
        """Every tensor (splits, graph, masks) on ``device``; itself when already there."""
        device = torch.device(device)
        if self.x_train.device == device:
            return self
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        if self.masks is not None:
            moved["masks"] = {k: m.to(device) for k, m in self.masks.items()}
        return dataclasses.replace(self, **moved)

    def mask(self, part: str) -> torch.Tensor | None:
        """The boolean node mask of ``part`` for a graph; None otherwise."""
        return None if self.masks is None else self.masks[part]

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def out_dim(self) -> int:
        return self.n_classes if self.task == "classification" else int(self.y_train.shape[1])

    def split(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``train``, ``val`` or ``test``."""
        if part not in ("train", "val", "test"):
            raise DataError(f"unknown split {part!r}; choices: train, val, test")
        return getattr(self, f"x_{part}"), getattr(self, f"y_{part}")

    def sizes(self) -> dict[str, int]:
        if self.masks is not None:
            return {p: int(self.masks[p].sum()) for p in ("train", "val", "test")}
        return {p: len(self.split(p)[1]) for p in ("train", "val", "test")}


def check_arrays(x: np.ndarray, y: np.ndarray, source: str) -> None:
    """Lengths match, values are numeric and finite, at least one sample."""
    if x.ndim < 2:
        raise DataError(f"{source}: x must have shape (samples, features...), got {x.shape}")
    if len(x) != len(y):
        raise DataError(f"{source}: x has {len(x)} samples but y has {len(y)}; they must match")
    if len(x) == 0:
        raise DataError(f"{source}: no samples")
    for label, arr in (("x", x), ("y", y)):
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise DataError(f"{source}: {label} holds {arr.dtype} values; expected numbers")
        if np.issubdtype(arr.dtype, np.floating):
            bad = ~np.isfinite(arr)
            if bad.any():
                first = np.argwhere(bad)[0]
                raise DataError(
                    f"{source}: {label} has {int(bad.sum())} NaN/inf values "
                    f"(first at index {tuple(int(i) for i in first)})"
                )


def infer_task(y: np.ndarray, requested: str, source: str) -> str:
    """``auto``: integer targets are classes, real targets are regression."""
    integral = np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_
    if requested == "auto":
        return "classification" if integral else "regression"
    if requested == "classification":
        if not integral and not np.all(np.mod(y, 1) == 0):
            raise DataError(f"{source}: task classification needs integer class labels in y")
    return requested


def load_data(spec: DataSpec) -> Dataset:
    """Load, check, split and standardise the dataset ``spec`` names."""
    loader: Loader = reg.DATASETS.get(spec.name, field="data.name")
    try:
        raw = loader(spec)
    except ImportError as err:  # an optional package (torch_geometric): one line, its extra
        missing = missing_extra(err, f"dataset {spec.name!r}")
        if missing is None:
            raise
        raise missing from None
    source = raw.source or spec.name
    check_arrays(raw.x, raw.y, source)
    task = infer_task(raw.y, spec.task, source)
    rng = np.random.default_rng(spec.seed)
    if raw.edge_index is not None:
        require("torch_geometric", f"the graph in dataset {spec.name!r}")
        return _graph_dataset(spec, raw, source, task, rng)
    if raw.x_test is not None and raw.y_test is not None:
        check_arrays(raw.x_test, raw.y_test, f"{source} (test)")
        x_rest, y_rest, x_test, y_test = raw.x, raw.y, raw.x_test, raw.y_test
    else:
        order = rng.permutation(len(raw.y))
        n_test = int(round(spec.test_fraction * len(order)))
        x_test, y_test = raw.x[order[:n_test]], raw.y[order[:n_test]]
        x_rest, y_rest = raw.x[order[n_test:]], raw.y[order[n_test:]]
    order = rng.permutation(len(y_rest))
    n_val = int(round(spec.val_fraction * (len(order) + len(y_test))))
    n_val = min(n_val, len(order) - 1)
    val_idx, train_idx = order[:n_val], order[n_val:]
    parts = {
        "train": (x_rest[train_idx], y_rest[train_idx]),
        "val": (x_rest[val_idx], y_rest[val_idx]),
        "test": (x_test, y_test),
    }
    x_train = parts["train"][0].astype(np.float64)
    if spec.standardize:
        mean, std = _moments(x_train)
        parts = {k: ((x - mean) / std, y) for k, (x, y) in parts.items()}
    if task == "regression":
        parts = {k: (x, _as_2d(y).astype(np.float64)) for k, (x, y) in parts.items()}
        if spec.standardize:
            ymean, ystd = _moments(parts["train"][1])
            parts = {k: (x, (y - ymean) / ystd) for k, (x, y) in parts.items()}
        n_classes = 0
    else:
        labels = np.unique(np.concatenate([y for _, y in parts.values()]).astype(np.int64))
        if labels.min() < 0:
            raise DataError(f"{source}: class labels must be >= 0, found {int(labels.min())}")
        n_classes = int(labels.max()) + 1
        if n_classes < 2:
            raise DataError(f"{source}: classification needs at least 2 classes in y")
    tensors = {k: (_x_tensor(x), _y_tensor(y, task)) for k, (x, y) in parts.items()}
    return Dataset(
        name=spec.name,
        task=task,
        x_train=tensors["train"][0],
        y_train=tensors["train"][1],
        x_val=tensors["val"][0],
        y_val=tensors["val"][1],
        x_test=tensors["test"][0],
        y_test=tensors["test"][1],
        n_classes=n_classes,
    )


def _graph_dataset(
    spec: DataSpec, raw: RawData, source: str, task: str, rng: np.random.Generator
) -> Dataset:
    """A graph: checked, undirected, its nodes split by masks, features standardised on the
    training nodes."""
    from depthlab.data.graphs import check_graph, node_masks, undirected

    assert raw.edge_index is not None
    check_graph(raw.x, raw.y, raw.edge_index, raw.masks, source)
    n = len(raw.x)
    masks = node_masks(n, raw.masks, spec, rng)
    x = raw.x.astype(np.float64)
    if spec.standardize:
        mean, std = _moments(x[masks["train"]])
        x = (x - mean) / std
    y = raw.y
    if task == "regression":
        y = _as_2d(y).astype(np.float64)
        if spec.standardize:
            ymean, ystd = _moments(y[masks["train"]])
            y = (y - ymean) / ystd
        n_classes = 0
    else:
        if y.ndim != 1:
            raise DataError(f"{source}: y must hold one class label per node, got {y.shape}")
        if y.min() < 0:
            raise DataError(f"{source}: class labels must be >= 0, found {int(y.min())}")
        n_classes = int(y.max()) + 1
        if n_classes < 2:
            raise DataError(f"{source}: classification needs at least 2 classes in y")
    xt, yt = _x_tensor(x), _y_tensor(y, task)
    return Dataset(
        name=spec.name,
        task=task,
        x_train=xt,
        y_train=yt,
        x_val=xt,
        y_val=yt,
        x_test=xt,
        y_test=yt,
        n_classes=n_classes,
        edge_index=undirected(raw.edge_index, n),
        masks={k: torch.from_numpy(v.copy()) for k, v in masks.items()},
    )


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    # Constant features (e.g. blank pixels of digits) stay constant instead of dividing by 0.
    return mean, np.where(std > 1e-12, std, 1.0)


def _as_2d(y: np.ndarray) -> np.ndarray:
    # Columns from the shape, not -1: an empty split (val_fraction 0) has no rows to infer them.
    return y.reshape(len(y), int(np.prod(y.shape[1:], dtype=np.int64)))


def _x_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _y_tensor(y: np.ndarray, task: str) -> torch.Tensor:
    if task == "classification":
        return torch.from_numpy(np.ascontiguousarray(y).astype(np.int64))
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
