"""The sweep driver: plan the runs, hand them to an executor, and record every outcome.

Only the driver writes to the store, one transaction per change:

1. Runs left RUNNING by a driver that died are returned to PENDING (they are redone).
2. The sweep's planned runs are added as PENDING; runs already in the store keep their state,
   so COMPLETE runs are never redone and new axis values or seeds only add runs.
3. A PENDING run is claimed (RUNNING) only when a worker is about to be free for it (one run
   waits queued behind each busy worker), and finished
   (COMPLETE, FAILED or DIVERGED, with metrics, history and error) as soon as its outcome
   arrives. Killing the driver at any moment loses at most the runs in flight.

FAILED and DIVERGED runs are results: a resumed sweep leaves them alone unless
``retry_failed`` asks to run them again. ``tpe`` asks Optuna for points in batches of
``workers``; on resume its study is rebuilt from the runs already in the store.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from depthlab.exceptions import DepthlabError
from depthlab.spec.base import plain
from depthlab.store.base import AbstractStore, RunRecord, RunState
from depthlab.sweep.executors import Executor, LocalExecutor
from depthlab.sweep.expand import pending_record, planned_records
from depthlab.sweep.spec import SweepSpec

__all__ = ["SweepSummary", "run_sweep", "sweep_records"]


@dataclasses.dataclass
class SweepSummary:
    """What one ``run_sweep`` call did, and the sweep's state at the end."""

    planned: int
    added: int
    redone: int
    skipped: int
    executed: int
    counts: dict[RunState, int]
    seconds: float

    @property
    def finished(self) -> bool:
        """Every planned run is in a terminal state."""
        return self.counts[RunState.PENDING] + self.counts[RunState.RUNNING] == 0


def run_sweep(
    sweep: SweepSpec,
    store: AbstractStore,
    executor: Executor | None = None,
    *,
    retry_failed: bool = False,
    progress: bool | None = None,
    host: str | None = None,
    on_finished: Callable[[RunRecord], None] | None = None,
) -> SweepSummary:
    """Run every planned run of ``sweep`` not yet finished in ``store``; see the module doc.

    ``executor`` defaults to a local pool with one worker per core. ``progress`` shows a live
    display on stderr (default: when stderr is a terminal; ``False`` prints nothing).
    ``on_finished`` is called in this process with each run's stored record as it finishes
    (``depthlab sweep --tensorboard`` writes the run's event files there).
    """
    started = time.perf_counter()
    executor = executor or LocalExecutor()
    host = host or socket.gethostname()
    redone = store.reset_running()
    show = sys.stderr.isatty() if progress is None else progress
    with executor:
        if sweep.strategy == "tpe":
            run_ids, added, skipped, executed = _run_tpe(
                sweep, store, executor, host, retry_failed, show, redone, on_finished
            )
            planned = len(run_ids)
        else:
            records = planned_records(sweep)
            run_ids = [r.run_id for r in records]
            added = store.add_pending(records)
            todo = _todo(store, run_ids, retry_failed)
            planned, skipped = len(records), len(records) - len(todo)
            with _Display(show, len(records), skipped, redone, on_finished) as display:
                executed = _execute(todo, store, executor, sweep.task_probes(), host, display)
    ids = set(run_ids)
    counts = dict.fromkeys(RunState, 0)
    for r in store.runs():
        if r.run_id in ids:
            counts[r.state] += 1
    return SweepSummary(
        planned=planned,
        added=added,
        redone=redone,
        skipped=skipped,
        executed=executed,
        counts=counts,
        seconds=time.perf_counter() - started,
    )


def sweep_records(store: AbstractStore, sweep: SweepSpec) -> list[RunRecord]:
    """The store's runs that belong to ``sweep`` (the same spec at one of its points)."""
    return [r for r in store.runs() if _point_of(sweep, r) is not None]


# -- running a list of runs -----------------------------------------------------------------------


def _todo(store: AbstractStore, run_ids: Sequence[str], retry_failed: bool) -> list[str]:
    wanted = [RunState.PENDING]
    if retry_failed:
        wanted += [RunState.FAILED, RunState.DIVERGED]
    ids = {r.run_id for state in wanted for r in store.runs(state)}
    return [i for i in run_ids if i in ids]


