"""Measure a verdict against training: the configuration grid, its fixed split, labels, scores.

The grid is a set of sweeps (:data:`GRID`) over five datasets (four vector datasets and a
planted-partition graph), families (mlp, resmlp, cnn1d; gcn, sage and gin on the graph), depths
up to 32, widths, every registered activation and initialisation, norms, residual scalings,
optimizers and learning rates: 600 configurations drawn at random, with budgets of about 300
(:data:`BUDGETS` ``short``) and about 1500 steps (``long``; depths up to 16, so that the grid
can be labelled on a laptop).
Every run is assigned to the *tuning* or the *test* half by a hash of its run id
(:func:`half_of`): fixed before any threshold is set, independent of results, and the same on
every machine. Tuning code obtains runs only through :func:`load_half` (or
:func:`runs_of_half`), which hand out one half only. Leave-one-kind-out (:data:`KINDS`,
:func:`kinds`) holds out each activation, family, dataset and budget in turn.

A run *trains* when its test accuracy gets at least halfway from chance (the majority class of
the test split) to a shallow reference network trained under the same budget
(:func:`progress`). Runs whose progress falls in the ambiguous band
(0.35, 0.65) are left out of agreement scores and counted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from depthlab._stats import spearman
from depthlab.exceptions import DepthlabError

HALVES = ("tuning", "test")
#: The salt of the split. Changing it would re-draw the halves: never, once thresholds are tuned.
SPLIT_SALT = "depthlab-verdict-calibration-v1"
AMBIGUOUS = (0.35, 0.65)
TRAINS_AT = 0.5

#: Datasets of the grid, with the epochs that give each about 300 steps at batch size 64
#: (graph data trains full batch: one step per epoch).
DATASETS: dict[str, dict[str, Any]] = {
    "mnist1d": {"data": {"name": "mnist1d", "seed": 0}, "epochs": 5},
    "digits": {"data": {"name": "digits", "seed": 0}, "epochs": 15},
    "breast_cancer": {"data": {"name": "breast_cancer", "seed": 0}, "epochs": 43},
    "teacher": {
        "data": {"name": "teacher", "seed": 0, "n_samples": 2000, "n_classes": 4},
        "epochs": 14,
    },
    "csbm": {"data": {"name": "csbm", "seed": 0}, "epochs": 300},
}
#: Budgets of the grid: the epochs above (about 300 steps) and five times as many (about 1500).
BUDGETS: dict[str, int] = {"short": 1, "long": 5}

_OPTIM = {
    "train.optimizer": ["sgd", "momentum", "adam", "adamw"],
    "train.lr": [1e-4, 1e-3, 1e-2, 1e-1],
}
#: Every registered activation.
_ACTS = [
    "relu", "leaky_relu", "tanh", "sigmoid", "selu", "elu", "gelu", "silu", "softplus", "mish",
    "hardtanh", "linear",
]  # fmt: skip
#: Every registered initialisation.
_INITS = ["he", "lecun", "xavier", "orthogonal", "critical", "zero"]
_NORMS = ["none", "batch", "layer"]


def _base(dataset: str, family: str, budget: str = "short", **arch: Any) -> dict[str, Any]:
    d = DATASETS[dataset]
    return {
        "arch": {"family": family, **arch},
        "data": d["data"],
        "train": {
            "optimizer": "adam",
            "lr": 1e-3,
            "epochs": d["epochs"] * BUDGETS[budget],
            "batch_size": 64,
            "eval_every": 0,  # test once, at the end
        },
    }


#: Runs drawn per (family, budget) and dataset: (short, long).
_COUNTS = {"mlp": (72, 14), "resmlp": (34, 8), "cnn1d": (50, 10), "graph": (24, 4)}


def _grid() -> list[dict[str, Any]]:
    sweeps: list[dict[str, Any]] = []
    vector = [d for d in DATASETS if d != "csbm"]
    for b, budget in enumerate(BUDGETS):
        for i, dataset in enumerate(vector):
            sweeps.append(
                {
                    "name": f"mlp-{dataset}-{budget}",
                    "base": _base(dataset, "mlp", budget, width=64),
                    "axes": {
                        "arch.depth": [2, 4, 8, 16, 32][: 5 - b],
                        "arch.width": [16, 32, 64],
                        "arch.act": _ACTS,
                        "arch.init": _INITS,
                        "arch.norm": _NORMS,
                        **_OPTIM,
                    },
                    "strategy": "random",
                    "budget": _COUNTS["mlp"][b],
                    "sample_seed": 100 + i + 1000 * b,
                }
            )
            sweeps.append(
                {
                    "name": f"resmlp-{dataset}-{budget}",
                    "base": _base(dataset, "resmlp", budget, width=32),
                    "axes": {
                        "arch.depth": [4, 8, 16, 32][: 4 - b],
                        "arch.act": _ACTS,
                        "arch.init": _INITS,
                        "arch.norm": _NORMS,
                        "arch.residual": ["none", "fixed", "inv_sqrt_depth", "rezero"],
                        **_OPTIM,
                    },
                    "strategy": "random",
                    "budget": _COUNTS["resmlp"][b],
                    "sample_seed": 200 + i + 1000 * b,
                }
            )
        sweeps.append(
            {
                "name": f"cnn1d-mnist1d-{budget}",
                "base": _base("mnist1d", "cnn1d", budget, width=16),
                "axes": {
                    "arch.depth": [2, 4, 8, 16][: 4 - b],
                    "arch.width": [8, 16],
                    "arch.act": _ACTS,
                    "arch.init": _INITS,
                    "arch.norm": ["none", "batch"],
                    **_OPTIM,
                },
                "strategy": "random",
                "budget": _COUNTS["cnn1d"][b],
                "sample_seed": 300 + 1000 * b,
            }
        )
        sweeps.append(
            {
                "name": f"graph-csbm-{budget}",
                "base": _base("csbm", "gcn", budget, width=32),
                "axes": {
                    "arch.family": ["gcn", "sage", "gin"],
                    "arch.depth": [2, 4, 8, 16][: 4 - b],
                    "arch.act": _ACTS,
                    "arch.init": _INITS,
                    "arch.norm": _NORMS,
                    **_OPTIM,
                },
                "strategy": "random",
                "budget": _COUNTS["graph"][b],
                "sample_seed": 400 + 1000 * b,
            }
        )
    return sweeps


#: The calibration grid: sweep files as plain data (``SweepSpec.from_dict`` each).
GRID: list[dict[str, Any]] = _grid()


def reference_runs() -> list[dict[str, Any]]:
    """The shallow reference nets: a 2-hidden-layer ReLU/He MLP of width 128 per dataset and
    budget (a 2-layer GCN of width 128 on graphs), with three standard optimizer settings; a
    dataset's reference accuracy under a budget is the best of the three."""
    runs = []
    for budget in BUDGETS:
        for dataset in DATASETS:
            family = "gcn" if dataset == "csbm" else "mlp"
            for optimizer, lr in (("adam", 1e-3), ("momentum", 1e-2), ("sgd", 1e-1)):
                spec = _base(dataset, family, budget, depth=2, width=128, act="relu", init="he")
                spec["train"].update(optimizer=optimizer, lr=lr)
                spec["name"] = f"reference-{dataset}-{budget}-{optimizer}"
                runs.append(spec)
    return runs


