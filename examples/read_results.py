"""Read a sweep as a DataFrame: the deepest depth that still trains, per activation.

A diagnosed sweep over depth × activation (MLPs on digits, SGD), then one pandas line per
question; the same runs go to TensorBoard (``tensorboard --logdir <dir>/tb``). From the shell:

    depthlab sweep SWEEP.yaml --store runs.db --tensorboard tb/
    depthlab runs --store runs.db --format csv > runs.csv

Run: python examples/read_results.py   (about a minute on 2 cores; needs depthlab[frames])
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import depthlab as dl
from depthlab.store import SQLiteStore
from depthlab.sweep import LocalExecutor, SweepSpec, run_sweep
from depthlab.sweep.tensorboard import write_run

SWEEP = {
    "base": {
        "arch": {"family": "mlp", "width": 32, "init": "lecun"},
        "data": {"name": "digits", "seed": 0},
        "train": {"optimizer": "sgd", "lr": 0.05, "epochs": 6, "batch_size": 64},
    },
    "axes": {"arch.depth": [1, 4, 16, 32], "arch.act": ["relu", "tanh", "sigmoid"]},
    "seeds": [0],
    "probes": ["signal", "gradients"],  # a verdict per run at initialisation, stored with it
}


def main() -> None:
    sweep = SweepSpec.from_dict(SWEEP)
    with tempfile.TemporaryDirectory() as tmp:
        db, tb = Path(tmp) / "runs.db", Path(tmp) / "tb"
        with SQLiteStore(db) as store:
            run_sweep(
                sweep,
                store,
                LocalExecutor(),
                progress=False,
                on_finished=lambda record: write_run(record, tb, list(sweep.axes)),
            )

        df = dl.load_runs(db).to_pandas()
        print(f"{len(df)} runs, {len(df.columns)} columns; e.g. {', '.join(df.columns[2:9])}")

        # Test accuracy by depth and activation.
        print(df.pivot_table(index="arch.depth", columns="arch.act", values="test_accuracy"))

        # The deepest depth that trained (at least halfway from chance to the best run), per act.
        deepest = df[df["trained"].eq(True)].groupby("arch.act")["arch.depth"].max()
        print("deepest trained depth:", deepest.to_dict())

        # Predicted beside actual: the verdict at initialisation against what training did.
        print(df[["arch.act", "arch.depth", "verdict", "p_trains", "trained"]].to_string())
        print(f"TensorBoard: {len(list(tb.iterdir()))} runs (tensorboard --logdir {tb})")


if __name__ == "__main__":  # spawned worker processes re-import this file
    main()
