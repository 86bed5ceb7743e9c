"""``DepthlabTrainerCallback``: the verdict inside a HuggingFace ``Trainer`` run
(``pip install depthlab[hf]``).

::

    trainer = Trainer(model, args, train_dataset=ds, callbacks=[DepthlabTrainerCallback()])

Where each piece of evidence comes from, robustly, whatever ``logging_steps`` is:

- **the loss**: a forward hook on the model reads ``output.loss`` of every training forward
  pass (the model in training mode, gradients on; evaluation passes are not counted) — the loss
  a HF model computes when the batch has ``labels``, which is what the Trainer minimises unless
  ``compute_loss`` is overridden. The mean over a step's micro-batches is that step's loss. A
  model or trainer whose forward returns no ``loss`` falls back to the trainer's logged
  ``loss`` (each logged value stands for the steps since the previous log, so set
  ``logging_steps`` small);
- **the labels** (the baseline: the entropy of their frequencies) from the same hook's
  ``labels`` keyword;
- **the gradient norm** in ``on_pre_optimizer_step``, after the Trainer's clipping to
  ``max_grad_norm``: its finiteness is what matters (a NaN/inf gradient stays NaN after
  clipping);
- **the setup** from the Trainer's optimizer (its ``initial_lr`` under the scheduler), the budget
  from ``state.max_steps`` and the warm-up from ``args.get_warmup_steps``;
- **theory**: at ``on_train_begin`` the network is diagnosed on the first samples of the train
  dataset, collated by the train dataloader's own collator (no batch is drawn from the loader,
  no random number consumed), through a view of the model whose forward returns ``.logits``.

On a decided failure named in ``stop_on`` it sets ``control.should_training_stop``. Whenever the
engine looks, a ``depthlab/*`` entry goes into ``state.log_history`` (and ``trainer_state.json``);
at the end the report is written to ``<output_dir>/depthlab``. Anything that goes wrong inside
is one warning and the run goes on unwatched.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthlab._optional import require
from depthlab.watch.feed import inputs_of, labels_of, stop_agreed
from depthlab.watch.monitor import STOP_ON, Monitor, norm_parts

TrainerCallback = require("transformers", "DepthlabTrainerCallback").TrainerCallback

log = logging.getLogger("depthlab.watch")


class _Logits(nn.Module):
    """A HF model seen by the probes: ``forward(x)`` is ``model(**{key: x}).logits``."""

    def __init__(self, model: nn.Module, key: str | None) -> None:
        super().__init__()
        self.model = model
        self.key = key

    def forward(self, x: torch.Tensor) -> Any:
        out = self.model(**{self.key: x}) if self.key else self.model(x)
        return getattr(out, "logits", out)


class DepthlabTrainerCallback(TrainerCallback):  # type: ignore[misc,valid-type]
    """See the module doc. ``every_n_steps``: optimizer steps between per-layer statistics
    (0: none); ``diagnose``: the diagnosis at the start; ``samples``: how many train samples it
    looks at; ``report``: write the report at the end."""

    def __init__(
        self,
        stop_on: tuple[str, ...] = STOP_ON,
        every_n_steps: int = 100,
        *,
        diagnose: bool = True,
        samples: int = 64,
        baseline_loss: float | None = None,
        report: bool = True,
    ) -> None:
        self.stop_on = stop_on
        self.every_n_steps = every_n_steps
        self.diagnose = diagnose
        self.samples = samples
        self.baseline_loss = baseline_loss
        self.write_report = report
        self.monitor: Monitor | None = None
        self.report_path: Path | None = None
        self._hook: Any = None
        self._losses: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._grad_norm: torch.Tensor | None = None
        self._fed = 0  # steps given to the monitor

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        budget = int(state.max_steps or 0)
        if model is None or optimizer is None or budget < 1:
            log.info("depthlab: no model, optimizer or step budget; the run is not watched")
            return
        self.monitor = Monitor(
            model,
            optimizer,
            budget,
            every=self.every_n_steps,
            baseline_loss=self.baseline_loss,
            stop_on=self.stop_on,
            batch_size=args.per_device_train_batch_size * args.gradient_accumulation_steps,
            warmup_steps=args.get_warmup_steps(budget),
            name=type(model).__name__,
        )
        self._fed = state.global_step
        try:
            self._hook = model.register_forward_hook(self._on_forward, with_kwargs=True)
            if self.diagnose:
                self._diagnose(model, kwargs.get("train_dataloader"))
        except Exception as exc:  # noqa: BLE001 - the run goes on unwatched
            self.monitor.go_passive(exc)

    def _diagnose(self, model: nn.Module, loader: Any) -> None:
        assert self.monitor is not None
        dataset = getattr(loader, "dataset", None)
        collate = getattr(loader, "collate_fn", None)
        if dataset is None or collate is None or not hasattr(dataset, "__getitem__"):
            log.info("depthlab: the train dataset is not indexable; no diagnosis at init")
            return
        n = min(self.samples, len(dataset))
        batch = collate([dataset[i] for i in range(n)])
        x, key = inputs_of(batch)
        y = labels_of(batch)
        if x is None or y is None:
            log.info("depthlab: no inputs and labels in the train samples; no diagnosis at init")
            return
        device = next(model.parameters()).device
        self.monitor.diagnose(x.to(device), y.to(device), model=_Logits(model, key))

    def _on_forward(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if not module.training or not torch.is_grad_enabled():
            return
        loss = getattr(output, "loss", None)
        if loss is None and isinstance(output, dict):
            loss = output.get("loss")
        if isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach())
        labels = kwargs.get("labels")
        if isinstance(labels, torch.Tensor) and self.monitor and self.monitor.steps < 64:
            self._labels.append(labels.detach())

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        mon, model = self.monitor, kwargs.get("model")
        if mon is None or mon.passive or model is None:
            return
        try:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            self._grad_norm = norm_parts(grads)
        except Exception as exc:  # noqa: BLE001 - the run goes on unwatched
            mon.go_passive(exc)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        mon = self.monitor
        if mon is None or mon.passive or not self._losses:
            return control  # no loss seen by the hook: on_log feeds the logged loss instead
        losses, self._losses = self._losses, []
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        self._feed(state, control, loss, self._take_labels())
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
        mon = self.monitor
        if mon is None or mon.passive or not logs or "loss" not in logs:
            return control
        # Fallback: the forward pass gave no loss; the logged mean stands for each step since.
        while self._fed < state.global_step and not self._losses:
            self._feed(state, control, float(logs["loss"]), None)
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        mon = self.monitor
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if mon is None:
            return
        mon.close()
        log.info("depthlab: verdict %s (P(trains) = %.2f)", mon.verdict, mon.p_trains)
        if self.write_report and state.is_world_process_zero:
            try:
                self.report_path = mon.report(Path(args.output_dir) / "depthlab").parent
            except Exception as exc:  # noqa: BLE001 - a report that cannot be written: a warning
                mon.go_passive(exc)

    # ------------------------------------------------------------------ inside
    def _take_labels(self) -> dict[str, torch.Tensor] | None:
        labels, self._labels = self._labels, []
        if not labels:
            return None
        return {
            "labels": labels[0] if len(labels) == 1 else torch.cat([t.reshape(-1) for t in labels])
        }

    def _feed(self, state: Any, control: Any, loss: torch.Tensor | float, batch: Any) -> None:
        mon = self.monitor
        assert mon is not None
        try:
            self._step(state, control, loss, batch)
        except Exception as exc:  # noqa: BLE001 - the run goes on unwatched
            mon.go_passive(exc)

    def _step(self, state: Any, control: Any, loss: torch.Tensor | float, batch: Any) -> None:
        mon = self.monitor
        assert mon is not None
        news = mon.step(loss, batch, grad_norm=self._grad_norm)
        self._grad_norm = None
        self._fed += 1
        device = next(mon.model.parameters()).device
        stop = stop_agreed(mon.should_stop, mon.steps - 1, mon.engine.cap, mon.every, device)
        if news or stop:
            entry: dict[str, Any] = {f"depthlab/{k}": v for k, v in mon.metrics().items()}
            entry["depthlab/verdict"] = mon.verdict
            entry["step"] = state.global_step
            state.log_history.append(entry)
        if stop and not control.should_training_stop:
            log.warning(
                "depthlab: stopping the run at step %d of %d: %s (P(trains) = %.2f)",
                mon.steps,
                mon.setup.budget_steps,
                mon.verdict,
                mon.p_trains if math.isfinite(mon.p_trains) else 0.0,
            )
            control.should_training_stop = True