def setup_key(spec: Mapping[str, Any]) -> str:
    """What the reference net's curve depends on: data, optimizer, lr, momentum, batch size,
    schedule and budget (never the network)."""
    train = spec["train"]
    keep = (
        "optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs", "schedule",
        "warmup_epochs", "grad_clip", "seed",
    )  # fmt: skip
    return json.dumps([spec["data"], {k: train.get(k) for k in keep}], sort_keys=True)


def half_of(run_id: str) -> str:
    """``tuning`` or ``test``: a fixed hash of the run id, decided before any result exists.

    The run id is the one the store recorded when the grid was planned (a hash of the spec as
    it was then), so a spec field added later does not move a run to the other half."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{run_id}".encode()).digest()
    return HALVES[digest[0] & 1]


def runs_of_half(records: Iterable[Any], half: str) -> list[Any]:
    """The records (anything with ``run_id``) of one half; the only way tuning code gets runs."""
    if half not in HALVES:
        raise DepthlabError(f"unknown half {half!r}; choices: {', '.join(HALVES)}")
    return [r for r in records if half_of(r.run_id) == half]


def progress(accuracy: float, chance: float, reference: float) -> float:
    """How far from chance to the reference net a run got: 0 at chance, 1 at the reference."""
    if not math.isfinite(accuracy):
        return 0.0
    span = reference - chance
    if span <= 0:
        raise DepthlabError(
            f"the reference accuracy {reference:.3f} is not above chance {chance:.3f}"
        )
    return (accuracy - chance) / span


def label(prog: float | None) -> bool | None:
    """``True`` trains, ``False`` does not, ``None`` ambiguous (left out of agreement)."""
    if prog is None:
        return False
    if AMBIGUOUS[0] < prog < AMBIGUOUS[1]:
        return None
    return prog >= TRAINS_AT


@dataclasses.dataclass(frozen=True)
class Scores:
    """Verdict quality on one set of labelled runs."""

    n: int
    n_ambiguous: int
    agreement: float
    precision: float
    recall: float
    brier: float
    spearman: float

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def scores(
    predicted: Sequence[float], outcome: Sequence[float], *, threshold: float = 0.5
) -> Scores:
    """Agreement, precision and recall of *trainable* (P ≥ ``threshold``), Brier score on the
    clear cases, and Spearman's ρ of P with the measured progress over every run."""
    clear = [(p, label(o)) for p, o in zip(predicted, outcome, strict=True) if label(o) is not None]
    tp = sum(1 for p, t in clear if p >= threshold and t)
    fp = sum(1 for p, t in clear if p >= threshold and not t)
    fn = sum(1 for p, t in clear if p < threshold and t)
    agree = sum(1 for p, t in clear if (p >= threshold) == t)
    brier = sum((p - float(bool(t))) ** 2 for p, t in clear) / max(len(clear), 1)
    return Scores(
        n=len(clear),
        n_ambiguous=len(predicted) - len(clear),
        agreement=agree / max(len(clear), 1),
        precision=tp / (tp + fp) if tp + fp else math.nan,
        recall=tp / (tp + fn) if tp + fn else math.nan,
        brier=brier,
        spearman=spearman(predicted, outcome),
    )


def reliability(
    predicted: Sequence[float], outcome: Sequence[float], bins: int = 10
) -> list[dict[str, float]]:
    """Per bin of predicted P: its mean, the observed fraction that trained, and the count."""
    rows = []
    clear = [(p, label(o)) for p, o in zip(predicted, outcome, strict=True) if label(o) is not None]
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [(p, t) for p, t in clear if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if inside:
            rows.append(
                {
                    "lo": lo,
                    "hi": hi,
                    "predicted": sum(p for p, _ in inside) / len(inside),
                    "observed": sum(1 for _, t in inside if t) / len(inside),
                    "n": float(len(inside)),
                }
            )
    return rows


def chance_accuracy(y_test: Any) -> float:
    """The majority class's share of the test labels (what a constant predictor scores)."""
    import torch

    counts = torch.bincount(y_test)
    return float(counts.max()) / float(counts.sum())


def reference_accuracy(outcomes: Mapping[str, float]) -> float:
    """The best reference net's test accuracy of a dataset (finite ones only)."""
    finite = [v for v in outcomes.values() if isinstance(v, int | float) and math.isfinite(v)]
    if not finite:
        raise DepthlabError("no reference run finished with a finite test accuracy")
    return max(finite)


# ---------------------------------------------------------------- a calibration directory
#
# ``labels.jsonl`` (one trained run per line: its spec, half, test accuracy and whole curve,
# written by ``bench/verdict_labels.py``), ``references.json`` (the reference nets'
# accuracies) and ``reference_curves.json`` (the reference net's first steps per setup).

#: What a run is, for leave-one-kind-out: each kind names a column of :func:`kinds`.
KINDS = ("act", "family", "dataset", "budget")


def kinds(spec: Mapping[str, Any]) -> dict[str, str]:
    """A run's activation, family, dataset and budget (``short`` ≈ 300 or ``long`` ≈ 1500
    steps), the groups leave-one-kind-out holds out in turn."""
    dataset = str(spec["data"]["name"])
    epochs = int(spec["train"]["epochs"])
    budget = next(
        (b for b, m in BUDGETS.items() if DATASETS.get(dataset, {}).get("epochs", 0) * m == epochs),
        str(epochs),
    )
    family = str(spec["arch"]["family"])
    return {
        "act": str(spec["arch"].get("act", "")),
        "family": "graph" if family in ("gcn", "sage", "gin") else family,
        "dataset": dataset,
        "budget": budget,
    }


def baseline_of(y: Any, n_classes: int) -> float:
    """The best constant predictor's cross-entropy: the entropy of the label frequencies."""
    import torch

    freq = torch.bincount(y, minlength=n_classes).double() / len(y)
    freq = freq[freq > 0]
    return float(-(freq * freq.log()).sum())


def _dataset_facts(data_spec: Mapping[str, Any]) -> dict[str, float]:
    """Chance accuracy (majority class of the test split), the constant predictor's training
    loss and the training samples (0 for a graph, trained full batch) of a dataset."""
    from depthlab.data import load_data
    from depthlab.spec import DataSpec

    data = load_data(DataSpec.from_dict(dict(data_spec)))
    mask = data.mask("train")
    y_train = data.y_train if mask is None else data.y_train[mask]
    _, y_test = data.split("test")[:2]
    test_mask = data.mask("test")
    if test_mask is not None:
        y_test = data.y_train[test_mask]
    return {
        "chance": chance_accuracy(y_test),
        "baseline": baseline_of(y_train, data.n_classes),
        # a graph trains full batch: one step per epoch
        "n_train": 0 if mask is not None else len(data.y_train),
    }


def load_labels(
    out: Path, *, facts: Mapping[str, Mapping[str, float]] | None = None
) -> list[dict[str, Any]]:
    """Every finished run of ``labels.jsonl`` with its kinds, baseline loss, reference curve,
    measured progress and label (``seed2_progress``/``seed2_label`` where a second seed ran).

    ``facts``: per dataset name, ``chance`` and ``baseline`` (computed from the data when not
    given). A run that failed to build or train (``FAILED``) is left out."""
    out = Path(out)
    refs = json.loads((out / "references.json").read_text())
    curves_path = out / "reference_curves.json"
    curves = json.loads(curves_path.read_text()) if curves_path.exists() else {}
    known: dict[str, Mapping[str, float]] = dict(facts or {})
    rows = []
    path = out / "labels.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        entry = json.loads(line)
        if entry.get("state") not in ("COMPLETE", "DIVERGED"):
            continue
        spec = entry["spec"]
        kind = kinds(spec)
        dataset = kind["dataset"]
        if dataset not in known:
            known[dataset] = _dataset_facts(spec["data"])
        chance, base = known[dataset]["chance"], known[dataset]["baseline"]
        ref = reference_accuracy(
            {
                k: v["test_accuracy"]
                for k, v in refs.items()
                if k.startswith(f"reference-{dataset}-{kind['budget']}-")
            }
        )

        def prog(state: str, acc: float, chance: float = chance, ref: float = ref) -> float:
            return 0.0 if state == "DIVERGED" else progress(acc, chance, ref)

        p = prog(entry["state"], entry.get("test_accuracy", math.nan))
        n_train = int(known[dataset].get("n_train", 0))
        train = spec["train"]
        per_epoch = (
            math.ceil(n_train / min(int(train["batch_size"]) or n_train, n_train)) if n_train else 1
        )
        row = {
            **entry,
            **kind,
            "budget_steps": int(train["epochs"]) * per_epoch,
            "baseline": base,
            "reference_curve": (curves.get(setup_key(spec)) or {}).get("loss"),
            "progress": p,
            "label": label(p),
        }
        second = entry.get("seed2")
        if second:
            row["seed2_progress"] = prog(second["state"], second.get("test_accuracy", math.nan))
            row["seed2_label"] = label(row["seed2_progress"])
        rows.append(row)
    return rows


def load_half(out: Path, half: str) -> list[dict[str, Any]]:
    """The labelled runs :func:`half_of` assigns to ``half`` (see :func:`load_labels`); tuning
    code that calls ``load_half(out, "tuning")`` never sees a test run."""
    if half not in HALVES:
        raise DepthlabError(f"unknown half {half!r}; choices: {', '.join(HALVES)}")
    return [r for r in load_labels(out) if half_of(r["run_id"]) == half]
