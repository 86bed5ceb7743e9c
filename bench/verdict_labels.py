"""Label the verdict's calibration grid: train every run, recording its whole curve.

Each run of ``depthlab.diagnosis.calibration.GRID`` is trained for its full budget with the
training loop every run uses, and one JSON line is written per run to ``labels.jsonl``: its
final test accuracy, the minibatch loss and global gradient norm ‖∇_θ L‖₂ of every optimizer
step (what both of the verdict engine's feeds see: the trial replays a run's first steps with
the same initial weights, batches and schedule; ``depthlab.watch`` reads the real run), the
theory probes at initialisation (``signal``, ``gradients``, ``correlation``, ``meanfield``)
with their time, and the training time. Half the short-budget runs of the test half (by a hash
of the run id) are trained a second time with another seed (``seed2``): how often two seeds
agree is the labels' own ceiling.

The shallow reference nets (``calibration.reference_runs``) are trained first; the reference
net's own first steps under each (data, optimizer, lr, batch, budget) are recorded once per
setup in ``reference_curves.json`` (the cache the trial probe keeps too).

Runs are taken short budgets first, each budget in a fixed shuffled order (any prefix is a
random sample of its budget's runs), and the job resumes where it stopped::

    nice -n 10 python bench/verdict_labels.py --out bench-out/verdict_calibration
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from depthlab.diagnosis import calibration as cal

THEORY = ("signal", "gradients", "correlation", "meanfield")


class Recorder:
    """A training callback keeping each step's loss and global gradient norm."""

    def __init__(self) -> None:
        self.loss: list[float] = []
        self.grad_norm: list[float] = []

    def on_train_start(self, state: Any) -> None: ...
    def loss_term(self, *args: Any) -> None:
        return None

    def on_after_backward(self, state: Any) -> None:
        grads = [q.grad.detach() for q in state.model.parameters() if q.grad is not None]
        norm = (
            float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))
            if grads
            else 0.0
        )
        self.grad_norm.append(norm if math.isfinite(norm) else math.inf)

    def on_step_end(self, state: Any) -> None:
        self.loss.append(float(state.loss))

    def on_epoch_end(self, state: Any, metrics: dict[str, float]) -> None: ...
    def on_train_end(self, state: Any) -> None: ...


_DATA: dict[str, Any] = {}


def _data(spec: Any) -> Any:
    from depthlab.data import load_data

    key = json.dumps(spec.data.to_dict(), sort_keys=True)
    if key not in _DATA:
        _DATA[key] = load_data(spec.data)
    return _DATA[key]


def _round(xs: list[float]) -> list[float | None]:
    return [float(f"{x:.5g}") if math.isfinite(x) else None for x in xs]


def train_one(spec_dict: dict[str, Any], *, theory: bool) -> dict[str, Any]:
    """Train one run, recording its curve (and the theory probes at init)."""
    from depthlab.diagnosis.run import DiagnoseOptions, diagnose
    from depthlab.models import build_model
    from depthlab.probes.base import ProbeBatch
    from depthlab.spec import RunSpec
    from depthlab.train import fit

    spec = RunSpec.from_dict(spec_dict)
    data = _data(spec)

    def build() -> Any:
        return build_model(
            spec.arch,
            in_shape=data.in_shape,
            out_dim=data.out_dim,
            seed=spec.train.seed,
            graph=data.edge_index,
        )

    row: dict[str, Any] = {}
    if theory:
        batch = ProbeBatch.from_tensors(data.x_train, data.y_train, spec.train.loss)
        options = DiagnoseOptions(probes=THEORY, seed=spec.train.seed, seeds=1, train=spec.train)
        started = time.perf_counter()
        try:
            result = diagnose(build(), batch, options, name="run", progress=False)
            row["theory"] = {k: result.get(k) for k in (*THEORY, "architecture", "coverage")}
            row["theory_status"] = result["probes"]
        except Exception as exc:  # noqa: BLE001 - recorded, the run is still trained
            row["theory_error"] = f"{type(exc).__name__}: {exc}"[:300]
        row["theory_seconds"] = time.perf_counter() - started
    rec = Recorder()
    result_t = fit(build(), data, spec.train, callbacks=[rec], progress=False)  # type: ignore[list-item]
    row.update(
        state=result_t.state.value,
        test_accuracy=result_t.metrics.get("test_accuracy", math.nan),
        steps=result_t.steps,
        seconds=result_t.seconds,
        diverged_step=result_t.diverged_step,
        loss=_round(rec.loss),
        grad_norm=_round(rec.grad_norm),
    )
    return row


