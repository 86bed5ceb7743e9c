"""The training loop: seeded, mini-batch or full batch, never raising on a diverging run.

A NaN/inf loss, gradient norm or parameter ends the run DIVERGED at the step it happened; a
callback that sets ``state.stop_reason`` ends it STOPPED after that step.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from depthlab._device import forked_rng, place, resolve_device
from depthlab.data import Dataset, load_data
from depthlab.exceptions import SpecError
from depthlab.models import build_model
from depthlab.spec import RunSpec, TrainSpec
from depthlab.train.callbacks import Callback, TrainState, build_techniques
from depthlab.train.loggers import Logger, LoggerFeed, hparams_of
from depthlab.train.result import RunState, TrainResult
from depthlab.train.schedule import is_constant, lr_at, make_optimizer

EVAL_BATCH = 4096


def loss_name(spec: TrainSpec, data: Dataset) -> str:
    """``auto`` is cross-entropy for classification and MSE for regression."""
    if spec.loss != "auto":
        if spec.loss == "cross_entropy" and data.task != "classification":
            raise SpecError(
                "train.loss",
                "cross_entropy needs integer class labels; "
                f"dataset {data.name!r} is a regression task (use mse or auto)",
            )
        return spec.loss
    return "cross_entropy" if data.task == "classification" else "mse"


def loss_fn(name: str, n_classes: int):  # type: ignore[no-untyped-def]
    """Mean loss over the batch. MSE on class labels compares with one-hot targets."""
    if name == "cross_entropy":
        return F.cross_entropy
    if n_classes:
        return lambda out, y: F.mse_loss(out, F.one_hot(y, n_classes).to(out.dtype))
    return F.mse_loss


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss,  # type: ignore[no-untyped-def]
    classify: bool,
    mask: torch.Tensor | None = None,
) -> dict[str, float]:
    """Mean loss (and accuracy) over a whole split, in eval mode; restores the model's mode.

    With a node ``mask`` (graphs), the model sees every node and the split scores the masked
    ones."""
    if mask is not None:
        if not bool(mask.any()):
            return {}
        was_training = model.training
        model.eval()
        try:
            out, y = model(x)[mask], y[mask]
        finally:
            model.train(was_training)
        metrics = {"loss": float(loss(out, y))}
        if classify:
            metrics["accuracy"] = int((out.argmax(1) == y).sum()) / len(y)
        return metrics
    if len(y) == 0:
        return {}
    was_training = model.training
    model.eval()
    try:
        total, correct = 0.0, 0
        for i in range(0, len(y), EVAL_BATCH):
            out = model(x[i : i + EVAL_BATCH])
            yb = y[i : i + EVAL_BATCH]
            total += float(loss(out, yb)) * len(yb)
            if classify:
                correct += int((out.argmax(1) == yb).sum())
    finally:
        model.train(was_training)
    metrics = {"loss": total / len(y)}
    if classify:
        metrics["accuracy"] = correct / len(y)
    return metrics


def fit(
    model: nn.Module,
    data: Dataset,
    spec: TrainSpec,
    *,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    run_spec: RunSpec | None = None,
    loggers: Sequence[Logger] = (),
) -> TrainResult:
    """Train ``model`` on ``data`` as ``spec`` says; techniques in ``spec`` run as callbacks.

    The minimised objective is the task loss plus every callback's ``loss_term``; the history's
    ``train_loss`` is the task loss alone. A graph is trained full batch (``batch_size`` is not
    used): every step runs the model on all nodes and scores the training nodes. ``loggers``
    (``depthlab.loggers``: TensorBoard, history.csv, a user's own) receive the hyperparameters,
    each epoch's history row and the final metrics.

    The run trains where the model lives (``spec.device: auto``), or on ``spec.device``, where
    the model is moved first; the data is moved there once. Minibatch orders are drawn on the
    host from ``spec.seed`` (the same orders on every device) and moved once per epoch.
    """
    start = time.perf_counter()
    device = place(model, spec.device)
    data = data.to(device)
    feed = LoggerFeed(loggers, hparams_of(run_spec, spec))
    callbacks = [*build_techniques(spec), *callbacks, *([feed] if loggers else [])]
    lname = loss_name(spec, data)
    loss = loss_fn(lname, data.n_classes)
    classify = data.task == "classification"
    x, y = data.x_train, data.y_train
    train_mask = data.mask("train")
    n = len(y) if train_mask is None else int(train_mask.sum())
    batch = n if spec.batch_size == 0 or train_mask is not None else min(spec.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    optimizer = make_optimizer(spec, model.parameters())
    generator = torch.Generator().manual_seed(spec.seed)
    state = TrainState(model, optimizer, data, spec, generator)
    history: list[dict[str, float]] = []
    diverged_at: int | None = None
    constant_lr = is_constant(spec)
    show = sys.stderr.isatty() if progress is None else progress
    model.train()

    # dropout draws from torch's global generators: seeded for the run, then restored
    with (
        forked_rng(device, spec.seed),
        _progress(show, spec.epochs) as advance,
        _ended(callbacks, state),
    ):
        for cb in callbacks:
            cb.on_train_start(state)
        for epoch in range(spec.epochs):
            state.epoch = epoch
            order = (
                torch.randperm(n, generator=generator, device="cpu").to(device)
                if batch < n
                else None
            )
            sum_loss = 0.0
            correct: list[torch.Tensor] = []
            for i in range(steps_per_epoch):
                if order is None:
                    xb, yb = x, y
                else:
                    idx = order[i * batch : (i + 1) * batch]
                    xb, yb = x[idx], y[idx]
                if not constant_lr:
                    lr = lr_at(spec, state.step, steps_per_epoch)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                out = model(xb)
                if train_mask is not None:
                    out, yb = out[train_mask], yb[train_mask]
                batch_loss = loss(out, yb)
                value = batch_loss.item()
                if not math.isfinite(value):
                    diverged_at = state.step
                    break
                # Techniques may add terms to the objective; train_loss reports the task loss.
                objective = batch_loss
                for cb in callbacks:
                    term = cb.loss_term(state, xb, yb, out)
                    if term is not None:
                        objective = objective + term
                if objective is not batch_loss and not math.isfinite(objective.item()):
                    diverged_at = state.step
                    break
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                for cb in callbacks:
                    cb.on_after_backward(state)
                if spec.grad_clip > 0:
                    norm = nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
                    if not torch.isfinite(norm):
                        diverged_at = state.step
                        break
                optimizer.step()
                state.step += 1
                state.loss = value
                sum_loss += value * len(yb)
                if classify:
                    correct.append((out.detach().argmax(1) == yb).sum())
                for cb in callbacks:
                    cb.on_step_end(state)
                if state.stop_reason:
                    break
            if diverged_at is None and not _finite_params(model):
                diverged_at = state.step
            if diverged_at is not None or state.stop_reason:
                break
            row = {
                "epoch": float(epoch + 1),
                "step": float(state.step),
                "lr": float(optimizer.param_groups[0]["lr"]),
                "train_loss": sum_loss / n,
            }
            if classify:
                row["train_accuracy"] = int(torch.stack(correct).sum()) / n
            last = epoch + 1 == spec.epochs
            if last or (spec.eval_every and (epoch + 1) % spec.eval_every == 0):
                for part in ("val", "test"):
                    split = (*data.split(part), loss, classify, data.mask(part))
                    for k, v in evaluate(model, *split).items():
                        row[f"{part}_{k}"] = v
            history.append(row)
            for cb in callbacks:
                cb.on_epoch_end(state, row)
            advance(row)

    metrics: dict[str, float] = {}
    if diverged_at is None:
        # The last epoch already evaluated val and test on these very weights.
        last_row = history[-1] if history else {}
        for part in ("train", "val", "test"):
            done = {k: v for k, v in last_row.items() if k.startswith(f"{part}_")}
            if part == "train" or not last_row or state.stop_reason:
                split = (*data.split(part), loss, classify, data.mask(part))
                done = {f"{part}_{k}": v for k, v in evaluate(model, *split).items()}
            metrics.update(done)
        if not all(math.isfinite(v) for v in metrics.values()):
            diverged_at = state.step
    run_state = RunState.COMPLETE if diverged_at is None else RunState.DIVERGED
    error = (
        "" if diverged_at is None else f"loss or parameters became NaN/inf at step {diverged_at}"
    )
    if diverged_at is None and state.stop_reason:
        run_state, error = RunState.STOPPED, state.stop_reason
    result = TrainResult(
        state=run_state,
        metrics=metrics,
        history=tuple(history),
        steps=state.step,
        seconds=time.perf_counter() - start,
        spec=run_spec,
        diverged_step=diverged_at,
        error=error,
        model=model,
    )
    feed.finish(result.metrics, run_state.value)
    return result


def run(
    spec: RunSpec,
    *,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    loggers: Sequence[Logger] = (),
) -> TrainResult:
    """Load the data, build the model and train it: the whole run a spec describes. The network
    is built on the host (the same weights on every device) and trains on
    ``spec.train.device`` (``auto``: CUDA when available, else the CPU)."""
    device = resolve_device(spec.train.device)
    data = load_data(spec.data)
    model = build_model(
        spec.arch,
        in_shape=data.in_shape,
        out_dim=data.out_dim,
        seed=spec.train.seed,
        graph=data.edge_index,
    ).to(device)
    return fit(
        model,
        data,
        spec.train,
        callbacks=callbacks,
        progress=progress,
        run_spec=spec,
        loggers=loggers,
    )


@contextlib.contextmanager
def _ended(callbacks: Sequence[Callback], state: TrainState) -> Iterator[None]:
    """Call every callback's ``on_train_end``, also when the loop stopped early or raised."""
    try:
        yield
    finally:
        for cb in callbacks:
            cb.on_train_end(state)


def _finite_params(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


@contextlib.contextmanager
def _progress(show: bool, epochs: int):  # type: ignore[no-untyped-def]
    if not show:
        yield lambda row: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task("train", total=epochs, info="")

        def advance(row: dict[str, float]) -> None:
            info = f"loss {row['train_loss']:.4f}"
            if "val_accuracy" in row:
                info += f"  val acc {row['val_accuracy']:.3f}"
            bar.update(task, advance=1, info=info)

        yield advance
