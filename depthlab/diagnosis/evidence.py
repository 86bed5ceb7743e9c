"""What a run's curve says at a checkpoint: the numbers P(trains) and predicted progress read.

Every feature comes from what both of the verdict engine's feeds have — the minibatch loss of
each optimizer step so far, the global gradient norm ‖∇_θ L‖₂ when the feed gives it, the best
constant predictor's loss ``b`` (the entropy of the label frequencies for cross-entropy) and,
when known, the shallow reference net's curve under the same setup. Losses are in units of
``b``, so the numbers mean the same on every dataset:

=================== ==========================================================================
feature             definition
=================== ==========================================================================
``log_fraction``    log₂ of the fraction of the budget seen
``below``           1 − L̄_end / b: how far below the constant predictor the curve is now
                    (L̄_end the mean loss over the last quarter of the steps seen)
``drop``            (L̄_start − L̄_end) / b, L̄_start the mean of the first tenth of the steps
``slope``           −dL/d ln t / b, least squares on the log-binned curve's second half: the
                    loss's fall per e-fold of steps, which moves before accuracy does
``start``           log₁₀(L₁ / b): a start far above the constant predictor (a bad scale)
``spike``           log₁₀(max L / L₁) over the steps seen (instability)
``noise``           standard deviation of the last quarter's losses / b
``grad_growth``     log₁₀ of the mean ‖∇L‖ over the last quarter over that of the first tenth
``extrapolated``    1 − L̂(T) / b, L̂(T) the loss the parametric fits
                    (``depthlab.diagnosis.curves``) expect at the budget T
``ref_below``       the reference net's ``below`` after as many steps
``behind``          ``ref_below − below``: how far the run trails the reference
``relative``        ``below / ref_below``: the run's fall as a fraction of the reference's
``relative_ext…``   ``extrapolated / ref_below``
``adaptive``        1 for Adam-family optimizers, 0 for the SGD family
``log10_lr``        log₁₀ of the learning rate
=================== ==========================================================================

Every value is clipped to a fixed range, so one wild curve cannot dominate a linear model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Families the engine fits at a checkpoint (all five: a few milliseconds each).
FIT_FAMILIES = ("pow3", "ilog2", "mmf", "weibull", "janoschek")
#: The curve's first fraction of steps that stands for its start; its last quarter, its end.
START, END = 0.1, 0.25


def curve_features(
    losses: Sequence[float],
    *,
    steps: int,
    budget: int,
    baseline: float,
    stride: int = 1,
    grad_norms: Sequence[float] | None = None,
    reference: Sequence[float] | None = None,
    optimizer: str = "adam",
    lr: float = 1e-3,
    fit: bool = True,
) -> dict[str, float]:
    """The features of the module doc for a curve whose ``steps`` first steps were seen
    (``losses[i]`` is step ``i·stride``'s loss); ``reference``: the reference net's step losses
    (at least ``steps`` of them to be used fully)."""
    y = np.asarray([v for v in losses if math.isfinite(v)], dtype=float)
    b = baseline if baseline and baseline > 0 else (float(y[0]) if len(y) else 1.0)
    out: dict[str, float] = {
        "log_fraction": math.log2(max(steps, 1) / max(budget, 1)),
        "adaptive": 0.0 if optimizer in ("sgd", "momentum") else 1.0,
        "log10_lr": math.log10(lr) if lr > 0 else -6.0,
    }
    if len(y) == 0:
        return out
    first, last = _ends(y)
    out["below"] = _clip(1.0 - last / b, -2.0, 1.0)
    out["drop"] = _clip((first - last) / b, -2.0, 1.0)
    out["start"] = _clip(math.log10(max(float(y[0]), 1e-12) / b), -2.0, 3.0)
    out["spike"] = _clip(math.log10(max(float(y.max()), 1e-12) / max(float(y[0]), 1e-12)), 0, 3)
    k = max(1, int(END * len(y)))
    out["noise"] = _clip(float(y[-k:].std()) / b, 0.0, 2.0)
    out["slope"] = _clip(_log_slope(y, stride) / b, -1.0, 1.0)
    if grad_norms is not None and len(grad_norms) >= 2:
        g = np.asarray([v for v in grad_norms if math.isfinite(v)], dtype=float)
        if len(g) >= 2:
            g0, g1 = _ends(g)
            out["grad_growth"] = _clip(math.log10(max(g1, 1e-30) / max(g0, 1e-30)), -6.0, 6.0)
    out["extrapolated"] = out["below"]
    if fit and len(y) >= 6:
        from depthlab.diagnosis.curves import extrapolate

        got = extrapolate(y.tolist(), budget, stride=stride, families=FIT_FAMILIES)
        if got is not None:
            out["extrapolated"] = _clip(1.0 - got["loss"] / b, -2.0, 1.0)
    if reference is not None and len(reference) > 0:
        r = np.asarray([v for v in reference[: max(steps, 1)] if math.isfinite(v)], dtype=float)
        if len(r):
            _, r_last = _ends(r)
            out["ref_below"] = _clip(1.0 - r_last / b, -2.0, 1.0)
    return derived(out)


def derived(feats: dict[str, float]) -> dict[str, float]:
    """The features read against the reference's: ``behind``, ``relative`` (``below`` /
    ``ref_below``) and ``relative_extrapolated`` (``extrapolated`` / ``ref_below``), the
    reference's fall floored at 0.05 of the constant predictor's loss."""
    ref = feats.get("ref_below")
    if ref is None or "below" not in feats:
        return feats
    floor = max(ref, 0.05)
    feats["behind"] = _clip(ref - feats["below"], -2.0, 2.0)
    feats["relative"] = _clip(feats["below"] / floor, -2.0, 3.0)
    feats["relative_extrapolated"] = _clip(feats.get("extrapolated", feats["below"]) / floor, -2, 3)
    return feats


def _ends(y: np.ndarray) -> tuple[float, float]:
    a = max(1, int(START * len(y)))
    k = max(1, int(END * len(y)))
    return float(y[:a].mean()), float(y[-k:].mean())


def _log_slope(y: np.ndarray, stride: int) -> float:
    """−dL/d ln t over the second half (in steps) of the log-binned curve."""
    from depthlab.diagnosis.curves import binned

    t, v = binned(y.tolist(), stride=stride)
    keep = t >= t[-1] / 2 if len(t) > 4 else np.ones(len(t), dtype=bool)
    if keep.sum() < 2:
        keep = np.ones(len(t), dtype=bool)
    if keep.sum() < 2:
        return 0.0
    lt = np.log(t[keep])
    if float(lt.std()) == 0.0:
        return 0.0
    return -float(np.polyfit(lt, v[keep], 1)[0])


def _clip(x: float, lo: float, hi: float) -> float:
    if not math.isfinite(x):
        return lo if x < 0 else hi
    return max(lo, min(hi, float(x)))


def logistic(model: Mapping[str, Any], feats: Mapping[str, float]) -> tuple[float, float]:
    """P from a stored logistic model (``intercept``, ``coefficients``: name → (mean, scale,
    weight) on standardised features; a missing feature counts as its mean) and its logit."""
    logit = float(model["intercept"])
    for name, (mean, scale, weight) in model["coefficients"].items():
        logit += weight * (feats.get(name, mean) - mean) / scale
    return 1.0 / (1.0 + math.exp(-max(min(logit, 40.0), -40.0))), logit


def linear(model: Mapping[str, Any], feats: Mapping[str, float]) -> float:
    """The value of a stored linear model (same layout as :func:`logistic`)."""
    value = float(model["intercept"])
    for name, (mean, scale, weight) in model["coefficients"].items():
        value += weight * (feats.get(name, mean) - mean) / scale
    return value


def ensemble(model: Mapping[str, Any], feats: Mapping[str, float]) -> float:
    """The raw value of a stored gradient-boosted tree ensemble (Friedman 2001): ``init`` plus
    ``rate`` × the sum of the trees' leaf values; a log-odds for P(trains), the value itself
    for progress. ``names``/``fill``: the features in order and the value a missing one takes
    (its tuning mean); each tree is (feature index, threshold, left, right, value) per node,
    a leaf where left is −1, going left when x[feature] ≤ threshold."""
    x = [feats.get(n, fill) for n, fill in zip(model["names"], model["fill"], strict=True)]
    total = 0.0
    for feature, threshold, left, right, value in model["trees"]:
        node = 0
        while left[node] != -1:
            node = left[node] if x[feature[node]] <= threshold[node] else right[node]
        total += value[node]
    return float(model["init"]) + float(model["rate"]) * total


def probability_of(model: Mapping[str, Any], feats: Mapping[str, float]) -> tuple[float, float]:
    """P and its log-odds from a stored model of either kind (logistic or trees)."""
    if model.get("kind") == "trees":
        raw = ensemble(model, feats)
        return 1.0 / (1.0 + math.exp(-max(min(raw, 40.0), -40.0))), raw
    return logistic(model, feats)


def value_of(model: Mapping[str, Any], feats: Mapping[str, float]) -> float:
    """The value of a stored regression model of either kind (linear or trees)."""
    return ensemble(model, feats) if model.get("kind") == "trees" else linear(model, feats)
