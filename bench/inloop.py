"""The verdict inside the run: compute saved, training runs wrongly stopped, Monitor's overhead.

1. **Labels.** A grid of runs on ``digits`` (MLPs of depth 2–48, ReLU/tanh/sigmoid, four
   optimizer settings, about 300 steps each) is trained to the end without depthlab, and each
   run is labelled with the calibration grid's rule (``depthlab.diagnosis.calibration``):
   *trains* when its test accuracy gets at least halfway from chance to the shallow reference
   net's (best of the three reference setups), *does not* below 0.35 of the way; runs in
   between are ambiguous and left out of both rates (counted).
2. **Watched.** The same runs again under ``depthlab.watch.fit.WatchCallback`` (what
   ``depthlab train --watch`` and ``watch: true`` sweeps use): the diagnosis at the start, the
   verdict from the run's own steps, STOPPED on a decided failure.

   - *compute saved on runs that do not train*: 1 − (watched time) / (unwatched time), summed
     over those runs — the watched time includes the diagnosis at the start; also in optimizer
     steps. An unwatched run that diverges already ends at its NaN step: that is its time.
   - *training runs wrongly stopped*: the share of runs labelled *trains* that ended STOPPED.
3. **Overhead.** A plain PyTorch loop (the one ``Monitor``'s docstring shows) on runs that
   train — three of the grid's (tiny: 64-wide MLPs, ~0.3 ms a step, the worst case for a fixed
   per-step cost) and ``trainer_overhead.py``'s 4 × 256 MLP on MNIST-1D — with ``Monitor`` at
   its defaults (``every=100``, no diagnosis) and without it, interleaved over rounds in one
   process. Two figures: the time spent inside the monitor (set-up and ``step`` calls) over the
   rest of the loop — the headline, robust on a busy machine — and the with/without ratio of
   whole-loop times, minus one (noisy when the machine is shared).

    python bench/inloop.py [--rounds 5] [--quick] [--overhead-only] [--json out.json]

Goals: saved ≥ 80 %, wrongly stopped ≤ 2 %, overhead ≤ 3 %. Times on a shared machine are
noisy; step counts are exact.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from typing import Any

import torch
from torch.nn import functional as F

from depthlab import RunState, build_model, load_data, run
from depthlab.diagnosis.calibration import chance_accuracy, label, progress
from depthlab.spec import DataSpec, RunSpec
from depthlab.watch import Monitor
from depthlab.watch.fit import WatchCallback

DATA = {"name": "digits", "seed": 0}
EPOCHS, BATCH = 13, 64  # about 300 steps on digits
SETUPS = (("adam", 1e-3), ("momentum", 0.05), ("sgd", 20.0), ("adam", 0.3))
#: The overhead's second setting: trainer_overhead.py's MLP (4 × 256 on MNIST-1D, 10 epochs).
SIZED = {
    "name": "mlp-4x256-mnist1d-adam-0.001",
    "arch": {"family": "mlp", "depth": 4, "width": 256},
    "data": {"name": "mnist1d", "seed": 0},
    "train": {"optimizer": "adam", "lr": 1e-3, "epochs": 10, "batch_size": BATCH},
}


def grid(quick: bool) -> list[dict[str, Any]]:
    depths = (2, 48) if quick else (2, 16, 48)
    acts = ("relu", "sigmoid") if quick else ("relu", "tanh", "sigmoid")
    runs = []
    for depth, act, (opt, lr) in itertools.product(depths, acts, SETUPS):
        runs.append(
            {
                "name": f"mlp-d{depth}-{act}-{opt}-{lr:g}",
                "arch": {"family": "mlp", "depth": depth, "width": 64, "act": act, "init": "he"},
                "data": DATA,
                "train": {"optimizer": opt, "lr": lr, "epochs": EPOCHS, "batch_size": BATCH},
            }
        )
    return runs


def reference_accuracy() -> float:
    """The shallow reference net (2 × 128 ReLU, He) under the grid's budget, best of three."""
    best = 0.0
    for opt, lr in (("adam", 1e-3), ("momentum", 1e-2), ("sgd", 1e-1)):
        spec = RunSpec.from_dict(
            {
                "arch": {"family": "mlp", "depth": 2, "width": 128, "act": "relu", "init": "he"},
                "data": DATA,
                "train": {"optimizer": opt, "lr": lr, "epochs": EPOCHS, "batch_size": BATCH},
            }
        )
        acc = run(spec, progress=False).metrics.get("test_accuracy", math.nan)
        if math.isfinite(acc):
            best = max(best, acc)
    return best


