"""What the in-loop feeds share: the setup read off a live optimizer, labels and inputs read off a
user's batch, the best constant predictor's loss, and the diagnosis at initialisation.

None of this decides anything: the verdict is the engine's (``depthlab.diagnosis.engine``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from depthlab.diagnosis.engine import Setup

log = logging.getLogger("depthlab.watch")

#: The probes run at initialisation: the ones that do not train (the run itself is the trial).
THEORY_PROBES = ("signal", "gradients", "correlation", "meanfield")
#: Keys under which a mapping batch holds its targets, and its inputs, in order of preference.
LABEL_KEYS = ("labels", "label", "y", "target", "targets")
INPUT_KEYS = ("input_ids", "x", "inputs", "input", "pixel_values", "input_values")


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """The verdict's optimizer family name: ``sgd``/``momentum`` for SGD (momentum > 0),
    ``adamw``/``adam`` for those two; any other optimizer is read as adaptive (``adam``)."""
    kind = type(optimizer).__name__.lower()
    if kind == "sgd":
        group = optimizer.param_groups[0]
        return "momentum" if float(group.get("momentum", 0.0) or 0.0) > 0 else "sgd"
    return "adamw" if kind == "adamw" else "adam"


def setup_of(
    optimizer: torch.optim.Optimizer,
    budget_steps: int,
    *,
    batch_size: int | None = None,
    warmup_steps: int = 0,
) -> Setup:
    """The training setup of a live optimizer: its first parameter group's learning rate as a
    scheduler set it out (``initial_lr`` when a scheduler is attached, else ``lr``)."""
    group = optimizer.param_groups[0]
    lr = float(group.get("initial_lr", group["lr"]))
    name = optimizer_name(optimizer)
    momentum = float(group.get("momentum", 0.0) or 0.0) if name == "momentum" else 0.0
    return Setup(
        optimizer=name,
        lr=lr if lr > 0 else 1e-3,
        momentum=momentum,
        budget_steps=max(int(budget_steps), 1),
        batch_size=int(batch_size or 64),
        warmup_steps=int(warmup_steps),
    )


def labels_of(batch: Any) -> torch.Tensor | None:
    """The targets of a batch: the second item of a tuple/list, or a mapping's ``labels``
    (``label``, ``y``, ``target``, ``targets``); ``None`` when there are none."""
    if isinstance(batch, list | tuple) and len(batch) >= 2:
        y = batch[1]
        return y if isinstance(y, torch.Tensor) else None
    if isinstance(batch, Mapping) or hasattr(batch, "keys"):
        for key in LABEL_KEYS:
            if key in batch and isinstance(batch[key], torch.Tensor):
                y = batch[key]
                return y if isinstance(y, torch.Tensor) else None
    return None


def inputs_of(batch: Any) -> tuple[torch.Tensor | None, str | None]:
    """The input tensor of a batch and, for a mapping, the key it was under."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0], None
    if isinstance(batch, Mapping) or hasattr(batch, "keys"):
        for key in INPUT_KEYS:
            if key in batch and isinstance(batch[key], torch.Tensor):
                return batch[key], key
    return None, None


