"""The verdict engine: one object that reads a run's curve step by step and decides.

Two feeds drive it and neither knows how it decides:

- the ``trial`` probe trains a copy of the network for a few percent of the budget and calls
  :meth:`VerdictEngine.observe` after every step, stopping as soon as the decision is final;
- ``depthlab.watch`` (``Monitor``, the Lightning and HF Trainer callbacks) calls it from the
  user's real run, so the verdict costs almost nothing there.

The evidence is what both feeds have at every optimizer step: the minibatch loss and, when the
feed can give it cheaply, the global gradient norm ‖∇_θ L‖₂. Theory (the probes' results at
initialisation, ``theory``) names the cause of a failure and adds its features to P(trains);
it never needs the curve.

The engine looks at the curve at *checkpoints*: fractions of the budget (:data:`CHECKPOINTS`).
At each it computes P(trains) — the probability that the run gets at least halfway from chance
to a shallow reference net within its budget — and ``predicted_progress`` with an interval, and
decides when P is outside the undecided band. A loss that turns NaN/inf decides *diverges* at
once. Past the last checkpoint (the cap) an undecided run stays ``undecided`` with its P.

Memory is bounded: the engine keeps at most :data:`MAX_POINTS` step losses (the curve up to the
cap, then every k-th point), whatever the length of the run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from depthlab.diagnosis.verdict import WARNINGS, Finding, probability, rule_findings

#: Fractions of the budget at which the engine looks at the curve; the last one is the cap.
CHECKPOINTS: tuple[float, ...] = (0.01, 0.02, 0.04, 0.08, 0.16)
#: P(trains) inside this band at a checkpoint is not decisive.
UNDECIDED = (0.1, 0.9)
#: Losses kept at most (older points are thinned, never the whole history).
MAX_POINTS = 4096
#: Steps at the start and end of a window whose mean loss stands for the curve there.
WINDOW = 0.25


@dataclasses.dataclass(frozen=True)
class Setup:
    """The training setup the verdict is for."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    budget_steps: int = 1000
    batch_size: int = 64
    warmup_steps: int = 0

    @classmethod
    def from_mapping(cls, setup: Mapping[str, Any]) -> Setup:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: setup[k] for k in names if setup.get(k) is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the engine says after looking at the curve up to ``step``.

    ``verdict``: ``trainable``, a cause (``diverges``, ``no progress``, a theory rule's name,
    ``won't train in budget``) or ``undecided``; ``decided``: final (the feed may stop asking);
    ``predicted_progress``: the expected fraction of the way from chance to the reference at the
    end of the budget, with ``progress_interval`` (lo, hi); ``decided_by``: ``curve`` or
    ``theory``, whose evidence moved P the most."""

    verdict: str
    p_trains: float
    predicted_progress: float
    progress_interval: tuple[float, float]
    decided: bool
    decided_by: str
    step: int
    findings: tuple[Finding, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["findings"] = [f.to_dict() for f in self.findings]
        out["progress_interval"] = list(self.progress_interval)
        return out


@dataclasses.dataclass(frozen=True)
class Curve:
    """A reference curve: the shallow reference net's step losses under the same setup."""

    losses: tuple[float, ...]
    baseline_loss: float | None = None


class VerdictEngine:
    """Reads one run's curve step by step (see the module doc).

    ``theory``: the diagnosis's probe results at initialisation (or ``None``); ``baseline_loss``:
    the best constant predictor's loss on the data (``None``: the curve's first loss stands for
    it); ``reference``: the reference net's curve under the same setup, when known.
    """

    def __init__(
        self,
        setup: Setup | Mapping[str, Any],
        *,
        theory: Mapping[str, Any] | None = None,
        baseline_loss: float | None = None,
        reference: Curve | None = None,
        checkpoints: Sequence[float] = CHECKPOINTS,
    ) -> None:
        self.setup = setup if isinstance(setup, Setup) else Setup.from_mapping(setup)
        self.theory: Mapping[str, Any] = dict(theory or {})
        self.baseline_loss = baseline_loss
        self.reference = reference
        budget = max(int(self.setup.budget_steps), 1)
        steps = sorted({max(1, math.ceil(f * budget)) for f in checkpoints})
        self.checkpoint_steps: tuple[int, ...] = tuple(steps)
        self.cap = steps[-1]
        self._losses: list[float] = []
        self._stride = 1
        self._seen = 0
        self._grad_norms: list[float] = []
        self.looked: list[dict[str, Any]] = []
        self._diverged_at: int | None = None
        self._decision = self._judge(step=0)

    # ------------------------------------------------------------------ feeding
    def due(self, step: int) -> bool:
        """Whether the engine will look at the curve after optimizer step ``step`` (0-based)."""
        return step + 1 in self.checkpoint_steps

    def observe(self, step: int, loss: float, *, grad_norm: float | None = None) -> Decision | None:
        """Record the loss of optimizer step ``step`` (0-based); the new decision when the
        engine looked (a checkpoint, or a divergence), else ``None``. Once decided, further
        observations change nothing."""
        if self._decision.decided:
            return None
        self._seen = step + 1
        if not math.isfinite(loss) or (grad_norm is not None and not math.isfinite(grad_norm)):
            self._diverged_at = step
            self._decision = self._judge(step=step + 1)
            return self._decision
        if step % self._stride == 0:
            self._losses.append(float(loss))
            if grad_norm is not None:
                self._grad_norms.append(float(grad_norm))
            if len(self._losses) >= MAX_POINTS:
                self._losses, self._grad_norms = self._losses[::2], self._grad_norms[::2]
                self._stride *= 2
        if self.due(step):
            self._decision = self._judge(step=step + 1)
            return self._decision
        return None

    @property
    def decision(self) -> Decision:
        """The latest decision (theory alone before the first checkpoint)."""
        return self._decision

    @property
    def done(self) -> bool:
        """Decided, or past the cap: a trial stops here; a real run simply goes on."""
        return self._decision.decided or self._seen >= self.cap

    @property
    def steps_seen(self) -> int:
        return self._seen

    def curve(self) -> dict[str, Any]:
        """What the engine saw, for reports: the kept losses with their stride, and where it
        looked (step, P, predicted progress)."""
        return {
            "loss": list(self._losses),
            "grad_norm": list(self._grad_norms),
            "stride": self._stride,
            "looked": list(self.looked),
            "checkpoints": list(self.checkpoint_steps),
            "budget_steps": self.setup.budget_steps,
        }

    # ------------------------------------------------------------------ deciding
    def features(self) -> dict[str, Any]:
        """The curve's evidence, as the calibrated model's trial features."""
        losses = self._losses
        if not losses:
            return {}
        base = self.baseline_loss if self.baseline_loss and self.baseline_loss > 0 else losses[0]
        k = max(1, int(WINDOW * len(losses)))
        first, last = _mean(losses[:k]), _mean(losses[-k:])
        trial: dict[str, Any] = {
            "diverged": False,
            "steps": self._seen,
            "fraction_of_budget": self._seen / max(self.setup.budget_steps, 1),
            "baseline_loss": base,
            "improvement": (first - last) / base,
            "progress": (min(first, base) - last) / base,
            "loss_after_ratio": last / base,
        }
        if self.reference and self.reference.losses:
            ref = list(self.reference.losses[: len(losses) * self._stride : self._stride])
            rk = max(1, int(WINDOW * len(ref)))
            rbase = self.reference.baseline_loss or base
            r_first, r_last = _mean(ref[:rk]), _mean(ref[-rk:])
            trial["reference"] = {
                "diverged": False,
                "improvement": (r_first - r_last) / rbase,
                "progress": (min(r_first, rbase) - r_last) / rbase,
                "loss_after_ratio": r_last / rbase,
            }
        return trial

    def _judge(self, *, step: int) -> Decision:
        results = dict(self.theory)
        setup = self.setup.to_dict()
        if self._diverged_at is not None:
            results["trial"] = {
                "diverged": True,
                "diverged_step": self._diverged_at,
                "planned_steps": self.cap,
                "optimizer": self.setup.optimizer,
                "lr": self.setup.lr,
            }
        elif self._losses:
            results["trial"] = self.features()
        else:
            results.pop("trial", None)
        from depthlab.diagnosis.advice import Advice

        findings = [f for f in rule_findings(results, setup, Advice(results, setup))]
        if self._diverged_at is not None:
            return Decision("diverges", 0.0, 0.0, (0.0, 0.0), True, "curve", step, tuple(findings))
        p, parts = probability(results, setup)
        p = 0.5 if p is None else p
        causes = [f for f in findings if f.verdict not in WARNINGS]
        decided = bool(self._losses) and not (UNDECIDED[0] < p < UNDECIDED[1])
        if self._losses and not decided:
            # past the cap too: the curve did not tell within it, and the answer says so
            verdict = "undecided"
        elif p >= 0.5:
            verdict = "trainable"
        else:
            verdict = causes[0].verdict if causes else "won't train in budget"
        curve_part, theory_part = parts.get("trial", 0.0), parts.get("theory", 0.0)
        sign = 1.0 if p >= 0.5 else -1.0
        decided_by = (
            "curve" if self._losses and sign * curve_part >= sign * theory_part else "theory"
        )
        # Until a calibrated progress model exists, P stands for the progress expected.
        predicted = p
        width = 0.5 * (1.0 - abs(2 * p - 1))
        interval = (max(0.0, predicted - width), min(1.0, predicted + width))
        decision = Decision(
            verdict, p, predicted, interval, decided, decided_by, step, tuple(findings),
        )  # fmt: skip
        if self._losses:
            self.looked.append({"step": step, "p_trains": p, "predicted_progress": predicted})
        return decision


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)
