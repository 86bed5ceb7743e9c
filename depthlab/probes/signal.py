"""Signal propagation at the network's current weights (Poole et al. 2016; Schoenholz 2017).

For every layer l (``depthlab.probes.layers``: any module with a ≥ 2-D weight), over the
batch: the pre-activation mean, variance and second moment q^l = E[h²] (mean field's length),
the fraction of dead units of the activation that follows (no variation over the batch: a dead
ReLU, a fully saturated tanh) and of saturated entries (|φ'(h)| < 5 % of φ'(0), for activations
that saturate on both sides), and the mean correlation c^l = h_a·h_b / (‖h_a‖‖h_b‖) between the
representations of input pairs. In the ordered phase c^l → 1 (inputs become indistinguishable);
in the chaotic phase c^l → c* < 1.
Measured in the probes' mode policy (``depthlab.probes.base``): batch statistics on, dropout
off unless asked. Each layer's output is read per sample at its own batch dimension
(``per_sample``); a layer whose output has none is listed under ``skipped_layers``.

``second_moment_ratio`` is q^l at the last call over the first call of one *role*
(``role_group``: the layers doing the same job at every depth, e.g. each block's MLP output),
named by ``role``; the first and last layer in call order when no role repeats.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from depthlab._device import wide_dtype, widen
from depthlab.exceptions import ProbeError
from depthlab.probes.base import Probe, ProbeBatch, register_probe
from depthlab.probes.layers import (
    ELEMENTWISE,
    is_layer,
    per_sample,
    recording,
    role_group,
)
from depthlab.spec import Spec
from depthlab.spec.base import check_min


@dataclasses.dataclass(frozen=True)
class SignalParams(Spec):
    pairs: int = 64
    samples: int = 512

    def _check(self) -> None:
        check_min("pairs", self.pairs, 1)
        check_min("samples", self.samples, 2)


@register_probe("signal")
class SignalProbe(Probe):
    """Per-layer activation statistics and input-pair correlations."""

    Params = SignalParams

    @torch.no_grad()
    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        x = batch.x[: self.params.samples]
        if len(x) < 2:
            raise ProbeError("signal needs at least 2 input samples")
        self.set_mode(model)
        hooked = [
            (n or "model", m)
            for n, m in model.named_modules()
            if is_layer(m) or isinstance(m, ELEMENTWISE)
        ]
        with recording(hooked) as calls:  # layer and activation calls in the order they ran
            model(x)
        if not any(is_layer(c.module) for c in calls):
            raise ProbeError("signal found no layer (a module with a >= 2-D weight) in the model")
        n, n_pairs = len(x), min(self.params.pairs, len(x) // 2)
        layers: list[dict[str, Any]] = []
        skipped: dict[str, str] = {}
        for name, module, args, out in calls:
            if is_layer(module):
                try:
                    if not isinstance(out, torch.Tensor):
                        raise ValueError(f"its output is a {type(out).__name__}, not a tensor")
                    h = widen(per_sample(out, n))
                except ValueError as err:
                    skipped[name] = str(err)
                    continue
                layers.append(
                    {
                        "name": name,
                        "type": type(module).__name__,
                        "mean": h.mean(),
                        "var": h.var(),
                        "second_moment": h.pow(2).mean(),
                        "correlation": _pair_correlation(h, n_pairs),
                        "dead_fraction": None,
                        "saturated_fraction": None,
                    }
                )
            elif layers and layers[-1]["dead_fraction"] is None:
                try:
                    a = widen(per_sample(out, n))
                    pre = per_sample(args[0], n)
                except (ValueError, IndexError):
                    continue
                if a.shape != pre.shape:
                    continue
                span = a.max(0).values - a.min(0).values
                scale = 1.0 + a.abs().mean(0)
                layers[-1]["dead_fraction"] = widen(span <= 1e-8 * scale).mean()
                layers[-1]["saturated_fraction"] = _saturated(module, pre)
        if not layers:
            raise ProbeError(
                "signal found no layer output with a batch dimension: "
                + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
            )
        layers = _as_floats(layers)
        group, i, j = role_group([row["name"] for row in layers])
        first, last = layers[i]["second_moment"], layers[j]["second_moment"]
        ratio = last / first if first > 0 else math.inf
        return {
            "layers": layers,
            "input_correlation": float(_pair_correlation(widen(per_sample(x)), n_pairs))
            if torch.is_floating_point(x)
            else None,
            "second_moment_ratio": ratio,
            "log10_second_moment_ratio": math.log10(ratio) if 0 < ratio < math.inf else None,
            "role": group,
            "role_layers": [layers[i]["name"], layers[j]["name"]],
            "final_correlation": layers[-1]["correlation"],
            "skipped_layers": skipped,
            "n_samples": len(x),
        }


def _pair_correlation(h: torch.Tensor, n_pairs: int) -> torch.Tensor | float:
    a, b = h[0 : 2 * n_pairs : 2], h[1 : 2 * n_pairs : 2]
    norms = a.norm(dim=1) * b.norm(dim=1)
    ok = norms > 0
    if not ok.any():
        return 1.0  # every representation is 0: nothing distinguishes the inputs
    return ((a * b).sum(1)[ok] / norms[ok]).mean()


def _saturated(module: nn.Module, h: torch.Tensor) -> torch.Tensor | float:
    """Fraction of entries where |φ'(h)| < 5 % of |φ'(0)|, for two-sided saturating φ."""
    wide = wide_dtype(h.device)
    probe = torch.tensor([-12.0, 0.0, 12.0], dtype=wide, device=h.device, requires_grad=True)
    with torch.enable_grad():
        (d,) = torch.autograd.grad(module(probe).sum(), probe)
    if not (abs(d[0]) < 0.01 * abs(d[1]) and abs(d[2]) < 0.01 * abs(d[1])):
        return 0.0
    with torch.enable_grad():
        hh = widen(h.detach()).requires_grad_(True)
        (dh,) = torch.autograd.grad(module(hh).sum(), hh)
    return widen(dh.abs() < 0.05 * abs(d[1])).mean()


def _as_floats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with every tensor statistic read back to the host in one transfer (a probe
    on a GPU pays one synchronisation, not one per number)."""
    keys = [(i, k) for i, row in enumerate(rows) for k, v in row.items() if torch.is_tensor(v)]
    if not keys:
        return rows
    values = torch.stack([widen(rows[i][k].reshape(())) for i, k in keys]).tolist()
    out = [dict(row) for row in rows]
    for (i, k), v in zip(keys, values, strict=True):
        out[i][k] = v
    return out