class Baseline:
    """The loss of the best constant prediction, from the labels of the batches seen so far:
    the entropy of the label frequencies (nats, with the Miller-Madow correction for the few
    labels of the first batches) for integer labels — negative ones, such as the ``-100`` of
    ignored tokens, left out — or the mean per-output variance of real targets.
    Counts stay on the batch's device until :meth:`value` (one transfer)."""

    def __init__(self) -> None:
        self._counts: torch.Tensor | None = None
        self._sums: torch.Tensor | None = None  # (n, Σy, Σy²) per output
        self.batches = 0

    def add(self, y: torch.Tensor) -> None:
        y = y.detach()
        if not y.is_floating_point() and not y.is_complex():
            flat = y.reshape(-1).long()
            counts = torch.bincount(flat[flat >= 0])
            if self._counts is not None and len(self._counts) != len(counts):
                size = max(len(self._counts), len(counts))
                counts = torch.nn.functional.pad(counts, (0, size - len(counts)))
                self._counts = torch.nn.functional.pad(self._counts, (0, size - len(self._counts)))
            self._counts = counts if self._counts is None else self._counts + counts
        elif y.is_floating_point():
            flat = y.reshape(len(y), -1).double()
            sums = torch.stack(
                [torch.full_like(flat[0], len(flat)), flat.sum(0), flat.square().sum(0)]
            )
            if self._sums is None or self._sums.shape == sums.shape:
                self._sums = sums if self._sums is None else self._sums + sums
        self.batches += 1

    def value(self) -> float | None:
        if self._counts is not None and int(self._counts.sum()) > 0:
            n = float(self._counts.sum())
            freq = self._counts.double() / n
            freq = freq[freq > 0]
            # Miller-Madow: the plug-in entropy of n labels is low by about (K - 1) / 2n
            return float(-(freq * freq.log()).sum()) + (len(freq) - 1) / (2 * n)
        if self._sums is not None and float(self._sums[0, 0]) > 1:
            n, s, q = self._sums
            return float((q / n - (s / n).square()).clamp_min(0).mean())
        return None


def stop_agreed(stop: bool, step: int, cap: int, every: int, device: torch.device) -> bool:
    """In a multi-process run (``torch.distributed`` initialised), whether *any* process wants
    to stop, so that all stop together instead of one waiting for the others forever. Each
    process must ask at the same steps: every step up to the engine's cap, then every
    ``every`` steps; between those a process's own wish is held back (``False``)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return stop
    if step >= cap and (not every or step % every):
        return False
    flag = torch.tensor([1.0 if stop else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


@contextlib.contextmanager
def untouched_rng(model: nn.Module) -> Iterator[None]:
    """Whatever runs inside draws no number from the generators of the run: the CPU generator
    and those of the model's CUDA devices are restored on exit."""
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        yield


def theory_at_init(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    setup: Setup,
    *,
    name: str = "model",
    samples: int = 256,
) -> tuple[dict[str, Any] | None, str]:
    """The diagnosis of ``model`` at initialisation with :data:`THEORY_PROBES` on the first
    ``samples`` rows of ``(x, y)``, for ``setup``; and a problem to report (``""``: none).

    A model the probes do not apply to (``ProbeError``: e.g. it returns no tensor) gives
    ``(None, reason)``; probes that raised are named in the problem, and the others' results
    are kept. The model, its gradients and every random generator are left as they were."""
    from depthlab.diagnosis import DiagnoseOptions, diagnose
    from depthlab.exceptions import ProbeError
    from depthlab.probes import ProbeBatch
    from depthlab.spec import TrainSpec

    n = min(samples, len(x))
    per_epoch = max(1, math.ceil(len(x) / max(setup.batch_size, 1)))
    train = TrainSpec(
        optimizer=setup.optimizer,
        lr=setup.lr,
        momentum=min(setup.momentum, 0.99) if setup.optimizer == "momentum" else 0.9,
        batch_size=setup.batch_size,
        epochs=max(1, math.ceil(setup.budget_steps / per_epoch)),
    )
    options = DiagnoseOptions(probes=THEORY_PROBES, seeds=1, train=train)
    try:
        batch = ProbeBatch.from_tensors(x[:n].detach(), y[:n].detach())
        with untouched_rng(model):
            result = diagnose(model, batch, options, name=name, progress=False)
    except ProbeError as err:
        return None, f"the diagnosis at initialisation does not apply: {err}"
    failed = result.get("failed") or {}
    problem = ""
    if failed:
        listed = "; ".join(f"{k}: {v}" for k, v in failed.items())
        problem = f"probe(s) failed at initialisation, the verdict goes on without them ({listed})"
    return result, problem
