"""``WatchCallback``: depthlab's own trainer (``depthlab.train.fit``) watched by a ``Monitor``.

The verdict is made on the run's own first steps, no step thrown away: a run decided *won't
train* (or diverging) is ended after that step and comes out ``STOPPED``, its reason in
``error`` and the verdict in :meth:`WatchCallback.summary`; a run decided *trainable* simply
goes on. ``depthlab train --watch`` and sweeps with ``watch: true`` use it.

The network is diagnosed at the start on the first 256 training samples with the probes that do
not train (``depthlab.watch.feed.THEORY_PROBES``); the baseline is the trial's, the best constant
predictor's loss on the whole training split (``depthlab.probes.trial.baseline_loss``).
"""

from __future__ import annotations

import math
from typing import Any

from depthlab.train.callbacks import Callback, TrainState
from depthlab.watch.monitor import STOP_ON, Monitor


class WatchCallback(Callback):
    """Watch a ``fit`` run; ``every``: steps between per-layer statistics (0: none);
    ``diagnose``: the diagnosis at the start (theory for the verdict)."""

    def __init__(
        self, *, stop_on: tuple[str, ...] = STOP_ON, every: int = 0, diagnose: bool = True
    ) -> None:
        self.stop_on = stop_on
        self.every = every
        self.diagnose = diagnose
        self.monitor: Monitor | None = None

    def on_train_start(self, state: TrainState) -> None:
        from depthlab.probes import ProbeBatch
        from depthlab.probes.trial import baseline_loss
        from depthlab.train.loop import loss_name

        spec, data = state.spec, state.data
        mask = data.mask("train")
        graph = mask is not None
        n = int(mask.sum()) if mask is not None else len(data.y_train)
        batch = n if spec.batch_size == 0 or graph else min(spec.batch_size, n)
        per_epoch = math.ceil(n / batch)
        lname = loss_name(spec, data)
        base = None
        if not graph:
            probe_batch = ProbeBatch.from_tensors(data.x_train, data.y_train, loss=lname)
            base = baseline_loss(probe_batch, data.out_dim)
        self.monitor = Monitor(
            state.model,
            state.optimizer,
            spec.epochs * per_epoch,
            every=self.every,
            baseline_loss=base,
            stop_on=self.stop_on,
            batch_size=batch,
            warmup_steps=round(spec.warmup_epochs * per_epoch),
            name=data.name,
        )
        if self.diagnose and not graph:
            self.monitor.diagnose(data.x_train[:256], data.y_train[:256])

    def on_step_end(self, state: TrainState) -> None:
        mon = self.monitor
        if mon is None:
            return
        mon.step(state.loss)
        if mon.should_stop and not state.stop_reason:
            state.stop_reason = (
                f"won't train: {mon.verdict} (P(trains) = {mon.p_trains:.2f}) after "
                f"{mon.steps} of {mon.setup.budget_steps} steps"
            )

    def on_train_end(self, state: TrainState) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def summary(self) -> dict[str, Any]:
        """The verdict as stored with the run: verdict, P(trains), when and by what it was
        decided, the findings, and where the engine looked."""
        if self.monitor is None:
            return {}
        full = self.monitor.to_dict()
        keep = (
            "verdict", "p_trains", "predicted_progress", "decided", "decided_by",
            "decided_at_step", "diverged_step", "should_stop", "steps", "budget_steps",
            "baseline_loss", "findings", "problems",
        )  # fmt: skip
        out = {k: full[k] for k in keep}
        out["looked"] = full["engine"]["looked"]
        return out
