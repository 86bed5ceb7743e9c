"""Fit the verdict engine's models on labelled curves, replay it sequentially, score it.

Input rows are :func:`depthlab.diagnosis.calibration.load_labels`'s: a run's recorded step
losses and gradient norms (the trial replays exactly these first steps: same initial weights,
batches and schedule), its baseline loss, its reference net's curve and its measured progress.

- :func:`feature_table`: the engine's features (``depthlab.diagnosis.evidence``) of each run at
  each checkpoint, with the theory probes' features when asked for;
- :func:`fit_all`: per checkpoint (or pooled over checkpoints), a logistic model of P(trains)
  and a linear model of progress (clipped to the engine's range); :func:`cross_predict` their
  out-of-fold predictions, from which come the progress interval (10th/90th error percentiles)
  and the decision thresholds for a stated precision (:func:`thresholds`);
- :func:`replay`: what the engine decides on each run, checkpoint after checkpoint, and when;
- :func:`summary`: agreement (undecided counted by P ≥ 0.5), agreement and coverage of decided
  runs, precision of each answer, Spearman of predicted with measured progress, the share of
  the budget read, and the cost.

Only the rows handed in are used: tuning code passes the tuning half, never the test half.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from depthlab._stats import spearman
from depthlab.diagnosis.calibration import TRAINS_AT, label

#: Precision each decided answer must reach on the tuning half's cross-validated predictions.
PRECISION = {"trainable": 0.99, "won't train": 0.985}
#: Curve features the models read (theory features are added when ``theory=True``).
CURVE = (
    "log_fraction", "below", "drop", "slope", "start", "spike", "noise", "grad_growth",
    "extrapolated", "ref_below", "behind", "relative", "relative_extrapolated", "adaptive",
    "log10_lr",
)  # fmt: skip
THEORY = ("signal_scale", "gradient_scale", "depth_over_xi")


def prefix_features(row: Mapping[str, Any], steps: int, *, fit: bool = True) -> dict[str, float]:
    """The engine's curve features for ``row`` after ``steps`` steps (the recorded curve's
    prefix; ``diverged`` when the run's loss was not finite by then)."""
    from depthlab.diagnosis.evidence import curve_features

    spec = row["spec"]
    loss = [math.nan if v is None else float(v) for v in row["loss"][:steps]]
    grads = [math.inf if v is None else float(v) for v in row["grad_norm"][:steps]]
    diverged_step = row.get("diverged_step")
    if (diverged_step is not None and diverged_step < steps) or not all(map(math.isfinite, loss)):
        return {"diverged": 1.0}
    budget = budget_of(row)
    return curve_features(
        loss,
        steps=steps,
        budget=budget,
        baseline=float(row["baseline"]),
        grad_norms=grads,
        reference=row.get("reference_curve"),
        optimizer=str(spec["train"]["optimizer"]),
        lr=float(spec["train"]["lr"]),
        fit=fit,
    )


def budget_of(row: Mapping[str, Any]) -> int:
    """A run's planned optimizer steps (a diverged run stopped before them)."""
    if row.get("budget_steps"):
        return int(row["budget_steps"])
    if row.get("state") == "COMPLETE":
        return int(row["steps"])
    spec = row["spec"]
    n = int(row.get("n_train") or 0)
    if n:
        batch = min(int(spec["train"]["batch_size"]) or n, n)
        return int(spec["train"]["epochs"]) * math.ceil(n / batch)
    return int(row["steps"])


def checkpoint_steps(budget: int) -> list[int]:
    from depthlab.diagnosis.engine import CHECKPOINTS

    return sorted({max(1, math.ceil(f * budget)) for f in CHECKPOINTS})


