"""Where a network and its data come from: presets, run specs, a user's factory and files."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from depthlab.data import load_data, read_npz
from depthlab.exceptions import DataError, DepthlabError, ProbeError
from depthlab.models import build_model
from depthlab.probes.base import ProbeBatch
from depthlab.spec import DataSpec, RunSpec


@dataclasses.dataclass(frozen=True, eq=False)
class Subject:
    """One network to diagnose, and a way to rebuild it at another seed (specs only)."""

    name: str
    model: nn.Module
    rebuild: Callable[[int], nn.Module] | None = None
    spec: RunSpec | None = None


def load_factory(target: str) -> nn.Module:
    """Call ``FACTORY`` in ``FILE.py`` (``FILE.py:FACTORY``) and return its module as it is."""
    path_text, sep, attr = target.rpartition(":")
    if not sep or not path_text or not attr:
        raise DepthlabError(f"--model expects FILE.py:FACTORY, got {target!r}")
    path = Path(path_text)
    if not path.is_file():
        raise DepthlabError(f"model file not found: {path_text!r}")
    spec = importlib.util.spec_from_file_location(f"depthlab_user_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise DepthlabError(f"cannot import {path_text!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a user's file: report, do not trace
        raise DepthlabError(
            f"importing {path_text!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        names = sorted(
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == spec.name
        )
        raise DepthlabError(
            f"factory {attr!r} not found in {path_text!r}; callables there: "
            f"{', '.join(names) or '(none)'}"
        )
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001
        raise DepthlabError(f"{attr}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise DepthlabError(f"{attr}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def spec_subjects(
    specs: list[RunSpec],
    in_shape: tuple[int, ...],
    out_dim: int,
    graph: torch.Tensor | None = None,
    batch: ProbeBatch | None = None,
    device: str | torch.device | None = None,
) -> list[Subject]:
    """Models built from run specs at their train seeds, rebuildable at any seed; graph
    families run on ``graph``. With the training ``batch``, a spec's init-time techniques
    (``prune_at_init``) are applied as training would apply them. Each is built on the host
    (the same weights anywhere) and moved to ``device``, or to its spec's ``train.device``
    when ``device`` is None."""
    from depthlab._device import resolve_device
    from depthlab.train.techniques import apply_at_init

    subjects = []
    for i, spec in enumerate(specs):
        where = resolve_device(device if device is not None else spec.train.device)

        def rebuild(seed: int, spec: RunSpec = spec, where: torch.device = where) -> nn.Module:
            model = build_model(
                spec.arch, in_shape=in_shape, out_dim=out_dim, seed=seed, graph=graph
            )
            if batch is not None:
                train = dataclasses.replace(spec.train, seed=seed)
                apply_at_init(model, train, batch.x, batch.y, batch.loss_fn)
            return model.to(where)

        subjects.append(
            Subject(spec.name or f"run{i}", rebuild(spec.train.seed), rebuild, spec=spec)
        )
    return subjects


def dataset_batch(spec: DataSpec, loss: str = "auto") -> tuple[ProbeBatch, tuple[int, ...], int]:
    """The training split of a registered dataset, with its input shape and output size."""
    batch, in_shape, out_dim, _ = dataset_source(spec, loss)
    return batch, in_shape, out_dim


def dataset_source(
    spec: DataSpec, loss: str = "auto"
) -> tuple[ProbeBatch, tuple[int, ...], int, torch.Tensor | None]:
    """``dataset_batch`` and the graph (``edge_index``) of graph data, else None. A graph's
    batch is every node with its label, in node order (graph networks need the whole graph)."""
    data = load_data(spec)
    batch = ProbeBatch.from_tensors(data.x_train, data.y_train, loss)
    return batch, data.in_shape, data.out_dim, data.edge_index


def npz_batch(path: str, loss: str = "auto") -> ProbeBatch:
    """A user's ``.npz`` exactly as given: no standardisation, no split, rows in file order.
    Integer ``x`` (token ids) stays integer (int64), anything else becomes float32."""
    x, y = read_npz(path)
    from depthlab.data.base import check_arrays

    check_arrays(x, y, path)
    if np.issubdtype(x.dtype, np.integer):  # token ids: kept as integers for an embedding
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))
    else:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        if y.ndim != 1:
            raise DataError(
                f"{path}: integer y must be one class label per sample, got shape {y.shape}"
            )
        if y.min() < 0:
            raise DataError(f"{path}: class labels must be >= 0, found {int(y.min())}")
        yt = torch.from_numpy(y.astype(np.int64))
    else:
        yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    try:
        return ProbeBatch.from_tensors(xt, yt, loss)
    except ProbeError as err:
        raise DataError(f"{path}: {err}") from None
