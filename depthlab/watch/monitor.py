"""``Monitor``: the verdict and per-layer statistics of a plain PyTorch training loop, live.

::

    mon = dl.Monitor(model, optimizer, budget_steps=len(loader) * epochs)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        mon.step(loss, (x, y))
        if mon.should_stop:
            break
    mon.report("watch/")      # watch.json, curve.png, index.html

Each ``step`` hands the verdict engine (``depthlab.diagnosis.engine``) the evidence the trial
would give it — the minibatch loss and the global gradient norm ‖∇_θ L‖₂ — from the real run,
until the engine is done (decided, or past its cap at 16 % of the budget); afterwards the loss
is read every ``every`` steps only, to catch a later divergence. The best constant predictor's
loss (the engine's baseline) comes from the labels of the batches passed to ``step`` before the
first checkpoint, or ``baseline_loss``; without either, from the first losses.

Cost: reading a loss that lives on an accelerator waits for the step to finish. While the engine
watches, the loss and the gradient norm of such a run stay on the device and are read back
together every :data:`FLUSH` steps, at each of the engine's checkpoints and whenever a result
is asked for (``decision``, ``verdict``, ``should_stop``, ``to_dict``): one synchronisation per
read, not per step. ``should_stop`` is therefore up to date at those reads; a CPU run is read at
every step. Per-layer statistics (``depthlab.watch.layerstats``)
add hooks for one step in ``every`` and copy the layers' weights once then.

The monitor never breaks the training it watches: an internal error is one ``RuntimeWarning``
and the monitor goes passive (``should_stop`` stays ``False``). It draws no random number,
changes no parameter, gradient or optimizer state, and its memory is bounded: a run's losses
are identical, bit for bit, with and without it.
"""

from __future__ import annotations

import logging
import math
import statistics
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthlab.diagnosis.engine import Decision, Setup, VerdictEngine
from depthlab.exceptions import DepthlabError
from depthlab.watch.feed import Baseline, labels_of, setup_of, theory_at_init
from depthlab.watch.layerstats import LayerStats

log = logging.getLogger("depthlab.watch")

#: Verdicts that are not a failure.
NOT_FAILURES = ("trainable", "undecided")
#: ``stop_on`` entries: ``diverges`` (a NaN/inf loss or gradient) and ``won't train`` (any
#: decided failure cause); a cause's own name (``vanishing gradients``) stops on that one only.
STOP_ON = ("diverges", "won't train")
#: Losses kept for the report after the engine is done (thinned past this).
MAX_TRACE = 2048
#: Steps whose loss and gradient norm an accelerator keeps before one read brings them back.
FLUSH = 32