def labelled_and_watched(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chance = chance_accuracy(load_data(DataSpec.from_dict(DATA)).y_test)
    reference = reference_accuracy()
    print(f"chance {chance:.3f}, reference test accuracy {reference:.3f}")
    rows = []
    for raw in specs:
        spec = RunSpec.from_dict(raw)
        plain = run(spec, progress=False)
        acc = plain.metrics.get("test_accuracy", math.nan)
        prog = 0.0 if plain.state is RunState.DIVERGED else progress(acc, chance, reference)
        watch = WatchCallback()
        watched = run(spec, callbacks=[watch], progress=False)
        summary = watch.summary()
        row = {
            "name": spec.name,
            "label": label(prog),
            "progress": prog,
            "plain_state": plain.state.value,
            "plain_steps": plain.steps,
            "plain_seconds": plain.seconds,
            "state": watched.state.value,
            "steps": watched.steps,
            "seconds": watched.seconds,
            "budget": summary["budget_steps"],
            "verdict": summary["verdict"],
            "p_trains": summary["p_trains"],
        }
        rows.append(row)
        print(
            f"{row['name']:34s} label {str(row['label']):5s} progress {prog:6.2f}  "
            f"unwatched {row['plain_state']:8s} {row['plain_steps']:4d} steps "
            f"{row['plain_seconds']:6.2f}s | watched {row['state']:8s} {row['steps']:4d} steps "
            f"{row['seconds']:6.2f}s  {row['verdict']} (P {row['p_trains']:.2f})",
            flush=True,
        )
    return rows


def plain_loop(spec: RunSpec, monitor: bool) -> tuple[float, float]:
    """Seconds of a hand-written loop over the spec's run, with or without ``Monitor``; and the
    seconds spent inside the monitor (its set-up and ``step`` calls)."""
    data = load_data(spec.data)
    model = build_model(spec.arch, in_shape=data.in_shape, out_dim=data.out_dim, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=spec.train.lr)
    x, y = data.x_train, data.y_train
    steps = spec.train.epochs * math.ceil(len(y) / BATCH)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()  # the monitor's set-up counts too
    mon = Monitor(model, opt, steps) if monitor else None
    inside = time.perf_counter() - start
    for _ in range(spec.train.epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), BATCH):
            idx = order[i : i + BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if mon is not None:
                t = time.perf_counter()
                mon.step(loss, (x[idx], y[idx]))
                inside += time.perf_counter() - t
    return time.perf_counter() - start, inside


def overhead(specs: list[dict[str, Any]], rounds: int) -> dict[str, float]:
    """Per spec, the median over rounds of (time with − time without) / time without, and of
    the monitor's own time / (time with − monitor's own time): the second does not subtract
    two noisy totals, so it holds on a busy machine."""
    out = {}
    for raw in specs:
        spec = RunSpec.from_dict(raw)
        ratios, own = [], []
        plain_loop(spec, True)  # warm-up: first-use imports and allocations are not the loop's
        for r in range(rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            t = {m: plain_loop(spec, m) for m in order}
            ratios.append(t[True][0] / t[False][0])
            own.append(t[True][1] / (t[True][0] - t[True][1]))
        out[spec.name] = statistics.median(own)
        print(
            f"overhead {spec.name:34s} monitor's own time {100 * out[spec.name]:.2f} % of the "
            f"loop's; with/without {100 * (statistics.median(ratios) - 1):+.2f} %",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="A smaller grid (16 runs).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="Write every row and figure here.")
    parser.add_argument("--overhead-only", action="store_true", help="Only part 3.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.overhead_only:
        picks = [s for s in grid(False) if s["train"]["optimizer"] == "adam"][:3:2]
        over = overhead([*picks, SIZED], args.rounds)
        print(f"Monitor overhead: {', '.join(f'{100 * v:+.2f} %' for v in over.values())}")
        return
    specs = grid(args.quick)
    rows = labelled_and_watched(specs)
    bad = [r for r in rows if r["label"] is False]
    good = [r for r in rows if r["label"] is True]
    saved_time = 1 - sum(r["seconds"] for r in bad) / max(
        sum(r["plain_seconds"] for r in bad), 1e-9
    )
    saved_steps = 1 - sum(r["steps"] for r in bad) / max(sum(r["plain_steps"] for r in bad), 1)
    stopped_budget = [r["steps"] / r["budget"] for r in bad if r["state"] == "STOPPED"]
    wrongly = sum(r["state"] == "STOPPED" for r in good) / max(len(good), 1)
    healthy = [s for s, r in zip(specs, rows, strict=True) if r["label"] is True]
    picks = healthy[:: max(1, len(healthy) // 3)][:3]
    over = overhead([*picks, SIZED], args.rounds)
    ambiguous = sum(r["label"] is None for r in rows)
    print()
    print(f"runs: {len(rows)} ({len(good)} train, {len(bad)} do not, {ambiguous} ambiguous)")
    print(
        f"compute saved on runs that do not train: {100 * saved_time:.1f} % of their time "
        f"({100 * saved_steps:.1f} % of their steps; goal >= 80 %); stopped runs ended at "
        f"{100 * max(stopped_budget, default=0):.1f} % of the budget at most"
    )
    print(
        f"training runs wrongly stopped: {100 * wrongly:.1f} % "
        f"({sum(r['state'] == 'STOPPED' for r in good)} of {len(good)}; goal <= 2 %)"
    )
    worst = max(over.values(), default=math.nan)
    print(
        f"Monitor overhead on runs that train: median {100 * statistics.median(over.values()):.2f}"
        f" %, worst {100 * worst:.2f} % (goal <= 3 %)"
    )
    if args.json:
        figures = {
            "saved_time": saved_time,
            "saved_steps": saved_steps,
            "wrongly_stopped": wrongly,
            "overhead": over,
        }
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "figures": figures}, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
