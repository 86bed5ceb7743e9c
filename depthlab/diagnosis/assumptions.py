"""The assumptions theory rules rest on, each checked on one network and training setup.

A check reads the diagnosis's results (the ``architecture`` summary, the probes' numbers, the
``meanfield`` probe's phase) and the setup (the optimizer, when the setup states it) and says
whether the assumption holds and why. ``ASSUMPTIONS`` maps each name the diagnosis prints to its
check; ``depthlab.diagnosis.rules`` says which rule rests on which, and why.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from depthlab.diagnosis.verdict import EXPLODING_SIGNAL, SGD_FAMILY, VANISHING_SIGNAL

#: The activation is zero-mean while its mean holds at most this share of the second moment.
ZERO_MEAN_SHARE = 0.5
#: Positively homogeneous activations (by module type): at zero bias always on a critical line.
HOMOGENEOUS = frozenset({"ReLU", "LeakyReLU", "PReLU"})


@dataclasses.dataclass(frozen=True)
class Check:
    """One assumption checked on this network and setup, and why it holds or fails."""

    assumption: str
    holds: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.assumption}: {'holds' if self.holds else 'fails'} ({self.detail})"


def _stated_optimizer(setup: Mapping[str, Any]) -> str | None:
    """The optimizer the setup states; ``None`` when it was only assumed or not given."""
    if "optimizer" not in setup or setup.get("assumed"):
        return None
    return str(setup["optimizer"])


def beyond_scale(results: Mapping[str, Any]) -> str | None:
    """A value no rescaling recovers — exactly zero, underflowed or non-finite — among the
    layers' signal second moments and gradient norms, described; ``None`` when all are finite
    and normal."""
    tiny = torch.finfo(getattr(torch, _dtype(results))).tiny
    signal, grads = results.get("signal") or {}, results.get("gradients") or {}
    for row in signal.get("layers", []):
        q = row.get("second_moment")
        if isinstance(q, int | float) and (q < tiny or not math.isfinite(q)):
            return f"the signal's E[h²] is {q:.3g} at layer {row.get('name', '?')}"
    for row in grads.get("layers", []):
        if not row.get("called", True):
            continue
        for key, what in (("grad_norm", "‖∇W‖"), ("delta_norm", "‖∂L/∂h‖")):
            g = row.get(key)
            if isinstance(g, int | float) and (g < tiny or not math.isfinite(g)):
                return f"{what} is {g:.3g} at layer {row.get('name', '?')}"
    d = grads.get("delta_first_to_last")
    if isinstance(d, int | float) and (d == 0 or not math.isfinite(d)):
        return f"‖∂L/∂h¹‖ / ‖∂L/∂h^L‖ is {d:.3g}"
    return None


def _dtype(results: Mapping[str, Any]) -> str:
    name = str((results.get("correlation") or {}).get("dtype", "float32"))
    return name if isinstance(getattr(torch, name, None), torch.dtype) else "float32"


def _keeps_scale(results: Mapping[str, Any], setup: Mapping[str, Any]) -> tuple[bool, str]:
    optimizer = _stated_optimizer(setup)
    if optimizer is None:
        return True, "optimizer not stated: judged as for SGD"
    if optimizer in SGD_FAMILY:
        return True, f"{optimizer} steps in proportion to the gradient"
    beyond = beyond_scale(results)
    if beyond:
        return True, f"{optimizer} rescales each step, but {beyond}"
    return False, f"{optimizer} rescales each parameter's step and undoes a finite scale"


def _sgd_family(results: Mapping[str, Any], setup: Mapping[str, Any]) -> tuple[bool, str]:
    optimizer = _stated_optimizer(setup)
    if optimizer is None:
        return True, "optimizer not stated: judged as for SGD"
    return optimizer in SGD_FAMILY, optimizer


def _no_residual(results: Mapping[str, Any], setup: Mapping[str, Any]) -> tuple[bool, str]:
    arch = results.get("architecture")
    if not arch:
        return True, "no architecture summary"
    if arch.get("residual"):
        return False, "residual sum x + f(x): c approaches 1 polynomially"
    return True, "no x + f(x) in the forward pass"


def _no_norm(results: Mapping[str, Any], setup: Mapping[str, Any]) -> tuple[bool, str]:
    arch = results.get("architecture")
    if not arch:
        return True, "no architecture summary"
    norms = arch.get("norms") or []
    return (False, f"normalization: {', '.join(norms)}") if norms else (True, "none found")


def _off_critical(results: Mapping[str, Any], setup: Mapping[str, Any]) -> tuple[bool, str]:
    mf = results.get("meanfield") or {}
    if mf.get("phase") == "critical":
        chi = mf.get("chi1", math.nan)
        return False, f"mean-field χ₁ = {chi:.3g}: on the critical line, a polynomial law"
    if mf.get("phase"):
        return True, f"mean-field phase {mf['phase']}"
    acts = set((results.get("architecture") or {}).get("activations") or [])
    if acts and acts <= HOMOGENEOUS:
        # φ(a x) = a φ(x) for a > 0: at zero bias the correlation map does not depend on the
        # scale and its slope at c = 1 is 1 for every σ_w² (the arc-cosine kernel)
        return False, f"{', '.join(sorted(acts))} is positively homogeneous: a polynomial law"
    return True, "meanfield did not apply; ξ_c measured"


def _zero_mean(results: Mapping[str, Any], setup: Mapping[str, Any]) -> tuple[bool, str]:
    rows = (results.get("correlation") or {}).get("layers") or []
    share = rows[1].get("offset_share") if len(rows) > 1 else None
    if not isinstance(share, int | float):
        return True, "offset share not measured"
    holds = share <= ZERO_MEAN_SHARE
    return holds, f"the mean holds {100 * share:.0f} % of the first hidden E[‖φ‖²]"


def _fixed_point(results: Mapping[str, Any], setup: Mapping[str, Any]) -> tuple[bool, str]:
    signal = results.get("signal") or {}
    ratio = signal.get("second_moment_ratio")
    if not isinstance(ratio, int | float):
        return True, "signal not measured"
    holds = VANISHING_SIGNAL <= ratio <= EXPLODING_SIGNAL
    what = "settles" if holds else ("vanishes" if ratio < VANISHING_SIGNAL else "explodes")
    return holds, f"E[h²] {what}: last/first = {ratio:.3g}"


def _over_parameterised(results: Mapping[str, Any], setup: Mapping[str, Any]) -> tuple[bool, str]:
    ntk = results.get("ntk") or {}
    need = ntk.get("n_samples", 0) * ntk.get("n_outputs", 1)
    have = ntk.get("n_params", math.inf)
    return have >= need, f"{have:g} parameters for N·K = {need:g}"


def _independent(results: Mapping[str, Any], setup: Mapping[str, Any]) -> tuple[bool, str]:
    from depthlab.diagnosis.graph_rules import is_graph_network

    if is_graph_network(results):
        return False, "a graph network: its nodes are coupled; oversmoothing stands in"
    return True, "samples pass through the network one by one"


#: Every assumption a rule may rest on, by the name the diagnosis prints.
ASSUMPTIONS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[bool, str]]] = {
    "optimizer keeps scale": _keeps_scale,
    "SGD-family optimizer": _sgd_family,
    "no residual sum": _no_residual,
    "no normalization": _no_norm,
    "off a critical line": _off_critical,
    "zero-mean activation": _zero_mean,
    "q at a fixed point": _fixed_point,
    "independent inputs": _independent,
    "≥ N·K parameters": _over_parameterised,
}
