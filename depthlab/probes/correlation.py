"""The ``correlation`` probe: how far the geometry of the inputs survives depth — the measured ξ_c.

For P pairs of inputs (a, b) and every weight layer l, in the order the forward pass calls
them, c^l(a, b) is the cosine similarity of the two inputs' representations entering layer l
(the layer's input: φ(h^{l−1}) in an MLP, the branch input in a residual block, the penultimate
features at the readout). Near the fixed point c* of the correlation map, mean-field theory
gives c^l − c* ≈ χ_c^l (c^0 − c*) with χ_c = e^{−1/ξ_c} (Schoenholz et al. 2017, eq. 9), in the
ordered phase (c* = 1: the inputs become indistinguishable) and in the chaotic one (c* < 1: every
pair ends at the same correlation, whatever the inputs were). So across pairs, the least-squares
slope b_l of c^l on c^0 decays as e^{−l/ξ_c}: it is the fraction of the input geometry layer l
still carries.

``xi_c`` is fitted as −1 / (slope of log b_l against l) over the layers where b_l stands clear of
its own standard error (b_l > ``resolve`` · SE and b_l > ``floor``); ``depth_ratio`` = L / ξ_c
with L the number of weight layers. Schoenholz et al. find networks trainable up to L ≈ 6 ξ_c.
When the geometry is gone within one layer, ξ_c is bounded and ``xi_c_is_bound`` says so; when
the slopes are lost in their own noise (inputs too alike to tell apart) ξ_c is ``None``. The
fit reads the approach to c* as exponential: true off criticality; at a critical point (ReLU at
He init, χ₁ = 1) the approach is polynomial, ξ_c is infinite, and the verdict takes ξ_c from
mean-field theory whenever the ``meanfield`` probe applies. Measured under the probes' mode
policy (batch statistics on, dropout off unless asked; ``depthlab.probes.base``).

*Distinguishability* is measured on what carries the inputs, their differences, not on the raw
correlation's level: an activation with a non-zero mean (softplus, sigmoid) adds one vector
common to every input, which drives the raw c to 1 while the differences stay far above float
resolution. Per layer, over the P pairs:

- ``one_minus_c``: the mean of 1 − c;
- ``distance``: the median relative distance δ = ‖h_a − h_b‖ / √(‖h_a‖ ‖h_b‖)
  (δ² = 2(1 − c) for equal norms), computed from the difference itself so that nothing cancels;
- ``centred_correlation``: the mean cosine of the pairs after the batch mean of every feature is
  taken out (the geometry of the differences alone);
- ``offset_share``: ‖h̄‖² / mean ‖h‖², the share of the representation's second moment common
  to every input (at the first hidden layer, the activation's own (E φ)² / E φ²).

A float of relative precision ε holds h to ε‖h‖, and rounding accumulates through the layers'
sums (≈ √(fan-in · depth) ε for random rounding): ``resolution`` = 1e3 ε of the layers' dtype is
the floor below which a relative distance is rounding, not input (1 − c < resolution² / 2).
``indistinguishable_at`` is the position in ``layers`` of the first layer whose median distance
falls below it (``None`` while the inputs stay apart), ``indistinguishable_layer`` its name.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from depthlab._device import widen
from depthlab.exceptions import ProbeError
from depthlab.probes.base import Probe, ProbeBatch, register_probe
from depthlab.probes.layers import per_sample, recording, weight_layers
from depthlab.spec import Spec
from depthlab.spec.base import check_min, check_range

#: Relative distances below this many ε of the dtype are rounding, not input (see the module doc).
RESOLUTION_EPS = 1e3


@dataclasses.dataclass(frozen=True)
class CorrelationParams(Spec):
    pairs: int = 128
    resolve: float = 3.0  # b_l must exceed this many standard errors to enter the fit
    floor: float = 0.05  # and this absolute slope

    def _check(self) -> None:
        check_min("pairs", self.pairs, 8)
        check_range("resolve", self.resolve, 0.0, lo_open=True)
        check_range("floor", self.floor, 0.0, 1.0, lo_open=True)


def _cosines(h: torch.Tensor, n_pairs: int) -> torch.Tensor:
    a, b = h[0 : 2 * n_pairs : 2], h[1 : 2 * n_pairs : 2]
    norms = a.norm(dim=1) * b.norm(dim=1)
    c = (a * b).sum(1) / norms.clamp_min(1e-300)
    return torch.where(norms > 0, c, torch.ones_like(c))


def _differences(h: torch.Tensor, n_pairs: int) -> dict[str, float]:
    """What carries the inputs at one layer (``h``: 2P × features, float64): the mean 1 − c, the
    median relative distance of the pairs, the centred correlation and the common share."""
    a, b = h[0 : 2 * n_pairs : 2], h[1 : 2 * n_pairs : 2]
    scale = (a.norm(dim=1) * b.norm(dim=1)).sqrt()
    # two all-zero representations are the same point: distance 0
    delta = torch.where(scale > 0, (a - b).norm(dim=1) / scale.clamp_min(1e-300), 0.0)
    centred = h[: 2 * n_pairs] - h[: 2 * n_pairs].mean(0)
    second = float(h[: 2 * n_pairs].pow(2).sum(1).mean())
    return {
        "one_minus_c": float((1 - _cosines(h, n_pairs)).mean()),
        "distance": float(delta.median()),
        "centred_correlation": float(_cosines(centred, n_pairs).mean()),
        "offset_share": float(h[: 2 * n_pairs].mean(0).pow(2).sum()) / second
        if second > 0
        else 1.0,
    }


def resolution(dtype: torch.dtype) -> float:
    """The relative distance below which two representations in ``dtype`` are rounding apart."""
    return RESOLUTION_EPS * torch.finfo(dtype).eps


def distinguishability(rows: list[dict[str, Any]], floor: float) -> dict[str, Any]:
    """The first layer whose inputs' median distance falls below ``floor`` (see the module doc)."""
    dist = [r["distance"] for r in rows if "distance" in r]
    below = [i for i, r in enumerate(rows) if r.get("distance", math.inf) < floor]
    first = below[0] if below else None
    return {
        "resolution": floor,
        "min_distance": min(dist) if dist else None,
        "indistinguishable_at": first,
        "indistinguishable_layer": None if first is None else rows[first]["name"],
    }


