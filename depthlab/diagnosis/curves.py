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

:func:`extrapolate` fits every family by least squares (:func:`fit_family`: variable projection
on a grid, no iterative optimiser), keeps the fits whose residual is within a factor of the best,
and returns the residual-weighted mean of their values at the budget with an interval: the
range of the kept fits' values, widened by the binned curve's residual spread. A fit never
extrapolates below 0 (a loss) and the interval always contains the point.
"""

from __future__ import annotations

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


def _linear_fit(basis: Any, y: Any) -> tuple[Any, Any]:
    """Least squares of y on two basis columns, for a stack of bases (G × n × 2): the
    coefficients (G × 2) and the residual sums of squares (G,)."""
    a = basis
    ata = np.einsum("gni,gnj->gij", a, a)
    aty = np.einsum("gni,n->gi", a, y)
    det = ata[:, 0, 0] * ata[:, 1, 1] - ata[:, 0, 1] * ata[:, 1, 0]
    det = np.where(np.abs(det) < 1e-300, np.nan, det)
    c0 = (ata[:, 1, 1] * aty[:, 0] - ata[:, 0, 1] * aty[:, 1]) / det
    c1 = (ata[:, 0, 0] * aty[:, 1] - ata[:, 1, 0] * aty[:, 0]) / det
    coef = np.stack([c0, c1], axis=1)
    resid = y[None, :] - np.einsum("gni,gi->gn", a, coef)
    sse = np.where(np.isfinite(det), (resid**2).sum(1), np.inf)
    return coef, sse


def _shape(name: str, t: Any, grid: Any) -> Any:
    """The two basis columns of a family for each nonlinear parameter set in ``grid``."""
    tt = t[None, :]
    if name == "pow3":
        f = np.power(tt, -grid[:, :1])
        return np.stack([np.ones_like(f), f], axis=2)
    if name == "ilog2":
        f = np.broadcast_to(1.0 / np.log(tt + 1.0), (len(grid), len(t)))
        return np.stack([np.ones_like(f), f], axis=2)
    kappa, delta = grid[:, :1], grid[:, 1:2]
    if name == "mmf":
        m = 1.0 / (1.0 + np.power(kappa * tt, delta))
    elif name == "weibull":
        m = np.exp(-np.power(kappa * tt, delta))
    else:  # janoschek
        m = np.exp(-kappa * np.power(tt, delta))
    return np.stack([1.0 - m, m], axis=2)  # α (asymptote), β (start)


def _grid(name: str, t: Any, centre: Any = None, width: float = 1.0) -> Any:
    """Nonlinear parameters to try: a coarse grid, or a fine one around ``centre``."""
    if name == "ilog2":
        return np.zeros((1, 1))
    span = float(t[-1])
    if name == "pow3":
        if centre is None:
            return np.geomspace(1e-3, 5.0, 60)[:, None]
        f = 1.15**width
        return (centre[0] * np.geomspace(1 / f, f, 31))[:, None]
    if centre is None:
        rates = np.geomspace(0.01 / span, 100.0 / max(float(t[0]), 1.0), 48)
        shapes = np.array([0.15, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 4.5])
        k, d = np.meshgrid(rates, shapes, indexing="ij")
        grid = np.stack([k.ravel(), d.ravel()], axis=1)
    else:
        fk, fd = 1.3**width, 1.25**width
        k, d = np.meshgrid(
            centre[0] * np.geomspace(1 / fk, fk, 15),
            centre[1] * np.geomspace(1 / fd, fd, 15),
            indexing="ij",
        )
        grid = np.stack([k.ravel(), d.ravel()], axis=1)
    return grid


def fit_family(name: str, t: Any, y: Any) -> tuple[np.ndarray, float] | None:
    """Least-squares parameters of one family on (t, y) and its RMS residual; ``None`` when no
    fit is finite.

    Every family is linear in two of its parameters (the asymptote and the scale or start) once
    the others are fixed, so those are solved in closed form on a grid of the others — a coarse
    grid, then a fine one around its best point (variable projection): no iterative optimiser,
    a few milliseconds a fit, the same answer on every machine."""
    if name == "janoschek":
        # κ t^δ = (r t)^δ with κ = r^δ: Janoschek is Weibull on another scale of its rate
        got = fit_family("weibull", t, y)
        if got is None:
            return None
        params, rms = got
        params[2] = params[2] ** params[3]
        return params, rms
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    best: tuple[Any, Any, float] | None = None
    with np.errstate(all="ignore"):
        grid = _grid(name, t)
        # the coarse grid, then finer grids around the best point so far (None: stop)
        for width in (1.0, 0.25, 0.06, None) if name != "ilog2" else (None,):
            coef, sse = _linear_fit(_shape(name, t, grid), y)
            sse = np.where(np.isfinite(sse) & np.all(np.isfinite(coef), axis=1), sse, np.inf)
            i = int(np.argmin(sse))
            if not np.isfinite(sse[i]):
                return None
            if best is None or sse[i] <= best[2]:
                best = (grid[i].copy(), coef[i].copy(), float(sse[i]))
            if width is None:
                break
            grid = _grid(name, t, centre=best[0], width=width)
    assert best is not None
    nonlinear, (p0, p1), sse = best
    if name in ("pow3", "ilog2"):
        params = np.array([p0, p1, *nonlinear[:1]] if name == "pow3" else [p0, p1])
    else:
        params = np.array([p0, p1, nonlinear[0], nonlinear[1]])
    return params, float(np.sqrt(sse / len(y)))


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
