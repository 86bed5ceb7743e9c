"""``depthlab.diagnose``: will this model train with this optimizer on this data? One call.

::

    import depthlab as dl

    d = dl.diagnose(model, loader, optimizer=opt, steps=5_000)
    d.verdict, d.p_trains      # "trainable", 0.93
    d.summary()                # the table ``depthlab diagnose`` prints
    d.layers()                 # one row per layer (pandas)
    d.save("diagnosis/")       # diagnosis.json and index.html

It draws the samples the probes need from ``data`` (``depthlab.diagnosis.inputs``), reads the
training setup from the optimizer (``depthlab.diagnosis.setup``), runs the probes where the model
lives (or on ``device``) and returns a ``Diagnosis``. The model is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from depthlab._device import place
from depthlab.diagnosis.inputs import Forward, draw, probe_batch, samples_needed
from depthlab.diagnosis.result import Diagnosis, layer_rows
from depthlab.diagnosis.run import ALL_PROBES, DEFAULT_PROBES, DiagnoseOptions
from depthlab.diagnosis.run import diagnose as run_probes
from depthlab.diagnosis.setup import OptimizerLike, train_spec
from depthlab.exceptions import DepthlabError

LossLike = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None


def diagnose(
    model: nn.Module,
    data: Any,
    *,
    loss: LossLike = None,
    optimizer: OptimizerLike = "adam",
    lr: float | None = None,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    probes: str | Sequence[str] | None = None,
    seed: int = 0,
    progress: bool | None = None,
    forward: Forward | None = None,
    samples: int | None = None,
) -> Diagnosis:
    """Diagnose ``model`` for training on ``data`` with ``optimizer``.

    ``data``: ``(x, y)`` tensors, a ``torch.utils.data.Dataset`` or a ``DataLoader`` whose
    batches are tuples ``(x, ..., y)``, dicts or ``BatchEncoding``\\ s with ``labels``.
    ``loss``: ``None``/``"auto"`` (cross-entropy for integer targets, MSE for real ones),
    ``"cross_entropy"``, ``"mse"``, or ``loss(output, target) -> scalar``. ``forward(model,
    inputs)`` returns the output the loss is taken on, for a model not called as ``model(x)``
    (default: positional for tuples, keywords for dicts; a ``ModelOutput``'s ``logits``).
    ``optimizer``: a name (sgd, momentum, adam, adamw), an optimizer instance or a factory of
    one (``depthlab.diagnosis.setup`` states how any class is read); ``lr`` overrides its rate.
    The budget is ``steps`` or ``epochs`` of the real run (epochs of ``data``); ``batch_size``
    defaults to the loader's. ``device``: where to measure (default: where the model is; given,
    the model is moved there, as ``model.to`` would). ``probes``: names, ``"all"`` or the
    default set. ``samples``: how many samples to draw (default: what the probes use, 512).
    """
    if not isinstance(model, nn.Module):
        raise DepthlabError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    names = _probe_names(probes)
    options = DiagnoseOptions(probes=names, seed=seed, seeds=1)
    where = place(model, device)
    wanted = samples or samples_needed(names, options.ntk_samples, options.batch_size)
    loader_batch = getattr(data, "batch_size", None)
    batch_size = batch_size or (loader_batch if isinstance(loader_batch, int) else None)
    inputs, y = draw(data, wanted, batch_size=batch_size, seed=seed)
    subject, batch = probe_batch(model, inputs, y, loss=loss, forward=forward, device=where)
    train = train_spec(
        optimizer,
        model,
        lr=lr,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        n_samples=len(batch.y),
        steps_per_epoch=_length(data),
        seed=seed,
    )
    options = DiagnoseOptions(probes=names, seed=seed, seeds=1, train=train)
    result = run_probes(subject, batch, options, name=type(model).__name__, progress=progress)
    # nothing said about the run: the default setup is assumed, and the diagnosis says so
    result["setup"]["assumed"] = optimizer == "adam" and lr is None and steps is epochs is None
    result["device"] = str(where)
    result["layers"] = layer_rows(result, subject, strip="model." if subject is not model else "")
    return Diagnosis(result)


def _probe_names(probes: str | Sequence[str] | None) -> tuple[str, ...]:
    if probes is None:
        return DEFAULT_PROBES
    if isinstance(probes, str):
        return ALL_PROBES if probes == "all" else (probes,)
    return tuple(probes)


def _length(data: Any) -> int | None:
    """Batches per epoch of a DataLoader (None when it has no length or is not one)."""
    from torch.utils.data import DataLoader

    if isinstance(data, DataLoader):
        try:
            return len(data)
        except TypeError:
            return None
    return None