def _short_epochs(spec: dict[str, Any]) -> int:
    """The short budget's epochs for this run's dataset (the second seed trains those only)."""
    return int(cal.DATASETS[spec["data"]["name"]]["epochs"])


def _order(run_id: str) -> str:
    return hashlib.sha256(f"order:{run_id}".encode()).hexdigest()


def reference_curve(spec_dict: dict[str, Any], cache: dict[str, Any]) -> None:
    """The reference net's first ``cap`` steps under this run's setup, once per setup."""
    from depthlab.diagnosis.engine import CHECKPOINTS
    from depthlab.probes.base import ProbeBatch
    from depthlab.probes.trial import budget_steps, reference_trial
    from depthlab.spec import RunSpec

    spec = RunSpec.from_dict(spec_dict)
    key = cal.setup_key(spec_dict)
    if key in cache:
        return
    data = _data(spec)
    if data.edge_index is not None:
        cache[key] = None  # graph nets have no vector reference net
        return
    batch = ProbeBatch.from_tensors(data.x_train, data.y_train, spec.train.loss)
    cap = math.ceil(CHECKPOINTS[-1] * budget_steps(spec.train, len(batch.x)))
    started = time.perf_counter()
    ref = reference_trial(batch, spec.train, cap, 512, data.out_dim)
    cache[key] = {
        "loss": _round(ref["loss"]),
        "grad_norm": _round(ref["grad_norm"]),
        "diverged": ref["diverged"],
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    from depthlab.spec import RunSpec
    from depthlab.sweep import SweepSpec, planned_records
    from depthlab.train import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0, help="stop after this many runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    refs_path = out / "references.json"
    refs: dict[str, Any] = json.loads(refs_path.read_text()) if refs_path.exists() else {}
    for spec in cal.reference_runs():
        if spec["name"] in refs:
            continue
        result = run(RunSpec.from_dict(spec), progress=False)
        refs[spec["name"]] = {
            "state": result.state.value,
            "test_accuracy": result.metrics.get("test_accuracy", float("nan")),
            "seconds": result.seconds,
        }
        refs_path.write_text(json.dumps(refs, indent=1))
        print(spec["name"], refs[spec["name"]], flush=True)
    curves_path = out / "reference_curves.json"
    curves: dict[str, Any] = json.loads(curves_path.read_text()) if curves_path.exists() else {}
    records = [r for s in cal.GRID for r in planned_records(SweepSpec.from_dict(s))]
    # short budgets first (a long run costs five short ones), each in a fixed shuffled order
    records.sort(
        key=lambda r: (r.spec["train"]["epochs"] != _short_epochs(r.spec), _order(r.run_id))
    )
    path = out / "labels.jsonl"
    done = set()
    if path.exists():
        done = {json.loads(line)["run_id"] for line in path.read_text().splitlines() if line}
    todo = [r for r in records if r.run_id not in done]
    print(f"{len(records)} runs, {len(done)} labelled, {len(todo)} to go", flush=True)
    started = time.perf_counter()
    with path.open("a") as fh:
        for k, record in enumerate(todo):
            if args.limit and k >= args.limit:
                break
            spec = dict(record.spec)
            half = cal.half_of(record.run_id)
            t0 = time.perf_counter()
            try:
                row = train_one(spec, theory=True)
                if (
                    half == "test"
                    and spec["train"]["epochs"] == _short_epochs(spec)
                    and int(_order(record.run_id)[-1], 16) % 2 == 0
                ):
                    spec2 = json.loads(json.dumps(spec))
                    spec2["train"]["seed"] = 1
                    second = train_one(spec2, theory=False)
                    row["seed2"] = {
                        "state": second["state"],
                        "test_accuracy": second["test_accuracy"],
                    }
                n_curves = len(curves)
                reference_curve(spec, curves)
                if len(curves) != n_curves:
                    curves_path.write_text(json.dumps(curves))
            except Exception as exc:  # noqa: BLE001 - a failed run is recorded and skipped
                row = {"state": "FAILED", "error": f"{type(exc).__name__}: {exc}"[:300]}
            line = {"run_id": record.run_id, "half": half, "spec": spec, **row}
            fh.write(json.dumps(line, allow_nan=True) + "\n")
            fh.flush()
            print(
                f"{k + 1}/{len(todo)} {spec.get('name', '')[:90]} {half} {row.get('state')} "
                f"acc {row.get('test_accuracy', math.nan):.3f} train {row.get('seconds', 0):.1f}s "
                f"theory {row.get('theory_seconds', 0):.1f}s all {time.perf_counter() - t0:.1f}s "
                f"elapsed {time.perf_counter() - started:.0f}s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