class Monitor:
    """Watches one training run (see the module doc).

    ``budget_steps``: the optimizer steps the run is planned for; ``every``: steps between
    per-layer statistics (0: none); ``baseline_loss``: the best constant predictor's loss, if
    known; ``stop_on``: the verdicts that make ``should_stop`` true; ``diagnose_batch``: an
    ``(x, y)`` pair to diagnose the network on now, at initialisation (theory names a failure's
    cause and adds to P(trains)); ``theory``: such a diagnosis already made.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        budget_steps: int,
        *,
        every: int = 100,
        baseline_loss: float | None = None,
        stop_on: tuple[str, ...] = STOP_ON,
        diagnose_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
        theory: dict[str, Any] | None = None,
        batch_size: int | None = None,
        warmup_steps: int = 0,
        name: str = "model",
    ) -> None:
        if not isinstance(budget_steps, int) or budget_steps < 1:
            raise DepthlabError(f"budget_steps {budget_steps!r} is not valid; expected >= 1")
        if every < 0:
            raise DepthlabError(f"every {every!r} is not valid; expected >= 0 (0: no layer stats)")
        if isinstance(stop_on, str):
            stop_on = (stop_on,)
        self.model = model
        self.optimizer = optimizer
        self.every = every
        self.stop_on = tuple(stop_on)
        self.name = name
        self.problems: list[str] = []
        self.theory: dict[str, Any] | None = theory
        self._passive = False
        self._watching = True  # the engine still looks (not done, no divergence)
        self._news = False
        self._step = 0
        self._diverged_at: int | None = None
        self._user_baseline = baseline_loss
        self._baseline = Baseline()
        self._pending: list[tuple[int, float, float | None]] = []
        self._queued: list[tuple[int, torch.Tensor]] = []  # (step, [loss, ‖∇θL‖]) on the device
        #: Keep losses on their device and read them every FLUSH steps (``None``: on
        #: accelerators only, the default; a CPU read costs no synchronisation).
        self.defer_reads: bool | None = None
        self._trace: list[tuple[int, float]] = []
        self._trace_stride = 1
        self._params = [p for p in model.parameters() if p.requires_grad]
        self.setup: Setup = setup_of(
            optimizer, budget_steps, batch_size=batch_size, warmup_steps=warmup_steps
        )
        self.engine = self._new_engine(baseline_loss)
        self._first_look = self.engine.checkpoint_steps[0]
        self.stats = LayerStats(model) if every else None
        self._guard(self._start, diagnose_batch)

    # ------------------------------------------------------------------ the run's side
    def step(
        self,
        loss: torch.Tensor | float,
        batch: Any = None,
        *,
        grad_norm: torch.Tensor | float | None = None,
    ) -> bool:
        """Record the optimizer step just taken: its minibatch ``loss`` (a tensor or a float)
        and, optionally, its ``batch`` (labels give the baseline; see the module doc) and the
        global gradient norm (when not given, read from the parameters' ``.grad``). Returns
        whether the verdict was looked at or layer statistics taken (something to log)."""
        self._news = False
        s, every = self._step, self.every
        # the common case after the engine is done: nothing to read at this step
        if not self._passive and (
            self._watching or (every and (s % every == 0 or (s + 1) % every == 0))
        ):
            self._guard(self._observe, loss, batch, grad_norm)
        self._step += 1
        return self._news

    def _sync(self) -> None:
        """Bring queued steps in before a result is read."""
        if self._queued:
            self._guard(self._flush)

    @property
    def decision(self) -> Decision:
        """The engine's latest decision."""
        self._sync()
        return self.engine.decision

    @property
    def verdict(self) -> str:
        """``trainable``, a failure's cause, ``diverges`` or, until the engine decides,
        ``undecided`` (its provisional lean is in ``decision``)."""
        self._sync()
        if self._diverged_at is not None:
            return "diverges"
        return self.decision.verdict if self.decision.decided else "undecided"

    @property
    def p_trains(self) -> float:
        self._sync()
        return 0.0 if self._diverged_at is not None else self.decision.p_trains

    @property
    def decided(self) -> bool:
        self._sync()
        return self._diverged_at is not None or self.decision.decided

    @property
    def should_stop(self) -> bool:
        """A decided failure named in ``stop_on`` (never while passive), as of the last read:
        cheap enough to ask after every step, it does not bring queued steps in (see the module
        doc: on an accelerator that happens every ``FLUSH`` steps and at each checkpoint)."""
        decision = self.engine.decision
        if self._passive or not (self._diverged_at is not None or decision.decided):
            return False
        verdict = "diverges" if self._diverged_at is not None else decision.verdict
        if verdict in NOT_FAILURES:
            return False
        if verdict == "diverges":
            return "diverges" in self.stop_on
        return "won't train" in self.stop_on or verdict in self.stop_on

    @property
    def steps(self) -> int:
        return self._step

    @property
    def passive(self) -> bool:
        return self._passive

    # ------------------------------------------------------------------ inside
    def _new_engine(self, baseline: float | None) -> VerdictEngine:
        return VerdictEngine(self.setup, theory=self.theory, baseline_loss=baseline)

    def _start(self, diagnose_batch: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        if diagnose_batch is not None and self.theory is None:
            x, y = diagnose_batch
            self._diagnose(x, y, False)
        if self.stats is not None:
            self.stats.arm()  # step 0 is a statistics step: the network as it starts

    def diagnose(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        quiet_skip: bool = True,
        model: nn.Module | None = None,
    ) -> None:
        """Diagnose the network (or ``model``, a view of it whose forward returns a tensor) on
        ``(x, y)`` now, at initialisation, and give the result to the engine as theory. A model
        the probes do not apply to is logged (or, with ``quiet_skip=False``, warned about);
        probes that raise are one warning; anything else that goes wrong turns the monitor
        passive (one warning)."""
        if self._step or self._passive:
            return
        self._guard(self._diagnose, x, y, quiet_skip, model)

    def _diagnose(
        self, x: torch.Tensor, y: torch.Tensor, quiet_skip: bool, model: nn.Module | None = None
    ) -> None:
        net = self.model if model is None else model
        result, problem = theory_at_init(net, x, y, self.setup, name=self.name)
        if result is not None:
            result.pop("trial", None)
            self.theory = result
            self.engine = self._new_engine(self._user_baseline)
        if problem:
            self.problems.append(problem)
            if result is None and quiet_skip:
                log.info("depthlab: %s", problem)
            else:
                _warn(f"depthlab: {problem}")

    def _observe(
        self, loss: torch.Tensor | float, batch: Any, grad_norm: torch.Tensor | float | None
    ) -> None:
        step = self._step
        engine = self.engine
        watching = not engine.done and self._diverged_at is None
        stats_now = self.stats is not None and self.stats.armed
        if watching and self._user_baseline is None and step < self._first_look:
            y = labels_of(batch)
            if y is not None:
                self._baseline.add(y)
        if (
            watching
            and isinstance(loss, torch.Tensor)
            and (loss.device.type != "cpu" if self.defer_reads is None else self.defer_reads)
            and (grad_norm is None or isinstance(grad_norm, torch.Tensor))
        ):
            # an accelerator's loss stays there: read back with others, not at every step
            self._queued.append((step, self._on_device(loss, grad_norm)))
            if (
                len(self._queued) >= FLUSH
                or engine.due(step)
                or step + 1 >= engine.cap
                or step == self._first_look - 1
            ):
                self._flush()
        elif watching or stats_now or (self.every and step % self.every == 0):
            if self._queued:
                self._flush()
            value, norm = self._read(loss, with_norm=watching, grad_norm=grad_norm)
            self._after_read(step, value, norm, watching)
        if self.stats is not None:
            if stats_now:
                self.stats.collect(step)
                self._news = True
            nxt = step + 1
            if self.every and (nxt % self.every == 0) and self._diverged_at is None:
                self.stats.arm()

    def _after_read(self, step: int, value: float, norm: float | None, watching: bool) -> None:
        self._trace_add(step, value)
        if watching and not self.engine.done and self._diverged_at is None:
            self._feed(step, value, norm)
        if not (math.isfinite(value) and (norm is None or math.isfinite(norm))):
            self._news |= self._diverged_at is None
            self._diverged_at = step if self._diverged_at is None else self._diverged_at
        self._watching = not self.engine.done and self._diverged_at is None

    def _on_device(self, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> torch.Tensor:
        """``[loss, ‖∇θL‖₂]`` as a float32 pair on the loss's device, without a read."""
        parts = grad_norm
        if parts is None:
            parts = norm_parts([p.grad for p in self._params if p.grad is not None])
        value = loss.detach().float().reshape(1)
        if parts is None:
            return torch.cat([value, torch.full_like(value, -1.0)])  # -1: no gradient
        total = parts.detach().float().reshape(-1).to(value.device).square().sum().sqrt()
        return torch.cat([value, total.reshape(1)])

    def _flush(self) -> None:
        """Read the queued steps back in one transfer and hand them on, in order."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        rows = torch.stack([t for _, t in queued]).tolist()
        for (step, _), (value, norm) in zip(queued, rows, strict=True):
            self._after_read(step, value, None if norm == -1.0 else norm, True)
            if not self._watching:
                break

    def _feed(self, step: int, value: float, norm: float | None) -> None:
        if step < self._first_look:
            self._pending.append((step, value, norm))
            if step == self._first_look - 1 and self._user_baseline is None:
                # The engine looks first here: give it the labels' baseline, then the curve.
                base = self._baseline.value()
                if base is not None and not self.engine.decision.decided:
                    self.engine = self._new_engine(base)
                    for s, v, n in self._pending[:-1]:
                        self.engine.observe(s, v, grad_norm=n)
        decision = self.engine.observe(step, value, grad_norm=norm)
        if step >= self._first_look - 1:
            self._pending = []
        if decision is not None:
            self._news = True
            log.info(
                "depthlab: step %d/%d: %s (P(trains) = %.2f%s)",
                step + 1,
                self.setup.budget_steps,
                decision.verdict,
                decision.p_trains,
                ", decided" if decision.decided else "",
            )

    def _read(
        self,
        loss: torch.Tensor | float,
        *,
        with_norm: bool,
        grad_norm: torch.Tensor | float | None = None,
    ) -> tuple[float, float | None]:
        """The loss as a float and, with ``with_norm``, ‖∇_θ L‖₂ (from ``grad_norm``, a norm or
        ``norm_parts``; else from the gradients in ``.grad``): one device-to-host transfer. The
        per-tensor norms come back and are summed on the host (fewer kernel launches than a
        fused total norm, which matters for small networks)."""
        parts: torch.Tensor | float | None = grad_norm if with_norm else None
        if with_norm and parts is None:
            parts = norm_parts([p.grad for p in self._params if p.grad is not None])
        if not isinstance(loss, torch.Tensor):
            return float(loss), None if parts is None else _total(parts)
        value = loss.detach().float().reshape(1)
        if parts is None:
            return float(value), None
        if not isinstance(parts, torch.Tensor):
            return float(value), float(parts)
        both = torch.cat([value, parts.detach().float().reshape(-1).to(value.device)]).tolist()
        return float(both[0]), math.sqrt(math.fsum(x * x for x in both[1:]))

    def _trace_add(self, step: int, value: float) -> None:
        if step % self._trace_stride:
            return
        self._trace.append((step, value))
        if len(self._trace) > MAX_TRACE:
            self._trace = self._trace[::2]
            self._trace_stride *= 2

    def _guard(self, fn: Any, *args: Any) -> None:
        """Run ``fn``; any exception turns the monitor passive with one warning."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the user's training must go on
            self.go_passive(exc)

    def go_passive(self, exc: BaseException) -> None:
        from depthlab.diagnosis.run import one_line

        if self.stats is not None:
            try:
                self.stats.disarm()
            except Exception:  # noqa: BLE001, S110 - already failing; the hooks are best effort
                pass
        if not self._passive:
            self._passive = True
            self.problems.append(f"stopped watching: {one_line(exc)}")
            _warn(f"depthlab: the monitor stopped watching ({one_line(exc)}); training goes on")

    def close(self) -> None:
        """Remove every hook (the run is over)."""
        if self.stats is not None:
            self.stats.disarm()

    # ------------------------------------------------------------------ results
    def metrics(self) -> dict[str, float]:
        """Numbers for a logger: ``p_trains``, ``predicted_progress``, ``decided``, ``stop``
        and, from the latest layer statistics, the median and largest update/weight ratio over
        the layers and the last layer's signal second moment over the first's."""
        self._sync()
        d = self.decision
        out = {
            "p_trains": float(self.p_trains),
            "predicted_progress": 0.0 if self._diverged_at is not None else d.predicted_progress,
            "decided": float(self.decided),
            "stop": float(self.should_stop),
        }
        rows = self.stats.last() if self.stats is not None else {}
        updates = [r["update_ratio"] for r in rows.values() if r["update_ratio"] is not None]
        if updates:
            out["update_ratio_median"] = float(statistics.median(updates))
            out["update_ratio_max"] = max(updates)
        signals = [r["signal"] for r in rows.values() if r["signal"] is not None]
        if len(signals) >= 2 and signals[0] > 0:
            out["signal_last_over_first"] = signals[-1] / signals[0]
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything the monitor knows, JSON-able (``depthlab._json`` writes non-finite floats)."""
        self._sync()
        d = self.decision
        theory = self.theory or {}
        return {
            "verdict": self.verdict,
            "p_trains": self.p_trains,
            "predicted_progress": d.predicted_progress,
            "progress_interval": list(d.progress_interval),
            "decided": self.decided,
            "decided_by": "curve" if self._diverged_at is not None else d.decided_by,
            "decided_at_step": d.step if d.decided else None,
            "diverged_step": self._diverged_at,
            "should_stop": self.should_stop,
            "stop_on": list(self.stop_on),
            "steps": self._step,
            "budget_steps": self.setup.budget_steps,
            "setup": self.setup.to_dict(),
            "baseline_loss": self.engine.baseline_loss,
            "findings": [f.to_dict() for f in d.findings],
            "engine": self.engine.curve(),
            "loss_trace": {
                "step": [s for s, _ in self._trace],
                "loss": [v for _, v in self._trace],
            },
            "layers": self.stats.to_dict() if self.stats is not None else None,
            "theory": {k: v for k, v in theory.items() if k != "architecture"} or None,
            "problems": list(self.problems),
            "passive": self._passive,
        }

    def report(self, path: str | Path) -> Path:
        """Write ``watch.json``, ``curve.png`` and ``index.html`` into the directory ``path``;
        returns the page's path."""
        from depthlab.watch.report import write_watch_report

        return write_watch_report(self.to_dict(), path, title=f"depthlab watch: {self.name}")


def norm_parts(grads: list[torch.Tensor]) -> torch.Tensor | None:
    """The 2-norms of ``grads`` as one float32 vector whose own norm is ‖∇_θ L‖₂ (the
    gradients on one device and of one dtype; otherwise the total norm itself)."""
    if not grads:
        return None
    if len({(g.device, g.dtype) for g in grads}) == 1:
        return torch.stack(torch._foreach_norm(grads)).float()
    return torch.nn.utils.get_total_norm(grads).float().reshape(1)


def _total(parts: torch.Tensor | float) -> float:
    if isinstance(parts, torch.Tensor):
        return math.sqrt(math.fsum(x * x for x in parts.reshape(-1).tolist()))
    return float(parts)


def _warn(message: str) -> None:
    """One ``RuntimeWarning``; where warnings are turned into errors, a log line instead (the
    run being watched must not end because of its observer)."""
    try:
        warnings.warn(message, RuntimeWarning, stacklevel=4)
    except Exception:  # noqa: BLE001 - `-W error` turned it into an exception
        log.warning(message)
