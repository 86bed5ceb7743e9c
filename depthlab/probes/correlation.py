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
        found: list[tuple[str, int, torch.Tensor]] = []
        c0 = _cosines(widen(per_sample(x)), n_pairs)
        for index, call in enumerate(calls):
            inp = call.args[0] if call.args else None
            if not isinstance(inp, torch.Tensor) or not torch.is_floating_point(inp):
                continue
            try:  # windows or sequence-first layouts: find the batch dimension, else skip
                flat = per_sample(inp, len(x))
            except ValueError:
                continue
            found.append((call.name, index, _cosines(widen(flat), n_pairs)))
        # every layer's cosines read back in one transfer; the fits are a few numbers each
        host = torch.stack([c0, *(c for _, _, c in found)]).cpu()
        c0 = host[0]
        for (name, index, _), c in zip(found, host[1:], strict=True):
            b, se = _slope(c0, c)
            rows.append(
                {
                    "name": name,
                    "index": index,
                    "slope": b,
                    "slope_se": se,
                    "mean_correlation": float(c.mean()),
                }
            )
        if len(rows) < 2:
            raise ProbeError("correlation found fewer than 2 weight layers taking the batch")
        return {
            "layers": rows,
            "input_std": float(c0.std()),
            "input_mean": float(c0.mean()),
            **fit_xi(rows, self.params.resolve, self.params.floor),
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
