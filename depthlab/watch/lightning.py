"""``DepthlabCallback``: the verdict inside a Lightning run (``pip install depthlab[lightning]``).

::

    trainer = L.Trainer(max_epochs=10, callbacks=[DepthlabCallback()])
    trainer.fit(model, train_loader)

- at the first training batch, before the first optimizer step, the network is diagnosed on that
  batch with the probes that do not train (the run itself is the trial); the setup is read from
  ``trainer.optimizers[0]`` and the budget from ``trainer.estimated_stepping_batches``;
- the global gradient norm is taken in ``on_before_optimizer_step`` (after gradient
  accumulation, before clipping), the loss from the ``training_step`` output in
  ``on_train_batch_end`` — training hooks, never under inference mode; with gradient
  accumulation, the micro-batches' mean loss is one step's;
- ``depthlab/p_trains``, ``depthlab/predicted_progress``, ``depthlab/decided``,
  ``depthlab/stop`` and per-layer summaries go to the trainer's loggers whenever the engine
  looks or layer statistics are taken; the verdict is logged (``depthlab.watch`` logger);
- a decided failure named in ``stop_on`` sets ``trainer.should_stop``;
- at the end, ``watch.json``, ``curve.png`` and ``index.html`` are written to
  ``<log_dir>/depthlab`` (the trainer's ``log_dir``, else its ``default_root_dir``).

Anything that goes wrong inside is one warning and the run goes on unwatched.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from depthlab.watch.feed import inputs_of, labels_of, stop_agreed
from depthlab.watch.monitor import STOP_ON, Monitor, norm_parts

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - the standalone package, or nothing
    try:
        from pytorch_lightning import Callback  # type: ignore[assignment]
    except ImportError:
        from depthlab._optional import require

        require("lightning", "DepthlabCallback")
        raise

log = logging.getLogger("depthlab.watch")


class DepthlabCallback(Callback):  # type: ignore[misc]
    """See the module doc. ``every_n_steps``: optimizer steps between per-layer statistics
    (0: none); ``diagnose``: the diagnosis at the first batch; ``report``: write the report
    into the log directory at the end."""

    def __init__(
        self,
        stop_on: tuple[str, ...] = STOP_ON,
        every_n_steps: int = 100,
        *,
        diagnose: bool = True,
        baseline_loss: float | None = None,
        report: bool = True,
    ) -> None:
        super().__init__()
        self.stop_on = stop_on
        self.every_n_steps = every_n_steps
        self.diagnose = diagnose
        self.baseline_loss = baseline_loss
        self.write_report = report
        self.monitor: Monitor | None = None
        self.report_path: Path | None = None
        self._losses: list[torch.Tensor] = []
        self._grad_norm: torch.Tensor | None = None
        self._last_step = 0
        self._diagnosed = False

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        budget = trainer.estimated_stepping_batches
        if not trainer.optimizers or not math.isfinite(float(budget)) or budget < 1:
            log.info("depthlab: no optimizer or no finite step budget; the run is not watched")
            return
        self.monitor = Monitor(
            pl_module,
            trainer.optimizers[0],
            int(budget),
            every=self.every_n_steps,
            baseline_loss=self.baseline_loss,
            stop_on=self.stop_on,
            name=type(pl_module).__name__,
        )
        self._last_step = trainer.global_step

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        mon = self.monitor
        if mon is None or self._diagnosed or not self.diagnose:
            return
        self._diagnosed = True
        x, _ = inputs_of(batch)
        y = labels_of(batch)
        if x is None or y is None:
            log.info("depthlab: no (inputs, labels) in the first batch; no diagnosis at init")
            return
        with torch.inference_mode(False), torch.enable_grad():
            mon.diagnose(x, y)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        mon = self.monitor
        if mon is None or mon.passive:
            return
        try:
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            self._grad_norm = norm_parts(grads)
        except Exception as exc:  # noqa: BLE001 - the run goes on unwatched
            mon.go_passive(exc)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        mon = self.monitor
        if mon is None or mon.passive:
            return
        try:
            self._after_batch(trainer, pl_module, outputs, batch)
        except Exception as exc:  # noqa: BLE001 - the run goes on unwatched
            mon.go_passive(exc)

    def _after_batch(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any) -> None:
        mon = self.monitor
        assert mon is not None
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach())
        if trainer.global_step == self._last_step or not self._losses:
            return  # no optimizer step yet (gradient accumulation)
        self._last_step = trainer.global_step
        step_loss = self._losses[0] if len(self._losses) == 1 else torch.stack(self._losses).mean()
        self._losses = []
        news = mon.step(step_loss, batch, grad_norm=self._grad_norm)
        self._grad_norm = None
        stop = stop_agreed(
            mon.should_stop,
            mon.steps - 1,
            mon.engine.cap,
            self.every_n_steps,
            pl_module.device,
        )
        if news or stop:
            self._log(trainer)
        if stop and not trainer.should_stop:
            log.warning(
                "depthlab: stopping the run at step %d of %d: %s (P(trains) = %.2f)",
                mon.steps,
                mon.setup.budget_steps,
                mon.verdict,
                mon.p_trains,
            )
            trainer.should_stop = True

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        mon = self.monitor
        if mon is None:
            return
        mon.close()
        log.info("depthlab: verdict %s (P(trains) = %.2f)", mon.verdict, mon.p_trains)
        if self.write_report and trainer.is_global_zero:
            root = trainer.log_dir or trainer.default_root_dir
            try:
                self.report_path = mon.report(Path(root) / "depthlab").parent
            except Exception as exc:  # noqa: BLE001 - a report that cannot be written is a warning
                mon.go_passive(exc)

    # ------------------------------------------------------------------ logging
    def _log(self, trainer: Any) -> None:
        assert self.monitor is not None
        metrics = {f"depthlab/{k}": v for k, v in self.monitor.metrics().items()}
        for logger in trainer.loggers:
            try:
                logger.log_metrics(metrics, step=trainer.global_step)
            except Exception as exc:  # noqa: BLE001 - the run goes on unwatched
                self.monitor.go_passive(exc)