def _slope(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Least-squares slope of y on x and its standard error."""
    xc, yc = x - x.mean(), y - y.mean()
    sxx = float((xc * xc).sum())
    if sxx <= 0:
        return math.nan, math.nan
    b = float((xc * yc).sum()) / sxx
    resid = yc - b * xc
    dof = max(len(x) - 2, 1)
    se = math.sqrt(float((resid * resid).sum()) / dof / sxx)
    return b, se


@register_probe("correlation")
class CorrelationProbe(Probe):
    """Per-layer transfer of input-pair correlations and the fitted correlation length ξ_c."""

    Params = CorrelationParams

    @torch.no_grad()
    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        n_pairs = min(self.params.pairs, len(batch.x) // 2)
        if n_pairs < 8:
            raise ProbeError("correlation needs at least 16 input samples (8 pairs)")
        if torch.is_floating_point(batch.x) is False:
            raise ProbeError("correlation compares real-valued inputs; these are integer tokens")
        x = batch.x[: 2 * n_pairs]
        self.set_mode(model)  # the mode policy: batch statistics on, dropout as asked
        with recording(weight_layers(model)) as calls:
            model(x)
        rows = []
        dtype = x.dtype if torch.is_floating_point(x) else torch.float32
        c0 = _cosines(widen(per_sample(x)), n_pairs)
        for index, call in enumerate(calls):
            inp = call.args[0] if call.args else None
            if not isinstance(inp, torch.Tensor) or not torch.is_floating_point(inp):
                continue
            try:  # windows or sequence-first layouts: find the batch dimension, else skip
                flat = per_sample(inp, len(x))
            except ValueError:
                continue
            dtype = inp.dtype  # the precision the deepest layer computes in
            c = _cosines(widen(flat), n_pairs)
            b, se = _slope(c0, c)
            rows.append(
                {
                    "name": call.name,
                    "index": index,
                    "slope": b,
                    "slope_se": se,
                    "mean_correlation": float(c.mean()),
                    **_differences(widen(flat), n_pairs),
                }
            )
        if len(rows) < 2:
            raise ProbeError("correlation found fewer than 2 weight layers taking the batch")
        return {
            "layers": rows,
            "input_std": float(c0.std()),
            "input_mean": float(c0.mean()),
            **fit_xi(rows, self.params.resolve, self.params.floor),
            "dtype": str(dtype).removeprefix("torch."),
            **distinguishability(rows, resolution(dtype)),
        }


def fit_xi(rows: list[dict[str, Any]], resolve: float = 3.0, floor: float = 0.05) -> dict[str, Any]:
    """ξ_c and L / ξ_c from per-layer slopes ``rows`` (see the module doc).

    Layers count while their slope is resolved (above ``floor`` and ``resolve`` standard errors);
    the first that is not ends the fit. With two or more resolved layers ξ_c is fitted. With one,
    ξ_c is bounded above only if the next layer's slope is resolved *below* the floor (the
    geometry is gone within a layer); a slope lost in its own noise bounds nothing, and ξ_c is
    then ``None`` (not measurable on these inputs).
    """
    depth = len(rows)
    base = rows[0]["index"]
    points = []
    stop: dict[str, Any] | None = None
    for row in rows:
        b, se = row["slope"], row["slope_se"]
        if math.isfinite(b) and b > floor and b > resolve * se:
            points.append((row["index"] - base, math.log(min(b, 1.0))))
        else:
            stop = row
            break
    bound = False
    xi: float | None
    if len(points) >= 2 and points[-1][0] > 0:
        # least squares through the first point's level: log b_l = log b_0 − (l − l_0) / ξ
        l0, y0 = points[0]
        num = sum((k - l0) * (y - y0) for k, y in points)
        den = sum((k - l0) ** 2 for k, _ in points)
        rate = -num / den if den > 0 else 0.0
        xi = math.inf if rate <= 0 else 1.0 / rate
    elif points and stop is not None and _resolved_small(stop, resolve, floor):
        rate = max(points[0][1] - math.log(floor), 0.0) + 1e-12
        xi, bound = 1.0 / rate, True
    else:
        xi = None  # nothing resolved beyond the input: noise, not decay
    final = rows[-1]
    resolved_last = bool(points) and points[-1][0] == final["index"] - base
    ratio = None if xi is None else (depth / xi if xi > 0 else math.inf)
    return {
        "xi_c": xi,
        "xi_c_is_bound": bound,
        "depth": depth,
        "depth_ratio": ratio,
        "final_slope": final["slope"],
        "last_mean_correlation": final["mean_correlation"] if "mean_correlation" in final else None,
        "resolved_layers": len(points),
        "geometry_kept": resolved_last,
    }


def _resolved_small(row: dict[str, Any], resolve: float, floor: float) -> bool:
    b, se = row["slope"], row["slope_se"]
    return math.isfinite(b) and math.isfinite(se) and b + resolve * se < floor
