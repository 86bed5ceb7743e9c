"""Where work runs: the model's device, a user's device string, and the precision it supports.

Every probe, the trial, the trainer and the sweeps run where the model lives. Random draws
(probe vectors, minibatch orders, initialisations of a reference net) come from a seeded CPU
``torch.Generator`` and are moved to the model's device once, so a seed gives the same numbers
on every device. float64 is used where the device has it; MPS has none, and the float64 work
(NTK conditioning, Hessian estimators, statistics) falls back to float32 there
(``wide_dtype``), which the diagnosis states.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from depthlab.exceptions import DepthlabError

#: The device strings a user may give (``auto``: CUDA when available, else the CPU).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


class DeviceError(DepthlabError):
    """A device that does not exist here, or a model that lives on no real device."""


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    return kind == "cpu"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine; ``None``/``auto``: CUDA when
    available, else the CPU. An unknown string, ``meta``, or a device this machine lacks is a
    ``DeviceError`` naming it and the choices — never a silent fall back to the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device))
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"unknown device {str(device)!r}; choices: {', '.join(DEVICE_CHOICES)}"
        ) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(
            f"device {str(device)!r} cannot run depthlab; choices: {', '.join(DEVICE_CHOICES)}"
        )
    if not _available(dev.type):
        raise DeviceError(f"device {str(device)!r} is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {str(device)!r} is not available: this machine has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    return dev


def model_device(model: nn.Module) -> torch.device:
    """The one device ``model``'s parameters and buffers live on (the CPU for a model without
    any). A model on ``meta`` (no data: built under ``torch.device('meta')`` or not yet
    materialised) or spread over several devices is a ``DeviceError``."""
    devices = {t.device for t in (*model.parameters(), *model.buffers())}
    if not devices:
        return torch.device("cpu")
    if any(d.type == "meta" for d in devices):
        raise DeviceError(
            "the model's parameters are on the 'meta' device (no data); materialise it "
            "first, e.g. model.to_empty(device='cpu') and load its weights"
        )
    if len(devices) > 1:
        names = ", ".join(sorted(str(d) for d in devices))
        raise DeviceError(
            f"the model spans several devices ({names}); depthlab measures a model on one device"
        )
    return devices.pop()


def place(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device a user's model is measured on: its own when ``device`` is ``None``/``auto``;
    otherwise ``device``, after moving the model there (in place, as ``model.to`` does)."""
    if device is None or device == "auto":
        return model_device(model)
    dev = resolve_device(device)
    model_device(model)  # a meta model is an error, not something to move
    model.to(dev)
    return dev


def supports_float64(device: torch.device) -> bool:
    """MPS has no float64; CPU and CUDA do."""
    return device.type != "mps"


def wide_dtype(device: torch.device) -> torch.dtype:
    """float64 where ``device`` has it, else float32 (MPS)."""
    return torch.float64 if supports_float64(device) else torch.float32


@contextlib.contextmanager
def forked_rng(device: torch.device, seed: int | None = None) -> Iterator[None]:
    """``torch.random.fork_rng`` over the CPU generator and ``device``'s own (CUDA or MPS):
    draws made inside (dropout, ``torch.randn`` without a generator) never move the caller's
    streams. With ``seed`` those two generators start from it; no other device's is touched."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        fork = torch.random.fork_rng(devices=[index])
    elif device.type == "mps":
        fork = torch.random.fork_rng(devices=[0], device_type="mps")
    else:
        fork = torch.random.fork_rng(devices=[])
    with fork:
        if seed is not None:
            torch.random.default_generator.manual_seed(seed)
            if device.type == "cuda":
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
            elif device.type == "mps":
                torch.mps.manual_seed(seed)
        yield


def widen(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float64 where its device has it (float32 on MPS): for sums and statistics."""
    return t.to(wide_dtype(t.device))
