"""A user's data files: ``.npz`` with arrays ``x`` and ``y``; ``.csv`` with a named target."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from depthlab.data.base import RawData, register_dataset
from depthlab.exceptions import DataError
from depthlab.spec import DataSpec


def _path(spec: DataSpec, suffix: str) -> Path:
    if not spec.path:
        raise DataError(f"dataset {spec.name!r} needs data.path: the {suffix} file to read")
    p = Path(spec.path)
    if not p.is_file():
        raise DataError(f"data file not found: {spec.path!r}")
    return p


def read_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``x`` and ``y`` arrays of an ``.npz`` file, or a ``DataError`` saying what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {str(p)!r}")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                held = ", ".join(z.files) or "nothing"
                raise DataError(f"{p}: no array {missing[0]!r}; the file holds: {held}")
            return np.asarray(z["x"]), np.asarray(z["y"])
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{p}: not a readable .npz file ({exc})") from None


@register_dataset(
    "npz",
    "a user's .npz file with arrays x (samples first) and y; data.path. With edge_index (2×E) "
    "it is a graph (x: N×F node features), optionally with train_mask/val_mask/test_mask",
)
def npz(spec: DataSpec) -> RawData:
    from depthlab.data.graphs import read_graph_extras

    path = _path(spec, ".npz")
    x, y = read_npz(path)
    with np.load(path, allow_pickle=False) as z:
        edge_index, masks = read_graph_extras(z)
    return RawData(x, y, source=spec.path, edge_index=edge_index, masks=masks)


@register_dataset("csv", "a user's .csv file with a header row; data.path and data.target")
def csv_file(spec: DataSpec) -> RawData:
    p = _path(spec, ".csv")
    with p.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise DataError(f"{p}: needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if spec.target not in header:
        raise DataError(
            f"{p}: target column {spec.target!r} not found; columns: {', '.join(header)}"
        )
    t = header.index(spec.target)
    try:
        table = np.array([[float(v) for v in row] for row in rows[1:] if row], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{p}: non-numeric value ({exc})") from None
    if table.ndim != 2 or table.shape[1] != len(header):
        raise DataError(f"{p}: rows must all have {len(header)} values like the header")
    y = table[:, t]
    x = np.delete(table, t, axis=1)
    if np.all(np.isfinite(y)) and np.all(np.mod(y, 1) == 0) and spec.task != "regression":
        y = y.astype(np.int64)
    return RawData(x, y, source=str(p))
