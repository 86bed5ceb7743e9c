"""A user's own data as the probes take it: one ``ProbeBatch`` drawn from tensors, a ``Dataset``
or a ``DataLoader`` whose batches are tuples, dicts or HuggingFace ``BatchEncoding``\\ s.

Probes call ``model(batch.x)`` on one tensor. A model that takes one tensor and returns one is
measured as it is. Any other model is wrapped (``Indexed``): the probe batch's ``x`` holds
sample indices and the wrapper calls the model on those samples' own inputs — positionally for
a tuple batch ``(x1, x2, ..., y)``, by keyword for a dict batch — and reads its output
(``logits`` of a ``ModelOutput``, the first element of a tuple), so every probe slices, batches
and differentiates the model exactly as it would a tensor model. Targets are a tuple's last
element or a dict's ``labels`` (or ``label``, ``y``, ``targets``, ``target``); they are never
passed to the model, whose loss depthlab computes from the output (for a HuggingFace sequence
classifier, cross-entropy on integer labels and MSE on real ones: the model's own loss).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from depthlab._device import forked_rng
from depthlab.exceptions import DataError, ProbeError
from depthlab.probes.base import ProbeBatch

TARGET_KEYS = ("labels", "label", "y", "targets", "target")
#: ``forward(model, inputs) -> output``: how to call the model on one batch's inputs.
Forward = Callable[[nn.Module, Any], Any]


def split_batch(batch: Any) -> tuple[Any, torch.Tensor]:
    """``(inputs, target)`` of one batch: a tuple ``(x, ..., y)`` or a dict with labels."""
    if isinstance(batch, Mapping):
        key = next((k for k in TARGET_KEYS if k in batch), None)
        if key is None:
            raise DataError(
                f"a dict batch needs its targets under one of {', '.join(TARGET_KEYS)}; "
                f"its keys: {', '.join(map(str, batch))}"
            )
        return {k: v for k, v in batch.items() if k != key}, _tensor(batch[key], key)
    if isinstance(batch, tuple | list):
        if len(batch) < 2:
            raise DataError(f"a tuple batch is (inputs..., target); got {len(batch)} element(s)")
        *xs, y = batch
        return (xs[0] if len(xs) == 1 else tuple(xs)), _tensor(y, "target")
    raise DataError(
        f"a batch must be a tuple (x, y) or a dict with labels; got {type(batch).__name__}"
    )


def _tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"{name} is a {type(value).__name__}, not a tensor") from None


def _leaves(inputs: Any) -> list[tuple[str, torch.Tensor]]:
    if isinstance(inputs, Mapping):
        return [(str(k), _tensor(v, str(k))) for k, v in inputs.items()]
    if isinstance(inputs, tuple):
        return [(f"x{i}", _tensor(v, f"x{i}")) for i, v in enumerate(inputs)]
    return [("x", _tensor(inputs, "x"))]


def _cat(parts: list[torch.Tensor], name: str) -> torch.Tensor:
    """Concatenate along samples; batches padded to their own longest sequence are padded with
    zeros to the longest of all (token ids 0, attention mask 0)."""
    dims = {p.dim() for p in parts}
    if len(dims) > 1:
        raise DataError(f"{name} changes rank between batches: {sorted(dims)}")
    if len({tuple(p.shape[1:]) for p in parts}) > 1:
        if dims.pop() < 2 or torch.is_floating_point(parts[0]):
            shapes = sorted({tuple(p.shape[1:]) for p in parts})
            raise DataError(f"{name} changes shape between batches: {shapes}")
        width = max(p.shape[1] for p in parts)
        parts = [F.pad(p, (0, 0) * (p.dim() - 2) + (0, width - p.shape[1])) for p in parts]
    return torch.cat(parts)


def draw(data: Any, samples: int, *, batch_size: int | None, seed: int) -> tuple[Any, torch.Tensor]:
    """Up to ``samples`` samples of ``data`` as ``(inputs, target)``: the first batches a
    ``DataLoader`` (or any iterable of batches) yields — its own order, its shuffling seeded by
    ``seed`` without touching the caller's random streams —, the first items of a ``Dataset``
    or a list of samples, or an ``(x, y)`` tuple of tensors."""
    from torch.utils.data import DataLoader, Dataset

    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], torch.Tensor):
        inputs, y = split_batch(data)
        return _head(inputs, samples), y[:samples]
    if isinstance(data, Dataset | list):  # samples, one per item: batched in order
        data = DataLoader(data, batch_size=batch_size or 64, shuffle=False)  # type: ignore[arg-type]
    if not isinstance(data, Iterable):
        raise DataError(
            f"data must be (x, y) tensors, a torch Dataset or a DataLoader; got "
            f"{type(data).__name__}"
        )
    xs: list[Any] = []
    ys: list[torch.Tensor] = []
    with forked_rng(torch.device("cpu"), seed):
        for batch in data:
            inputs, y = split_batch(batch)
            xs.append(inputs)
            ys.append(y)
            if sum(len(t) for t in ys) >= samples:
                break
    if not ys or sum(len(t) for t in ys) == 0:
        raise DataError("the data yielded no samples")
    y = _cat(ys, "target")[:samples]
    first = xs[0]
    if isinstance(first, Mapping):
        inputs = {k: _cat([_tensor(x[k], k) for x in xs], k) for k in first}
    elif isinstance(first, tuple):
        inputs = tuple(_cat([x[i] for x in xs], f"x{i}") for i in range(len(first)))
    else:
        inputs = _cat([_tensor(x, "x") for x in xs], "x")
    return _head(inputs, samples), y


def _head(inputs: Any, n: int) -> Any:
    if isinstance(inputs, Mapping):
        return {k: _tensor(v, str(k))[:n] for k, v in inputs.items()}
    if isinstance(inputs, tuple):
        return tuple(_tensor(v, "x")[:n] for v in inputs)
    return _tensor(inputs, "x")[:n]


def check_values(inputs: Any, y: torch.Tensor) -> None:
    """Every sample count agrees and no value is NaN/inf: one clear line otherwise."""
    leaves = _leaves(inputs)
    for name, t in leaves:
        if t.dim() == 0 or len(t) != len(y):
            got = "a scalar" if t.dim() == 0 else f"{len(t)} samples"
            raise DataError(f"input {name} has {got} but the targets have {len(y)}")
    for name, t in [*leaves, ("target", y)]:
        if torch.is_floating_point(t) and not bool(torch.isfinite(t).all()):
            row = int((~torch.isfinite(t.reshape(len(t), -1))).any(1).nonzero()[0])
            raise DataError(f"{name} holds NaN/inf values (first at sample {row})")


def as_output(out: Any) -> torch.Tensor:
    """The tensor the loss is taken on: the output itself, a ``ModelOutput``'s ``logits``, or
    a tuple's first element."""
    if isinstance(out, torch.Tensor):
        return out
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ProbeError(
        f"the model returns {type(out).__name__}; pass forward=lambda model, inputs: ... "
        "returning the output tensor the loss is taken on"
    )


