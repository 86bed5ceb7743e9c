"""Mean-field theory for the model at hand, side by side with what is measured on it.

For a fully connected net h^l = W^l φ(h^{l−1}) + b^l, the weights' σ_w² = fan_in · E[W²] and
σ_b² = E[b²] are read off the hidden layers (their median), φ is the network's activation
module, and ``depthlab.theory`` gives q*, χ₁, ξ_q, ξ_c and the phase (Poole et al. 2016;
Schoenholz et al. 2017). Measured beside them: the pre-activation second moment q^l of the last
hidden layer, the mean per-layer gain of an input perturbation over the deeper half of the
hidden layers (χ₁ at finite width, once q has settled at q*), and the
final input-pair correlation (→ c*). Networks with normalization, residual or convolutional
layers are outside this theory: the probe says so instead of guessing.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any

import torch
from torch import nn

from depthlab._device import widen
from depthlab.exceptions import ProbeError
from depthlab.probes.base import Probe, ProbeBatch, register_probe
from depthlab.probes.jacobian import layer_gains
from depthlab.probes.layers import ELEMENTWISE
from depthlab.probes.signal import SignalProbe
from depthlab.spec import Spec
from depthlab.theory import analyse

PHASE_TOL = 0.01
_NEUTRAL = (nn.Sequential, nn.Identity, nn.Flatten, nn.Dropout, nn.AlphaDropout)


@dataclasses.dataclass(frozen=True)
class MeanFieldParams(Spec):
    samples: int = 256


def read_parameters(model: nn.Module) -> tuple[nn.Module, float, float, int]:
    """The activation module, σ_w², σ_b² and the number of hidden layers of an MLP."""
    from depthlab.layers.dropout import AlphaDropout

    linears, acts, other = [], [], []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            linears.append(m)
        elif isinstance(m, ELEMENTWISE):
            acts.append(m)
        elif not isinstance(m, (*_NEUTRAL, AlphaDropout)) and m is not model:
            other.append((name, m))
    if other:
        # Name the module that matters most: one holding parameters (a conv, a norm) first.
        name, m = sorted(other, key=lambda nm: not any(True for _ in nm[1].parameters()))[0]
        raise ProbeError(
            f"meanfield covers fully connected nets of Linear layers and one activation; "
            f"this model has {type(m).__name__} ({name})"
        )
    if len(linears) < 2 or not acts:
        raise ProbeError("meanfield needs at least one hidden Linear layer with an activation")
    kinds = {type(a) for a in acts}
    if len(kinds) > 1:
        raise ProbeError(
            f"meanfield needs one activation; found {sorted(k.__name__ for k in kinds)}"
        )
    hidden = linears[1:-1] or linears[:1]
    sw2 = statistics.median(
        m.weight.shape[1] * widen(m.weight.detach()).pow(2).mean().item() for m in hidden
    )
    sb2 = statistics.median(
        widen(m.bias.detach()).pow(2).mean().item() if m.bias is not None else 0.0 for m in hidden
    )
    return acts[0], sw2, sb2, len(linears) - 1


@register_probe("meanfield")
class MeanFieldProbe(Probe):
    """q*, χ₁, depth scales and phase from theory, beside the measured values."""

    Params = MeanFieldParams

    def measure(self, model: nn.Module, batch: ProbeBatch, *, seed: int) -> dict[str, Any]:
        act, sw2, sb2, depth = read_parameters(model)

        def phi(x: torch.Tensor) -> torch.Tensor:
            return act(x)

        summary = analyse(phi, sigma_w2=sw2, sigma_b2=sb2)
        x = batch.x[: self.params.samples]
        signal = SignalProbe(SignalProbe.Params(samples=self.params.samples)).measure(
            model, batch, seed=seed
        )
        model.eval()
        with torch.no_grad():
            rows = layer_gains(model, x, seed)[1:-1]
            # The deeper half: the first layers still carry the input's own scale (q ≠ q*).
            gains = [g["gain"] for g in rows[len(rows) // 2 :] if g["gain"] > 0]
        hidden = signal["layers"][:-1] or signal["layers"]
        return {
            "activation": type(act).__name__ if not hasattr(act, "name") else str(act.name),
            "sigma_w2": sw2,
            "sigma_b2": sb2,
            "depth": depth,
            "q_star": summary.q_star,
            "c_star": summary.c_star,
            "chi1": summary.chi1,
            "xi_q": summary.xi_q,
            "xi_c": summary.xi_c,
            # σ_w² read off finite weight matrices carries ~1 % noise: near-critical within 1 %.
            "phase": "critical" if abs(summary.chi1 - 1) <= PHASE_TOL else summary.phase,
            "measured_q_last": hidden[-1]["second_moment"],
            "measured_chi1": math.exp(sum(map(math.log, gains)) / len(gains))
            if gains
            else math.nan,
            "measured_c_last": hidden[-1]["correlation"],
            "predicted_gradient_ratio": summary.chi1 ** max(depth - 1, 0),
        }
