"""Parametric learning curves, fitted to the start of a run and extrapolated to its budget.

Domhan, Springenberg & Hutter (2015) extrapolate a learning curve with a family of parametric
shapes. The loss-curve forms used here (``t`` the optimizer step, ``t ≥ 1``; every one falls
from its start toward an asymptote when its parameters say so, and may also stay flat):

========== ===================================== =============================================
family     L(t)                                  parameters
========== ===================================== =============================================
pow3       c + a · t^(−α)                        c asymptote, a > 0, α > 0
ilog2      c + a / log(t + 1)                    c asymptote, a > 0
mmf        α − (α − β) / (1 + (κ t)^δ)           β start, α asymptote, κ > 0, δ > 0
weibull    α − (α − β) · exp(−(κ t)^δ)           β start, α asymptote, κ > 0, δ > 0
janoschek  α − (α − β) · exp(−κ t^δ)             β start, α asymptote, κ > 0, δ > 0
========== ===================================== =============================================

(MMF: Morgan–Mercer–Flodin.) The minibatch losses are first averaged in log-spaced bins of
steps (:func:`binned`), which removes most of the minibatch noise and weighs the late part of
the curve — the part closest to the budget — as much as the early part.

:func:`extrapolate` fits every family by least squares (``scipy.optimize.curve_fit``, bounded,
a capped number of evaluations), keeps the fits whose residual is within a factor of the best,
and returns the residual-weighted mean of their values at the budget with an interval: the
range of the kept fits' values, widened by the binned curve's residual spread. A fit never
extrapolates below 0 (a loss) and the interval always contains the point.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Family = Callable[..., Any]


def pow3(t: Any, c: float, a: float, alpha: float) -> Any:
    return c + a * np.power(t, -alpha)


def ilog2(t: Any, c: float, a: float) -> Any:
    return c + a / np.log(t + 1.0)


def mmf(t: Any, alpha: float, beta: float, kappa: float, delta: float) -> Any:
    return alpha - (alpha - beta) / (1.0 + np.power(kappa * t, delta))


def weibull(t: Any, alpha: float, beta: float, kappa: float, delta: float) -> Any:
    return alpha - (alpha - beta) * np.exp(-np.power(kappa * t, delta))


def janoschek(t: Any, alpha: float, beta: float, kappa: float, delta: float) -> Any:
    return alpha - (alpha - beta) * np.exp(-kappa * np.power(t, delta))


#: name → (function, initial guess(start, end, t_max), (lower, upper) bounds(start, end, t_max)).
FAMILIES: dict[str, Family] = {
    "pow3": pow3,
    "ilog2": ilog2,
    "mmf": mmf,
    "weibull": weibull,
    "janoschek": janoschek,
}
#: A fit is kept when its RMS residual is at most this factor times the best family's.
KEEP_WITHIN = 2.0


def binned(losses: Sequence[float], *, stride: int = 1, bins: int = 24) -> tuple[Any, Any]:
    """Steps (1-based, bin centres) and mean losses in ``bins`` log-spaced bins of steps.

    ``losses[i]`` is the loss of step ``i·stride + 1``; non-finite losses are dropped."""
    y = np.asarray(losses, dtype=float)
    t = np.arange(len(y), dtype=float) * stride + 1.0
    ok = np.isfinite(y)
    t, y = t[ok], y[ok]
    if len(y) <= bins:
        return t, y
    edges = np.unique(np.geomspace(1.0, t[-1] + 1.0, bins + 1))
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    ts, ys = [], []
    for b in range(len(edges) - 1):
        inside = which == b
        if inside.any():
            ts.append(float(t[inside].mean()))
            ys.append(float(y[inside].mean()))
    return np.asarray(ts), np.asarray(ys)


def _setup(name: str, t: Any, y: Any) -> tuple[list[float], tuple[list[float], list[float]]]:
    start, end, span = float(y[0]), float(y[-1]), float(t[-1])
    top = max(float(np.max(y)), 1e-12) * 10.0
    drop = max(start - end, 1e-6)
    if name == "pow3":
        return [max(end - drop, 0.0), drop, 0.5], ([0.0, 0.0, 1e-3], [top, 10 * top, 5.0])
    if name == "ilog2":
        return [max(end - drop, 0.0), drop], ([0.0, 0.0], [top, 10 * top])
    # α asymptote, β start, κ rate, δ shape
    guess = [max(end - 0.5 * drop, 0.0), start, 1.0 / span, 1.0]
    return guess, ([0.0, 0.0, 1e-6 / span, 0.05], [top, top, 100.0, 5.0])


def fit_family(name: str, t: Any, y: Any) -> tuple[np.ndarray, float] | None:
    """Least-squares parameters of one family on (t, y) and its RMS residual; ``None`` when the
    fit fails."""
    from scipy.optimize import curve_fit

    fn = FAMILIES[name]
    p0, bounds = _setup(name, t, y)
    p0 = [min(max(v, lo), hi) for v, lo, hi in zip(p0, bounds[0], bounds[1], strict=True)]
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            params, _ = curve_fit(fn, t, y, p0=p0, bounds=bounds, maxfev=400)
    except (RuntimeError, ValueError):
        return None
    resid = y - fn(t, *params)
    if not np.all(np.isfinite(resid)):
        return None
    return params, float(np.sqrt(np.mean(resid**2)))


def fit_curve(
    losses: Sequence[float], *, stride: int = 1, families: Sequence[str] = tuple(FAMILIES)
) -> dict[str, tuple[Any, float]]:
    """Every family that fits the binned curve: name → (parameters, RMS residual); empty when
    fewer than 6 finite losses are known."""
    t, y = binned(losses, stride=stride)
    if len(y) < 6:
        return {}
    fits = {}
    for name in families:
        got = fit_family(name, t, y)
        if got is not None:
            fits[name] = got
    return fits


def predict(fits: dict[str, tuple[Any, float]], horizons: Sequence[float]) -> dict[str, Any]:
    """The kept fits' residual-weighted mean at each of ``horizons`` (steps) with its interval
    (see the module doc): ``{"loss", "lo", "hi"}`` arrays, and ``values`` per family."""
    h = np.asarray(horizons, dtype=float)
    values: dict[str, Any] = {}
    for name, (params, _rms) in fits.items():
        with np.errstate(all="ignore"):
            v = np.maximum(np.asarray(FAMILIES[name](h, *params), dtype=float), 0.0)
        if np.all(np.isfinite(v)):
            values[name] = v
    usable = {k: fits[k][1] for k in values}
    best = min(usable.values())
    floor = max(best, 1e-9)
    kept = [k for k, rms in usable.items() if rms <= KEEP_WITHIN * floor + 1e-12]
    weights = np.array([1.0 / (usable[k] + 1e-3 * floor) ** 2 for k in kept])
    stack = np.stack([values[k] for k in kept])
    point = (weights[:, None] * stack).sum(0) / weights.sum()
    lo = np.maximum(0.0, np.minimum(stack.min(0), point) - 2 * best)
    hi = np.maximum(stack.max(0), point) + 2 * best
    return {"loss": point, "lo": lo, "hi": hi, "rms": best, "values": values}


def extrapolate(
    losses: Sequence[float],
    horizon: int,
    *,
    stride: int = 1,
    families: Sequence[str] = tuple(FAMILIES),
) -> dict[str, Any] | None:
    """The loss expected at step ``horizon`` from the curve so far (see the module doc).

    Returns ``{"loss", "lo", "hi", "fits": {family: value at horizon}, "rms"}``, or ``None``
    when fewer than 6 finite losses are known or no family fits."""
    fits = fit_curve(losses, stride=stride, families=families)
    if not fits:
        return None
    try:
        got = predict(fits, [float(horizon)])
    except ValueError:  # no family gave finite values
        return None
    return {
        "loss": float(got["loss"][0]),
        "lo": float(got["lo"][0]),
        "hi": float(got["hi"][0]),
        "rms": got["rms"],
        "fits": {k: float(v[0]) for k, v in got["values"].items()},
    }