def call(model: nn.Module, inputs: Any, forward: Forward | None) -> torch.Tensor:
    if forward is not None:
        return as_output(forward(model, inputs))
    if isinstance(inputs, Mapping):
        return as_output(model(**inputs))
    if isinstance(inputs, tuple):
        return as_output(model(*inputs))
    return as_output(model(inputs))


class Indexed(nn.Module):
    """``model`` on the stored inputs of the samples whose indices it is given (module doc).
    The inputs live on the model's device, as a plain attribute: no parameter or buffer of the
    wrapper, so the probes' state restoring and the trial's copy see the model's own."""

    def __init__(self, model: nn.Module, inputs: Any, forward: Forward | None) -> None:
        super().__init__()
        self.model = model
        self.inputs = inputs
        self.forward_fn = forward

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return call(self.model, _take(self.inputs, index), self.forward_fn)


class Output(nn.Module):
    """``model`` called on one tensor, its output read by ``as_output`` (or ``forward``)."""

    def __init__(self, model: nn.Module, forward: Forward | None) -> None:
        super().__init__()
        self.model = model
        self.forward_fn = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return call(self.model, x, self.forward_fn)


def _take(inputs: Any, index: torch.Tensor) -> Any:
    if isinstance(inputs, Mapping):
        return {k: v[index] for k, v in inputs.items()}
    if isinstance(inputs, tuple):
        return tuple(v[index] for v in inputs)
    return inputs[index]


def _to(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, Mapping):
        return {k: v.to(device) for k, v in inputs.items()}
    if isinstance(inputs, tuple):
        return tuple(v.to(device) for v in inputs)
    return inputs.to(device)


def probe_batch(
    model: nn.Module,
    inputs: Any,
    y: torch.Tensor,
    *,
    loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    forward: Forward | None,
    device: torch.device,
) -> tuple[nn.Module, ProbeBatch]:
    """The module the probes measure (the model, or a wrapper of it) and the probe batch, both
    on ``device``. One forward pass on two samples checks that the model takes these inputs."""
    check_values(inputs, y)
    inputs, y = _to(inputs, device), y.to(device)
    if isinstance(inputs, torch.Tensor):
        x, subject = inputs, (model if forward is None else Output(model, forward))
    else:
        x, subject = torch.arange(len(y), device=device), Indexed(model, inputs, forward)
    if forward is None and isinstance(inputs, torch.Tensor):
        try:
            out = _eval_call(model, x[:2])
        except Exception:  # noqa: BLE001 - check_input reports a rejected input shape
            out = None
        if out is not None and not isinstance(out, torch.Tensor):
            subject = Output(model, None)  # a ModelOutput: measured on its logits
    else:
        _check_call(subject, x, inputs)
    if callable(loss):
        task = "regression" if torch.is_floating_point(y) else "classification"
        return subject, ProbeBatch(x, y, loss, task)
    return subject, ProbeBatch.from_tensors(x, y, loss or "auto")


def _eval_call(module: nn.Module, x: torch.Tensor) -> Any:
    """``module(x)`` in eval mode without gradients (no running statistic moves); every
    submodule's mode restored."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            return module(x)
    finally:
        for m, training in modes:
            m.training = training


def _check_call(subject: nn.Module, x: torch.Tensor, inputs: Any) -> None:
    try:
        _eval_call(subject, x[:2])
    except ProbeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any user model: one line naming the inputs
        shapes = ", ".join(f"{k} {tuple(t.shape[1:])}" for k, t in _leaves(inputs))
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ProbeError(
            f"the model rejects inputs of per-sample shape {shapes}: {type(exc).__name__}: {text}"
        ) from None


def samples_needed(probes: tuple[str, ...], ntk_samples: int, batch_size: int) -> int:
    """Samples the probes can use: the trial's evaluation subset (512), the Hessian and
    gradient batch, the NTK's inputs."""
    return max(512, batch_size, ntk_samples if "ntk" in probes else 0)