def feature_table(
    rows: Sequence[Mapping[str, Any]], *, theory: bool = False, fit: bool = True
) -> list[list[dict[str, float]]]:
    """Per row, per checkpoint, the features the engine reads there."""
    from depthlab.diagnosis.verdict import theory_features

    table = []
    for row in rows:
        steps = checkpoint_steps(budget_of(row))
        extra = theory_features(row.get("theory") or {}, row["spec"]["train"]) if theory else {}
        table.append([{**extra, **prefix_features(row, s, fit=fit)} for s in steps])
    return table


def _matrix(feats: Sequence[Mapping[str, float]], names: Sequence[str], means: Any) -> Any:
    return np.array([[f.get(n, means[i]) for i, n in enumerate(names)] for f in feats])


def _standardise(x: Any) -> tuple[Any, Any]:
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    return mean, scale


#: Inverse L2 strength of the logistic models (sklearn's ``C``).
C = 0.3


#: The model kind :func:`fit_checkpoint` fits: ``trees`` (gradient-boosted) or ``linear``.
KIND = "trees"
#: Gradient boosting's settings (sklearn's names).
TREES = {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.05, "subsample": 0.8}


def _pack_trees(est: Any, names: Sequence[str], fill: Any, x0: Any) -> dict[str, Any]:
    """A fitted sklearn gradient-boosting model as plain data (``evidence.ensemble`` reads it)."""
    trees = []
    total = 0.0
    for stage in est.estimators_[:, 0]:
        t = stage.tree_
        trees.append(
            [
                [int(v) for v in t.feature],
                [float(v) for v in t.threshold],
                [int(v) for v in t.children_left],
                [int(v) for v in t.children_right],
                [float(v) for v in t.value[:, 0, 0]],
            ]
        )
        total += float(stage.predict(x0)[0])
    raw = est.decision_function(x0)[0] if hasattr(est, "decision_function") else est.predict(x0)[0]
    rate = float(est.learning_rate)
    return {
        "kind": "trees",
        "names": list(names),
        "fill": [float(v) for v in fill],
        "init": float(raw) - rate * total,
        "rate": rate,
        "trees": trees,
    }


def fit_checkpoint(
    feats: Sequence[Mapping[str, float]], progress: Sequence[float], names: Sequence[str]
) -> dict[str, Any]:
    """The P(trains) and progress models of one checkpoint, from clear-labelled rows (P) and
    every row (progress): gradient-boosted trees (:data:`KIND` ``trees``), or a logistic and
    a ridge model on standardised features (``linear``)."""
    if KIND == "trees":
        return _fit_trees(feats, progress, names)
    from sklearn.linear_model import LogisticRegression, Ridge

    from depthlab.diagnosis.engine import PROGRESS_RANGE

    names = [n for n in names if any(n in f for f in feats)]
    means = np.array([np.mean([f[n] for f in feats if n in f]) for n in names])
    x = _matrix(feats, names, means)
    mean, scale = _standardise(x)
    z = (x - mean) / scale
    labels = [label(p) for p in progress]
    clear = np.array([t is not None for t in labels])
    y = np.array([bool(t) for t in labels])
    clf = LogisticRegression(C=C, max_iter=2000).fit(z[clear], y[clear])
    target = np.clip(np.asarray(progress, dtype=float), *PROGRESS_RANGE)
    reg = Ridge(alpha=1.0).fit(z, target)

    def pack(intercept: float, weights: Any) -> dict[str, Any]:
        return {
            "intercept": float(intercept),
            "coefficients": {
                n: [float(m), float(s), float(w)]
                for n, m, s, w in zip(names, mean, scale, weights, strict=True)
            },
        }

    return {"p": pack(clf.intercept_[0], clf.coef_[0]), "progress": pack(reg.intercept_, reg.coef_)}


