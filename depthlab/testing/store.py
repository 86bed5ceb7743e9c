"""Conformance suite every run-store backend passes (after Optuna's storage test case).

Subclass :class:`StoreTestCase` in a test module and override :meth:`StoreTestCase.make_store`::

    class TestSQLite(StoreTestCase):
        def make_store(self, tmp_path):
            return SQLiteStore(tmp_path / "runs.db")

``make_store(tmp_path)`` must return a *new handle onto the same store* each time it is called
with the same ``tmp_path``: the suite reopens stores to test persistence and opens two at once to
test readers alongside a writer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from pathlib import Path

import pytest

from depthlab.exceptions import StoreError
from depthlab.store.base import AbstractStore, RunRecord, RunState

__all__ = ["StoreTestCase", "make_records"]


def make_records(n: int, *, spec_hash: str = "h0") -> list[RunRecord]:
    """``n`` PENDING runs of one spec with seeds ``0..n-1``."""
    return [RunRecord.pending(spec_hash, {"arch": {"depth": 3}, "lr": 0.1}, s) for s in range(n)]


def _finish(
    store: AbstractStore,
    run_id: str,
    state: RunState = RunState.COMPLETE,
    *,
    retry: bool = False,
    **kw: object,
) -> RunRecord:
    claimed = store.claim(run_id, "host-a", retry=retry)
    return store.finish(dataclasses.replace(claimed, state=state, **kw))  # type: ignore[arg-type]


class StoreTestCase:
    """Life cycle, idempotence, finality, ordering, JSON round trip, persistence, concurrency."""

    def make_store(self, tmp_path: Path) -> AbstractStore:
        raise NotImplementedError("override make_store(tmp_path) to return the backend's store")

    # -- life cycle -------------------------------------------------------------------------------

    def test_add_claim_finish_life_cycle(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            assert store.add_pending(make_records(2)) == 2
            run = store.get("h0-s0")
            assert run.state is RunState.PENDING and run.attempt == 0 and run.started_at is None
            claimed = store.claim("h0-s0", "host-a")
            assert claimed.state is RunState.RUNNING
            assert claimed.host == "host-a" and claimed.attempt == 1
            assert claimed.started_at is not None
            assert store.get("h0-s0") == claimed
            done = store.finish(
                dataclasses.replace(
                    claimed,
                    state=RunState.COMPLETE,
                    metrics={"val_loss": 0.25, "val_accuracy": 0.9},
                    probes={"signal": {"q": [1.0, 0.5]}},
                    history=[{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.3}],
                )
            )
            assert done.state is RunState.COMPLETE
            assert [row["train_loss"] for row in done.history] == [0.5, 0.3]
            assert done.metrics == {"val_loss": 0.25, "val_accuracy": 0.9}
            assert done.probes == {"signal": {"q": [1.0, 0.5]}}
            assert done.finished_at is not None and done.finished_at >= claimed.started_at
            assert done.seconds is not None and done.seconds >= 0
            assert done.attempt == 1 and done.host == "host-a"
            assert store.get("h0-s0") == done
            assert store.counts() == {
                RunState.PENDING: 1,
                RunState.RUNNING: 0,
                RunState.COMPLETE: 1,
                RunState.FAILED: 0,
                RunState.DIVERGED: 0,
                RunState.STOPPED: 0,
            }

    def test_add_pending_is_idempotent(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            assert store.add_pending(make_records(3)) == 3
            assert store.add_pending(make_records(3)) == 0
            assert store.add_pending(make_records(5)) == 2
            assert store.add_pending([]) == 0
            _finish(store, "h0-s1")
            # Re-adding a finished run neither duplicates nor resets it.
            assert store.add_pending(make_records(5)) == 0
            assert store.get("h0-s1").state is RunState.COMPLETE
            assert len(store.runs()) == 5

    def test_add_pending_rejects_non_pending(self, tmp_path: Path) -> None:
        bad = dataclasses.replace(make_records(1)[0], state=RunState.COMPLETE)
        with self.make_store(tmp_path) as store, pytest.raises(StoreError, match="PENDING"):
            store.add_pending([bad])

    def test_claim_only_pending_or_stale_running(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            store.add_pending(make_records(2))
            store.claim("h0-s0", "host-a")
            with pytest.raises(StoreError, match="h0-s0"):
                store.claim("h0-s0", "host-b")  # a live claim is not taken over
            with pytest.raises(StoreError, match="h0-s0"):
                store.claim("h0-s0", "host-b", stale_after=3600.0)
            again = store.claim("h0-s0", "host-b", stale_after=0.0)  # presumed dead
            assert again.host == "host-b" and again.attempt == 2
            _finish(store, "h0-s1")
            with pytest.raises(StoreError, match="COMPLETE"):
                store.claim("h0-s1", "host-a", stale_after=0.0, retry=True)
            with pytest.raises(StoreError, match="nope"):
                store.claim("nope", "host-a")
            with pytest.raises(StoreError, match="nope"):
                store.get("nope")

    def test_complete_is_never_overwritten(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            store.add_pending(make_records(1))
            done = _finish(store, "h0-s0", metrics={"val_loss": 0.1})
            for state in (
                RunState.COMPLETE, RunState.FAILED, RunState.DIVERGED, RunState.STOPPED,
            ):  # fmt: skip
                with pytest.raises(StoreError, match="COMPLETE"):
                    store.finish(dataclasses.replace(done, state=state, metrics={"val_loss": 9.0}))
            assert store.get("h0-s0") == done
            assert store.reset_running() == 0
            assert store.get("h0-s0") == done

    def test_finish_needs_terminal_state_and_known_run(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            store.add_pending(make_records(1))
            claimed = store.claim("h0-s0", "host-a")
            for state in (RunState.PENDING, RunState.RUNNING):
                with pytest.raises(StoreError, match="terminal"):
                    store.finish(dataclasses.replace(claimed, state=state))
            ghost = dataclasses.replace(claimed, run_id="ghost", state=RunState.COMPLETE)
            with pytest.raises(StoreError, match="ghost"):
                store.finish(ghost)
            assert store.get("h0-s0") == claimed

    def test_failed_and_diverged_keep_their_error(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            store.add_pending(make_records(3))
            failed = _finish(
                store, "h0-s0", RunState.FAILED, error="RuntimeError: shapes (3, 4) and (5, 6)"
            )
            diverged = _finish(
                store, "h0-s1", RunState.DIVERGED, error="loss is nan at step 17",
                metrics={"train_loss": math.nan},
            )  # fmt: skip
            assert store.get("h0-s0").error == "RuntimeError: shapes (3, 4) and (5, 6)"
            assert failed.state is RunState.FAILED and diverged.state is RunState.DIVERGED
            assert store.get("h0-s0") == failed and store.get("h0-s1") == diverged
            assert store.get("h0-s1").error == "loss is nan at step 17"
            assert [r.run_id for r in store.runs(RunState.FAILED)] == ["h0-s0"]
            assert [r.run_id for r in store.runs(RunState.DIVERGED)] == ["h0-s1"]
            # A failed run may be retried, and a successful retry replaces it.
            with pytest.raises(StoreError, match="FAILED"):
                store.claim("h0-s0", "host-a")  # not without asking for a retry
            retry = _finish(store, "h0-s0", retry=True, metrics={"val_loss": 0.3})
            assert retry.state is RunState.COMPLETE and retry.error == "" and retry.attempt == 2

    def test_stopped_keeps_its_reason_and_verdict(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            store.add_pending(make_records(1))
            verdict = {"watch": {"verdict": "vanishing gradients", "p_trains": 0.02, "steps": 8}}
            stopped = _finish(
                store, "h0-s0", RunState.STOPPED, error="won't train: vanishing gradients",
                probes=verdict,
            )  # fmt: skip
            assert store.get("h0-s0") == stopped and stopped.is_terminal
            assert stopped.probes == verdict and stopped.error.startswith("won't train")
            assert [r.run_id for r in store.runs(RunState.STOPPED)] == ["h0-s0"]
            assert store.counts()[RunState.STOPPED] == 1
            with pytest.raises(StoreError, match="STOPPED"):
                store.claim("h0-s0", "host-a")
            again = _finish(store, "h0-s0", retry=True)
            assert again.state is RunState.COMPLETE and again.attempt == 2

    def test_reset_running(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            store.add_pending(make_records(4))
            store.claim("h0-s0", "host-a")
            store.claim("h0-s1", "host-a")
            _finish(store, "h0-s2")
            assert store.reset_running() == 2
            assert store.counts()[RunState.RUNNING] == 0
            assert store.counts()[RunState.PENDING] == 3
            assert store.get("h0-s2").state is RunState.COMPLETE
            assert store.reset_running() == 0
            again = store.claim("h0-s0", "host-b")
            assert again.attempt == 2  # attempts survive a reset: the crash is visible

    def test_runs_are_ordered_by_insertion(self, tmp_path: Path) -> None:
        ids = ["zeta-s0", "alpha-s3", "mid-s1", "alpha-s0", "b-s9"]
        recs = [RunRecord.pending(i.split("-")[0], {}, int(i.split("-s")[1])) for i in ids]
        with self.make_store(tmp_path) as store:
            store.add_pending(recs[:3])
            store.add_pending(recs[3:] + recs[:1])
            _finish(store, "alpha-s0")  # an update does not move a run
            _finish(store, "zeta-s0")
            assert [r.run_id for r in store.runs()] == ids
            pending = [r.run_id for r in store.runs(RunState.PENDING)]
            assert pending == ["alpha-s3", "mid-s1", "b-s9"]
            assert [r.run_id for r in store.runs(RunState.COMPLETE)] == ["zeta-s0", "alpha-s0"]

    # -- data -------------------------------------------------------------------------------------

    def test_json_round_trip_including_non_finite(self, tmp_path: Path) -> None:
        metrics = {"a": 0.1, "b": -1e-300, "c": 1e300, "nan": math.nan, "inf": math.inf}
        metrics["ninf"] = -math.inf
        metrics["int"] = 3  # type: ignore[assignment]  # stored as the float 3.0
        probes = {"signal": {"q": [1.0, math.inf], "ok": True, "name": "x"}, "none": None}
        spec = {"arch": {"depth": 100, "act": "tanh"}, "lr": 1e-3, "tags": ["a", "b"]}
        rec = RunRecord.pending("h", spec, 7)
        with self.make_store(tmp_path) as store:
            store.add_pending([rec])
            history = [{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": math.nan}]
            got = _finish(
                store,
                rec.run_id,
                RunState.DIVERGED,
                metrics=metrics,
                probes=probes,
                history=history,
            )
        with self.make_store(tmp_path) as store:
            back = store.get(rec.run_id)
        assert back == got
        assert back.spec == spec and back.seed == 7
        assert math.isnan(back.metrics["nan"])
        assert back.metrics["inf"] == math.inf and back.metrics["ninf"] == -math.inf
        assert {k: v for k, v in back.metrics.items() if k != "nan"} == {
            "a": 0.1, "b": -1e-300, "c": 1e300, "inf": math.inf, "ninf": -math.inf, "int": 3.0,
        }  # fmt: skip
        assert isinstance(back.metrics["int"], float)
        assert back.probes["signal"]["q"] == [1.0, math.inf] and back.probes["none"] is None
        assert back.history[0] == {"epoch": 1, "train_loss": 2.0}
        assert math.isnan(back.history[1]["train_loss"])
        # to_dict is strict JSON; the reserved strings come back as the floats they were.
        text = json.dumps(back.to_dict(), allow_nan=False)
        assert json.loads(text)["metrics"]["nan"] == "NaN"
        again = RunRecord.from_dict(json.loads(text))
        assert again.state is RunState.DIVERGED and math.isnan(again.metrics["nan"])
        assert again.to_dict() == back.to_dict()

    def test_records_are_immutable_copies(self, tmp_path: Path) -> None:
        metrics = {"val_loss": 1.0}
        rec = dataclasses.replace(make_records(1)[0], metrics=metrics)
        metrics["val_loss"] = 2.0
        assert rec.metrics == {"val_loss": 1.0}
        with pytest.raises(dataclasses.FrozenInstanceError):
            rec.state = RunState.COMPLETE  # type: ignore[misc]
        with pytest.raises(StoreError, match="PENDING"):
            RunRecord.from_dict({**rec.to_dict(), "state": "DONE"})
        with pytest.raises(StoreError, match="bogus"):
            RunRecord.from_dict({**rec.to_dict(), "bogus": 1})

    # -- durability and concurrency ---------------------------------------------------------------

    def test_persists_across_reopen(self, tmp_path: Path) -> None:
        with self.make_store(tmp_path) as store:
            store.add_pending(make_records(3))
            done = _finish(store, "h0-s0", metrics={"val_loss": 0.5})
            running = store.claim("h0-s1", "host-a")
        with self.make_store(tmp_path) as store:
            assert store.get("h0-s0") == done
            assert store.get("h0-s1") == running
            assert [r.run_id for r in store.runs()] == ["h0-s0", "h0-s1", "h0-s2"]
            assert store.reset_running() == 1  # what a resumed driver does first
            assert store.add_pending(make_records(3)) == 0

    def test_closed_store_refuses_calls(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.close()
        store.close()  # idempotent
        with pytest.raises(StoreError, match="closed"):
            store.runs()

    def test_readers_see_only_committed_states_while_a_writer_commits(self, tmp_path: Path) -> None:
        n = 40
        with self.make_store(tmp_path) as store:
            store.add_pending(make_records(n))
        errors: list[BaseException] = []
        started = threading.Event()

        def write() -> None:
            try:
                with self.make_store(tmp_path) as writer:
                    started.set()
                    for i in range(n):
                        _finish(writer, f"h0-s{i}", metrics={"val_loss": float(i)})
            except BaseException as err:  # reported by the main thread
                errors.append(err)
            finally:
                started.set()

        thread = threading.Thread(target=write)
        thread.start()
        seen_complete: list[int] = []
        with self.make_store(tmp_path) as reader:
            started.wait()
            while True:
                writer_done = not thread.is_alive()  # sampled before the read it qualifies
                counts = reader.counts()
                assert sum(counts.values()) == n
                assert counts[RunState.RUNNING] <= 1
                complete = reader.runs(RunState.COMPLETE)
                # Finished in order, so a consistent snapshot is a prefix with its metrics.
                assert [r.run_id for r in complete] == [f"h0-s{i}" for i in range(len(complete))]
                assert all(r.metrics == {"val_loss": float(i)} for i, r in enumerate(complete))
                # Commits only move forwards: a later read never sees fewer finished runs.
                assert not seen_complete or len(complete) >= seen_complete[-1]
                seen_complete.append(len(complete))
                if writer_done:
                    break
        thread.join()
        assert not errors, errors
        assert seen_complete[-1] == n
