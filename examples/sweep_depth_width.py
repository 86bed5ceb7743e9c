"""A trainability sweep over depth × width × activation from Python, resumed, then reported.

The same sweep as a file is ``examples/sweep_depth_width.yaml``:

    depthlab sweep examples/sweep_depth_width.yaml --store runs.db
    depthlab report --store runs.db --out report/

Run: python examples/sweep_depth_width.py   (about a minute on 2 cores)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from depthlab.report import write_sweep_report
from depthlab.store import RunState, SQLiteStore
from depthlab.sweep import LocalExecutor, SweepSpec, run_sweep

HERE = Path(__file__).parent


def main() -> None:
    sweep = SweepSpec.load(HERE / "sweep_depth_width.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        with SQLiteStore(db) as store:
            first = run_sweep(sweep, store, LocalExecutor(), progress=False)
            # Running it again resumes: finished runs are kept, nothing is redone.
            again = run_sweep(sweep, store, LocalExecutor(), progress=False)
            records = store.runs()
        page = write_sweep_report(records, Path(tmp) / "report", title="depth × width × act")
        print(f"{first.executed} runs, then {again.executed} on resume; report: {page.name}")
        best = max(
            (r for r in records if r.state is RunState.COMPLETE),
            key=lambda r: r.metrics["test_accuracy"],
        )
        print(f"best: {best.spec['name']}  test accuracy {best.metrics['test_accuracy']:.3f}")
        for state, n in first.counts.items():
            if n:
                print(f"  {state.value.lower()}: {n}")


if __name__ == "__main__":  # spawned worker processes re-import this file
    main()