def _fit_trees(
    feats: Sequence[Mapping[str, float]], progress: Sequence[float], names: Sequence[str]
) -> dict[str, Any]:
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    from depthlab.diagnosis.engine import PROGRESS_RANGE

    names = [n for n in names if any(n in f for f in feats)]
    fill = np.array([np.mean([f[n] for f in feats if n in f]) for n in names])
    x = _matrix(feats, names, fill)
    labels = [label(p) for p in progress]
    clear = np.array([t is not None for t in labels])
    y = np.array([bool(t) for t in labels])
    clf = GradientBoostingClassifier(random_state=0, **TREES).fit(x[clear], y[clear])
    target = np.clip(np.asarray(progress, dtype=float), *PROGRESS_RANGE)
    reg = GradientBoostingRegressor(random_state=0, loss="huber", **TREES).fit(x, target)
    return {
        "p": _pack_trees(clf, names, fill, x[:1]),
        "progress": _pack_trees(reg, names, fill, x[:1]),
    }


def cross_predict(
    table: Sequence[Sequence[Mapping[str, float]]],
    progress: Sequence[float],
    names: Sequence[str],
    *,
    folds: int = 5,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Out-of-fold P and predicted progress per row and checkpoint (rows × checkpoints;
    NaN where a row has no such checkpoint or diverged there)."""
    from depthlab.diagnosis.engine import CHECKPOINTS

    n, k = len(table), len(CHECKPOINTS)
    p_out, g_out = np.full((n, k), np.nan), np.full((n, k), np.nan)
    fold = np.random.default_rng(seed).permutation(n) % folds
    for f in range(folds):
        train = [i for i in range(n) if fold[i] != f]
        test = [i for i in range(n) if fold[i] == f]
        models = fit_all(table, progress, names, rows=train)
        for i in test:
            for c, feats in enumerate(table[i]):
                p_out[i, c], g_out[i, c] = predict(models, c, feats)
    return p_out, g_out


def fit_all(
    table: Sequence[Sequence[Mapping[str, float]]],
    progress: Sequence[float],
    names: Sequence[str],
    *,
    rows: Sequence[int] | None = None,
    pooled: bool = True,
) -> list[dict[str, Any]]:
    """One :func:`fit_checkpoint` per checkpoint (diverged prefixes are decided without a
    model and left out); ``pooled``: one model fitted on every checkpoint's features at once
    (``log_fraction`` tells them apart), the same at each — five times the rows per fit."""
    from depthlab.diagnosis.engine import CHECKPOINTS

    idx = range(len(table)) if rows is None else rows
    if pooled:
        pairs = [(feats, progress[i]) for i in idx for feats in table[i] if "diverged" not in feats]
        one = fit_checkpoint([f for f, _ in pairs], [g for _, g in pairs], names)
        return [dict(one) for _ in CHECKPOINTS]
    models = []
    for c in range(len(CHECKPOINTS)):
        pairs = [
            (table[i][c], progress[i])
            for i in idx
            if c < len(table[i]) and "diverged" not in table[i][c]
        ]
        models.append(fit_checkpoint([f for f, _ in pairs], [g for _, g in pairs], names))
    return models


def predict(
    models: Sequence[Mapping[str, Any]], c: int, feats: Mapping[str, float]
) -> tuple[float, float]:
    """P(trains) and predicted progress at checkpoint ``c`` (a diverged prefix: 0 and 0)."""
    from depthlab.diagnosis.engine import PROGRESS_RANGE
    from depthlab.diagnosis.evidence import probability_of, value_of

    if "diverged" in feats:
        return 0.0, 0.0
    p, _ = probability_of(models[c]["p"], feats)
    g = min(max(value_of(models[c]["progress"], feats), PROGRESS_RANGE[0]), PROGRESS_RANGE[1])
    return p, g


def thresholds(
    p: Any, progress: Sequence[float], precision: Mapping[str, float] = PRECISION
) -> list[tuple[float, float]]:
    """Per checkpoint, (lo, hi): the loosest thresholds whose decided answers reach the stated
    precision on the clear rows' cross-validated P (``p``: rows × checkpoints)."""
    labels = [label(g) for g in progress]
    out = []
    for c in range(p.shape[1]):
        pairs = [
            (float(p[i, c]), bool(t))
            for i, t in enumerate(labels)
            if t is not None and math.isfinite(p[i, c])
        ]
        hi = _loosest([(q, t) for q, t in pairs], precision["trainable"], up=True)
        lo = _loosest([(1 - q, not t) for q, t in pairs], precision["won't train"], up=True)
        out.append((1.0 - lo, hi))
    return out


def _loosest(pairs: Sequence[tuple[float, bool]], target: float, *, up: bool) -> float:
    """The lowest score s such that the pairs scoring ≥ s are right at least ``target`` of
    the time (and at least 5 of them); 1.0 (never) when none is."""
    ranked = sorted(pairs, key=lambda t: -t[0])
    best, right = 1.0 + 1e-9, 0
    for n, (score, truth) in enumerate(ranked, 1):
        right += truth
        nxt = ranked[n][0] if n < len(ranked) else -math.inf
        if nxt == score:
            continue
        if n >= 5 and right / n >= target:
            best = score
    return min(best, 1.0 + 1e-9)


def replay(
    p: Any, g: Any, cuts: Sequence[tuple[float, float]], budgets: Sequence[int]
) -> list[dict[str, Any]]:
    """The engine's sequential answer per row from its P and progress at each checkpoint:
    the first checkpoint where P is at or beyond that checkpoint's thresholds decides; past the
    last, ``undecided`` with the last P."""
    out = []
    for i, budget in enumerate(budgets):
        steps = checkpoint_steps(budget)
        answer: dict[str, Any] | None = None
        for c, step in enumerate(steps):
            q = float(p[i, c])
            lo, hi = cuts[c]
            if q <= 0.0 and g[i, c] == 0.0 or q >= hi or q <= lo:
                verdict = "trainable" if q >= hi else "won't train"
                answer = {"verdict": verdict, "decided": True, "checkpoint": c}
            if answer is not None or c == len(steps) - 1:
                answer = answer or {"verdict": "undecided", "decided": False, "checkpoint": c}
                answer.update(
                    p_trains=q, predicted_progress=float(g[i, c]), step=step, budget=budget
                )
                break
        out.append(answer or {})
    return out


def summary(
    answers: Sequence[Mapping[str, Any]],
    progress: Sequence[float],
    *,
    cost: Callable[[int, Mapping[str, Any]], float] | None = None,
) -> dict[str, float]:
    """The figures of the module doc for the answers on rows of measured ``progress``."""
    labels = [label(g) for g in progress]
    clear = [(a, t) for a, t in zip(answers, labels, strict=True) if t is not None]
    said = [(a["p_trains"] >= 0.5, t) for a, t in clear]
    decided = [(a["verdict"] == "trainable", t) for a, t in clear if a["decided"]]
    yes = [t for s, t in decided if s]
    no = [t for s, t in decided if not s]
    read = [a["step"] / a["budget"] for a in answers]
    out = {
        "n": float(len(clear)),
        "n_ambiguous": float(len(answers) - len(clear)),
        "agreement": _mean([float(s == t) for s, t in said]),
        "decided_agreement": _mean([float(s == t) for s, t in decided]),
        "coverage": len(decided) / max(len(clear), 1),
        "precision_trainable": _mean([float(t) for t in yes]),
        "precision_wont": _mean([float(not t) for t in no]),
        "n_trainable_calls": float(len(yes)),
        "n_wont_calls": float(len(no)),
        "spearman_progress": spearman([a["predicted_progress"] for a in answers], list(progress)),
        "budget_read_mean": _mean(read),
        "trains_fraction": _mean([float(g >= TRAINS_AT) for g in progress]),
    }
    if cost is not None:
        costs = sorted(cost(i, a) for i, a in enumerate(answers))
        out["cost_mean"] = _mean(costs)
        out["cost_median"] = costs[len(costs) // 2] if costs else math.nan
        out["cost_p90"] = costs[int(0.9 * (len(costs) - 1))] if costs else math.nan
    return out


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan
