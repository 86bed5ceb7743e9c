"""Sweep throughput: runs per minute with 1 and 2 local workers, and the per-run overhead.

A sweep of small runs (MLPs on the digits dataset) is executed three ways in one process run:

* ``direct``: each run's spec trained in this process by ``depthlab.run``, one after another
  (the trainer alone: no store, no workers);
* ``sweep -w 1``: ``run_sweep`` with one local worker, into a fresh SQLite store;
* ``sweep -w 2``: the same with two workers.

Printed: runs/min of each; the speed-up of 2 workers over 1 (target >= 1.7x on 2 cores); and the
sweep's overhead per run, ``(t_sweep_w1 - t_direct) / runs`` (target <= 0.3 s), with the worker
pool's one-off start-up (spawning the workers, importing torch) counted in it. The start-up is
also timed on its own (an empty pool's first task) and the speed-up given without it, the
figure for a long sweep. All torch work uses one thread per process.

    python bench/sweep_throughput.py [--runs 96] [--epochs 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from depthlab.spec import RunSpec
from depthlab.store import SQLiteStore
from depthlab.sweep import LocalExecutor, SweepSpec, expand, run_sweep
from depthlab.train import run


def make_sweep(runs: int, epochs: int) -> SweepSpec:
    widths = [32, 48, 64, 96]
    depths = list(range(1, runs // len(widths) + 1))
    return SweepSpec.from_dict(
        {
            "base": {
                "arch": {"family": "mlp", "depth": 2, "width": 64, "act": "relu", "init": "he"},
                "data": {"name": "digits", "seed": 0},
                "train": {"optimizer": "adam", "lr": 0.001, "epochs": epochs, "batch_size": 64},
            },
            "axes": {"arch.depth": depths, "arch.width": widths},
            "seeds": [0],
        }
    )


def time_direct(specs: list[RunSpec]) -> float:
    start = time.perf_counter()
    for spec in specs:
        run(spec, progress=False)
    return time.perf_counter() - start


def time_sweep(sweep: SweepSpec, workers: int, tmp: Path) -> float:
    start = time.perf_counter()
    with SQLiteStore(tmp / f"w{workers}-{time.monotonic_ns()}.db") as store:
        summary = run_sweep(sweep, store, LocalExecutor(workers), progress=False)
    assert summary.finished and summary.executed == summary.planned
    return time.perf_counter() - start


def time_startup(workers: int) -> float:
    """Spawn a pool of ``workers`` and wait until every worker has imported torch."""
    import concurrent.futures as cf

    start = time.perf_counter()
    executor = LocalExecutor(workers)
    executor.start()
    assert executor._pool is not None
    futures = [executor._pool.submit(torch.get_num_threads) for _ in range(workers)]
    cf.wait(futures)
    elapsed = time.perf_counter() - start
    executor.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sweep = make_sweep(args.runs, args.epochs)
    specs = expand(sweep)
    n = len(specs)
    run(specs[0], progress=False)  # warm the dataset cache and torch's first-call costs
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t_direct = time_direct(specs)
        t1 = time_sweep(sweep, 1, tmp)
        t2 = time_sweep(sweep, 2, tmp)
        s1, s2 = time_startup(1), time_startup(2)
    print(f"{n} runs of {args.epochs} epochs (digits MLPs), one torch thread per process")
    for label, t in (
        ("direct (trainer only)", t_direct),
        ("sweep, 1 worker", t1),
        ("sweep, 2 workers", t2),
    ):
        print(f"  {label:24s} {t:7.2f} s  {60 * n / t:7.1f} runs/min")
    print(f"worker pool start-up: {s1:.2f} s (1 worker), {s2:.2f} s (2 workers)")
    print(f"speed-up 2 workers / 1 worker: {t1 / t2:.2f}x  (target >= 1.7x)")
    print(f"speed-up without the pool start-up: {(t1 - s1) / (t2 - s2):.2f}x")
    print(
        f"sweep overhead per run (1 worker vs direct, pool start-up included): "
        f"{(t1 - t_direct) / n:.3f} s  (target <= 0.3 s)"
    )


if __name__ == "__main__":
    main()