def _execute(
    run_ids: Iterable[str],
    store: AbstractStore,
    executor: Executor,
    probes: Sequence[str],
    host: str,
    display: _Display,
) -> int:
    """Claim each run when a worker is free, submit it, and finish it when its outcome arrives."""
    queue = list(run_ids)
    in_flight: dict[str, RunRecord] = {}
    # Runs that were in flight when a worker died, with their claimed records, oldest first.
    # Each is re-run alone, so a run that kills its worker again is known to be the cause and
    # recorded FAILED; the others complete.
    suspects: dict[str, RunRecord] = {}
    executed = 0
    # One run queued behind each busy worker, so no worker waits for the driver between runs.
    # A claimed run that has not started is simply redone if the driver dies.
    depth = 2 * executor.workers
    while queue or in_flight or suspects:
        if suspects:
            if not in_flight:
                run_id, claimed = next(iter(suspects.items()))
                in_flight[run_id] = claimed
                executor.submit(run_id, claimed.spec, probes)
        else:
            while queue and len(in_flight) < depth:
                run_id = queue.pop(0)
                claimed = in_flight[run_id] = store.claim(run_id, host, retry=True)
                executor.submit(run_id, claimed.spec, probes)
        for run_id, outcome in executor.wait(timeout=1.0):
            claimed = in_flight.pop(run_id)
            if outcome.get("state") == "LOST":
                if run_id not in suspects:
                    suspects[run_id] = claimed
                    continue
                outcome = {**outcome, "state": RunState.FAILED.value}  # it died alone: the cause
            suspects.pop(run_id, None)
            done = store.finish(_finished(claimed, outcome))
            executed += 1
            display.finished(done)
        display.tick()
    return executed


def _finished(claimed: RunRecord, outcome: dict[str, Any]) -> RunRecord:
    state = RunState(outcome.get("state", "FAILED"))
    return dataclasses.replace(
        claimed,
        state=state,
        metrics=outcome.get("metrics", {}),
        history=outcome.get("history", []),
        probes=outcome.get("probes", {}),
        error=outcome.get("error", "") or ("" if state is RunState.COMPLETE else state.value),
        host=outcome.get("host", "") or claimed.host,
        finished_at=None,
        seconds=outcome.get("seconds"),  # the run's own time, not its wait for a worker
    )


# -- tpe ------------------------------------------------------------------------------------------


def _point_of(sweep: SweepSpec, record: RunRecord) -> tuple[int, ...] | None:
    """The axis-value indices of ``record`` if it is a run of ``sweep``, else None."""
    try:
        seed = int(record.spec["train"]["seed"])
        indices = []
        values = {}
        for path, options in sweep.axes.items():
            section, _, name = path.partition(".")
            value = record.spec[section][name]
            matches = [i for i, v in enumerate(options) if _same(v, value)]
            if not matches:
                return None
            indices.append(matches[0])
            values[path] = options[matches[0]]
        if seed not in sweep.seeds or sweep.point(values, seed).content_hash() != record.spec_hash:
            return None
        return tuple(indices)
    except (KeyError, TypeError, ValueError, DepthlabError):
        return None


def _same(a: Any, b: Any) -> bool:
    return bool(plain(a) == plain(b))


def _objective(sweep: SweepSpec, runs: Sequence[RunRecord]) -> float | None:
    """Mean of the objective over a point's seeds; None if any seed did not complete."""
    values = []
    for r in runs:
        v = r.metrics.get(sweep.objective)
        if r.state is not RunState.COMPLETE or v is None or not math.isfinite(v):
            return None
        values.append(v)
    return sum(values) / len(values) if values else None


def _run_tpe(
    sweep: SweepSpec,
    store: AbstractStore,
    executor: Executor,
    host: str,
    retry_failed: bool,
    show: bool,
    redone: int,
    on_finished: Callable[[RunRecord], None] | None = None,
) -> tuple[list[str], int, int, int]:
    """Run ``budget`` distinct points chosen by TPE; return (run ids, added, skipped, executed)."""
    try:
        import optuna
    except ImportError:
        raise DepthlabError(
            "strategy: tpe needs Optuna; install it with: pip install 'depthlab[optuna]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    assert sweep.budget is not None
    paths = list(sweep.axes)
    dists: dict[str, optuna.distributions.BaseDistribution] = {
        p: optuna.distributions.CategoricalDistribution(list(range(len(sweep.axes[p]))))
        for p in paths
    }
    study = optuna.create_study(
        direction="maximize" if sweep.direction == "maximize" else "minimize",
        sampler=optuna.samplers.TPESampler(seed=sweep.sample_seed, n_startup_trials=4),
    )

    @functools.cache
    def runs_of(index: tuple[int, ...]) -> tuple[RunRecord, ...]:
        """The PENDING records of a point's runs, one per seed (built once per point)."""
        values = {p: sweep.axes[p][i] for p, i in zip(paths, index, strict=True)}
        return tuple(pending_record(sweep.point(values, seed)) for seed in sweep.seeds)

    @functools.cache  # asked only for points whose runs have all finished
    def value_of(index: tuple[int, ...]) -> float | None:
        return _objective(sweep, [store.get(rec.run_id) for rec in runs_of(index)])

    def add_trial(index: tuple[int, ...]) -> None:
        """A point run outside ``study.ask`` (found in the store, or forced): tell TPE of it."""
        value = value_of(index)
        study.add_trial(
            optuna.trial.create_trial(
                params=dict(zip(paths, index, strict=True)),
                distributions=dists,
                value=value,
                state=optuna.trial.TrialState.COMPLETE
                if value is not None
                else optuna.trial.TrialState.FAIL,
            )
        )

    # Rebuild: points already in the store, in the order they were added.
    points: dict[tuple[int, ...], None] = {}
    for r in store.runs():
        index = _point_of(sweep, r)
        if index is not None:
            points.setdefault(index, None)
    existing = list(points)[: sweep.budget]
    records = [rec for index in existing for rec in runs_of(index)]
    added = store.add_pending(records)
    todo = _todo(store, [rec.run_id for rec in records], retry_failed)
    total = sweep.budget * len(sweep.seeds)
    skipped = len(records) - len(todo)
    with _Display(show, total, skipped, redone, on_finished) as display:
        executed = _execute(todo, store, executor, sweep.task_probes(), host, display)
        for index in existing:
            add_trial(index)
        seen = set(existing)
        while len(seen) < sweep.budget:
            batch: dict[tuple[int, ...], Any] = {}  # point -> its asked trial (None: forced)
            repeats = 0
            while len(batch) < min(executor.workers, sweep.budget - len(seen)):
                trial = study.ask(dists)
                index = tuple(int(trial.params[p]) for p in paths)
                if index in seen:
                    # A point already run costs nothing: tell TPE the value it had.
                    _tell(study, trial, value_of(index))
                elif index in batch:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    batch[index] = trial
                    continue
                repeats += 1
                if repeats > 100 * sweep.budget:  # TPE keeps repeating itself: take any new point
                    batch.setdefault(_first_unseen(sweep, seen | set(batch)), None)
            new = [rec for index in batch for rec in runs_of(index)]
            added += store.add_pending(new)
            executed += _execute(
                [r.run_id for r in new], store, executor, sweep.task_probes(), host, display
            )
            for index, trial in batch.items():
                if trial is None:
                    add_trial(index)
                else:
                    _tell(study, trial, value_of(index))
                seen.add(index)
    run_ids = [rec.run_id for index in seen for rec in runs_of(index)]
    return run_ids, added, skipped, executed


def _tell(study: Any, trial: Any, value: float | None) -> None:
    import optuna

    if value is None:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, value)


