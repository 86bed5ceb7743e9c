"""The run record and the interface every run store implements.

A sweep is a list of runs, one per (spec, seed). The store holds one :class:`RunRecord` per run and
moves it through its life cycle::

    PENDING --claim--> RUNNING --finish--> COMPLETE | FAILED | DIVERGED | STOPPED
                          |
                          +--reset_running (driver resumed after a crash)--> PENDING

A COMPLETE run is final: nothing overwrites it. A FAILED, DIVERGED or STOPPED (ended early on
purpose: a watched run decided *won't train*) run may be claimed again with
``claim(..., retry=True)`` and finished again (a retry that succeeds replaces it).

Non-finite floats: JSON has no NaN or infinity, and a DIVERGED run's losses are often exactly
that. Every float anywhere in ``spec``, ``metrics`` and ``probes`` that is NaN, +inf or -inf is
written as the JSON string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` and read back as the float
it was, so ``to_dict()`` passes ``json.dumps(..., allow_nan=False)`` and a round trip is exact.
Those three strings are therefore reserved: stored as a value, they come back as floats.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from depthlab import _json
from depthlab.exceptions import StoreError
from depthlab.train.result import RunState

__all__ = [
    "RETRYABLE",
    "TERMINAL_STATES",
    "AbstractStore",
    "RunRecord",
    "RunState",
    "from_json",
    "to_json",
]

#: States a run ends in; ``finish`` accepts only these.
TERMINAL_STATES = frozenset(
    {RunState.COMPLETE, RunState.FAILED, RunState.DIVERGED, RunState.STOPPED}
)
#: Terminal states ``claim(..., retry=True)`` may claim again.
RETRYABLE = frozenset({RunState.FAILED, RunState.DIVERGED, RunState.STOPPED})

_S = TypeVar("_S", bound="AbstractStore")


def to_json(value: Any) -> Any:
    """The shared encoding (``depthlab._json``); a value it cannot write is a ``StoreError``."""
    try:
        return _json.to_json(value)
    except TypeError as exc:
        raise StoreError(str(exc).replace("cannot write", "cannot store", 1)) from None


from_json = _json.from_json


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run of a sweep as the store holds it.

    ``run_id`` is ``f"{spec_hash}-s{seed}"`` (see :meth:`pending`). ``metrics`` are final scalar
    metrics, ``probes`` JSON-able probe summaries. ``started_at`` and ``finished_at`` are unix
    times in seconds, ``seconds`` the run's wall-clock duration. ``host`` names the machine (or
    worker) that last claimed the run and ``attempt`` counts claims, so a run that was retried
    after a crash has ``attempt > 1``.
    """

    run_id: str
    spec_hash: str
    spec: dict[str, Any]
    seed: int
    state: RunState = RunState.PENDING
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    probes: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    seconds: float | None = None
    host: str = ""
    attempt: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            state = RunState(self.state)
        except ValueError:
            valid = ", ".join(s.value for s in RunState)
            raise StoreError(f"unknown run state {self.state!r}; choices: {valid}") from None
        object.__setattr__(self, "state", state)
        # Own copies, so mutating the caller's dicts does not change an immutable record.
        object.__setattr__(self, "spec", dict(self.spec))
        object.__setattr__(self, "metrics", {str(k): float(v) for k, v in self.metrics.items()})
        object.__setattr__(self, "probes", dict(self.probes))
        object.__setattr__(self, "history", [dict(row) for row in self.history])

    @classmethod
    def pending(cls, spec_hash: str, spec: Mapping[str, Any], seed: int) -> RunRecord:
        """A new PENDING run with the conventional id ``f"{spec_hash}-s{seed}"``."""
        return cls(run_id=f"{spec_hash}-s{seed}", spec_hash=spec_hash, spec=dict(spec), seed=seed)

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def history_frame(self) -> Any:
        """The run's curves as a ``pandas.DataFrame``, a row per epoch (``depthlab[frames]``);
        see :func:`depthlab._frames.history_frame`."""
        from depthlab._frames import history_frame

        return history_frame(self.history)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (``json.dumps(..., allow_nan=False)`` accepts it); see the module doc."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["state"] = self.state.value
        result: dict[str, Any] = to_json(out)
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Inverse of :meth:`to_dict`; unknown keys are an error that lists the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise StoreError(f"unknown RunRecord keys {unknown}; valid: {', '.join(names)}")
        return cls(**from_json(dict(data)))


class AbstractStore(abc.ABC):
    """Where a sweep keeps its runs. Backends pass :class:`depthlab.testing.store.StoreTestCase`.

    Every mutating method is atomic: after a crash at any moment the store holds either the state
    before the call or the state after it. Unknown run ids raise :class:`StoreError`.
    """

    @abc.abstractmethod
    def add_pending(self, records: Iterable[RunRecord]) -> int:
        """Insert PENDING runs, skipping ids already present; returns how many were new."""

    @abc.abstractmethod
    def claim(
        self, run_id: str, host: str, *, stale_after: float | None = None, retry: bool = False
    ) -> RunRecord:
        """Mark a run RUNNING on ``host``, bump ``attempt`` and set ``started_at``; return it.

        A PENDING run can be claimed; so can a RUNNING run whose ``started_at`` is at least
        ``stale_after`` seconds old (its worker is presumed dead), and with ``retry=True`` a
        FAILED, DIVERGED or STOPPED run. Any other run (always a COMPLETE one) raises
        :class:`StoreError`, so two workers never both hold a live claim.
        """

    @abc.abstractmethod
    def finish(self, record: RunRecord) -> RunRecord:
        """Write a terminal state with metrics, probes, error and timings; return what is stored.

        ``finished_at`` defaults to now and ``seconds`` to ``finished_at - started_at``. Raises
        :class:`StoreError` if the state is not terminal or the stored run is already COMPLETE.
        """

    @abc.abstractmethod
    def get(self, run_id: str) -> RunRecord:
        """The stored run."""

    @abc.abstractmethod
    def runs(self, state: RunState | None = None) -> list[RunRecord]:
        """All runs (or those in ``state``) in the order they were first added."""

    @abc.abstractmethod
    def reset_running(self) -> int:
        """Return every RUNNING run to PENDING (a resumed driver after a crash); how many."""

    @abc.abstractmethod
    def counts(self) -> dict[RunState, int]:
        """Number of runs in each state; every state is a key."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store; idempotent. Any later call raises :class:`StoreError`."""

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
