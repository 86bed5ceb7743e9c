"""Generated datasets: MNIST-1D (locally, never downloaded) and a teacher–student generator."""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from depthlab.data.base import RawData, register_dataset
from depthlab.spec import DataSpec

MNIST1D_SEED = 42  # the package's canonical seed: the dataset of the reference table


@functools.lru_cache(maxsize=4)
def _mnist1d(n_samples: int, shuffle_seq: bool) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n_samples
    args.shuffle_seq = shuffle_seq
    args.seed = MNIST1D_SEED
    # make_dataset reseeds the global NumPy and random generators: leave them as they were.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (d["x"], d["y"], d["x_test"], d["y_test"])
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _mnist1d_loader(shuffle_seq: bool):  # type: ignore[no-untyped-def]
    def load(spec: DataSpec) -> RawData:
        x, y, x_test, y_test = _mnist1d(spec.n_samples or 5000, shuffle_seq)
        return RawData(
            x.astype(np.float64),
            y.astype(np.int64),
            x_test.astype(np.float64),
            y_test.astype(np.int64),
            source="mnist1d",
        )

    return load


register_dataset(
    "mnist1d",
    "MNIST-1D (Greydanus 2020), generated locally: 40-step sequences, 10 classes, 80/20 split",
)(_mnist1d_loader(False))
register_dataset(
    "mnist1d_shuffled",
    "MNIST-1D with one fixed random permutation of the sequence positions (no spatial prior)",
)(_mnist1d_loader(True))


@register_dataset(
    "teacher",
    "x ~ N(0, I); y from a random teacher MLP (classification: argmax; regression: output + noise)",
)
def teacher(spec: DataSpec) -> RawData:
    """Teacher–student data. The teacher is an MLP of ``teacher_depth`` hidden layers of
    ``teacher_width`` units with ``teacher_act`` and LeCun-normal weights, drawn from ``seed``."""
    from depthlab.layers import resolve_activation

    gen = torch.Generator().manual_seed(spec.seed)
    n = spec.n_samples or 2000
    classify = spec.task in ("auto", "classification")
    out = spec.n_classes if classify else 1
    x = torch.randn(n, spec.n_features, generator=gen, dtype=torch.float64)
    act = resolve_activation(spec.teacher_act, field="teacher_act").fn
    h = x
    dims = [spec.n_features] + [spec.teacher_width] * spec.teacher_depth + [out]
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        w = torch.randn(d_in, d_out, generator=gen, dtype=torch.float64) / d_in**0.5
        h = h @ w
        if i < len(dims) - 2:
            h = act(h)
    h = h + spec.noise * torch.randn(h.shape, generator=gen, dtype=torch.float64)
    y = h.argmax(1).numpy().astype(np.int64) if classify else h.numpy()
    return RawData(x.numpy(), y, source="teacher")