def _first_unseen(sweep: SweepSpec, seen: set[tuple[int, ...]]) -> tuple[int, ...]:
    # Grid order: the product over the axes as written, the last axis fastest.
    for index in itertools.product(*(range(len(values)) for values in sweep.axes.values())):
        if index not in seen:
            return index
    raise DepthlabError("tpe: every grid point has been run")  # budget <= grid size prevents it


# -- progress -------------------------------------------------------------------------------------


class _Display:
    """Live counts (done / failed / diverged), throughput and ETA on stderr."""

    def __init__(
        self,
        show: bool,
        total: int,
        skipped: int,
        redone: int,
        on_finished: Callable[[RunRecord], None] | None = None,
    ) -> None:
        self.show = show
        self.on_finished = on_finished
        self.total = total
        self.done = skipped
        self.counts = dict.fromkeys(RunState, 0)
        self.session = 0
        self.started = time.perf_counter()
        self.redone = redone
        self._progress: Any = None
        self._task: Any = None
        self._say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)

    def __enter__(self) -> _Display:
        if not self.show:
            return self
        if self.redone:
            self._say(f"resuming: {self.redone} run(s) left RUNNING by a stopped sweep are redone")
        if self.done:
            self._say(f"{self.done} of {self.total} run(s) already finished; not redone")
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "sweep", total=self.total, completed=self.done, counts=self._counts_text()
            )
        return self

    def _counts_text(self) -> str:
        c = self.counts
        stopped = f"  stopped {c[RunState.STOPPED]}" if c[RunState.STOPPED] else ""
        return (
            f"complete {c[RunState.COMPLETE]}  failed {c[RunState.FAILED]}  "
            f"diverged {c[RunState.DIVERGED]}{stopped}"
        )

    def eta(self) -> float | None:
        if not self.session:
            return None
        rate = self.session / (time.perf_counter() - self.started)
        return (self.total - self.done) / rate if rate > 0 else None

    def finished(self, record: RunRecord) -> None:
        if self.on_finished is not None:
            self.on_finished(record)
        self.done += 1
        self.session += 1
        self.counts[record.state] += 1
        if not self.show:
            return
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, counts=self._counts_text())
            if record.state is not RunState.COMPLETE:
                self._progress.console.print(
                    f"{record.state.value}: {record.spec.get('name', record.run_id)}: "
                    f"{record.error}",
                    markup=False,
                    highlight=False,
                )
            return
        eta = self.eta()
        metric = next(
            (
                f" {k}={v:.4g}"
                for k in ("test_accuracy", "test_loss")
                if (v := record.metrics.get(k)) is not None
            ),
            "",
        )
        error = f" ({record.error})" if record.state is not RunState.COMPLETE else ""
        self._say(
            f"[{self.done}/{self.total}] {record.state.value} {record.spec.get('name', '')}"
            f"{metric}{error}; {self._counts_text()}"
            + (f"; ETA {_duration(eta)}" if eta is not None else "")
        )

    def tick(self) -> None:
        if self._progress is not None:
            self._progress.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
