"""The rules that turn probe numbers into a verdict, with the evidence and concrete advice.

Each rule reads one probe's summary and fires above a documented threshold:

============================ ============================================== ===============
verdict                      rule                                           threshold
============================ ============================================== ===============
vanishing signal             last/first layer pre-activation second moment  < 1e-3
exploding signal             last/first layer pre-activation second moment  > 1e3
dead units                   mean fraction of units dead over the batch     > 0.5
vanishing gradients          ‖∂L/∂h¹‖ / ‖∂L/∂h^L‖, or every ‖∇W‖/‖W‖       < 1e-3, < 1e-6
exploding gradients          ‖∂L/∂h¹‖ / ‖∂L/∂h^L‖                           > 1e3
ill-conditioned              empirical NTK condition number λ_max/λ_min     > 1e7
============================ ============================================== ===============

The NTK rule applies only to networks with at least N·K parameters (N samples, K outputs): a
smaller network's kernel is singular by construction.

No rule firing gives ``trainable``. The advice names the critical initialisation of the
network's own activation, computed by mean-field theory, and the architectural fixes
(self-normalizing SELU + LeCun, normalization layers, residual scaling).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from depthlab import _registry as reg

VANISHING_SIGNAL = 1e-3
EXPLODING_SIGNAL = 1e3
DEAD_UNITS = 0.5
VANISHING_GRADIENTS = 1e-3
VANISHING_RATIO = 1e-6
EXPLODING_GRADIENTS = 1e3
ILL_CONDITIONED = 1e7

ORDER = (
    "exploding signal",
    "vanishing signal",
    "exploding gradients",
    "vanishing gradients",
    "dead units",
    "ill-conditioned",
)


@dataclasses.dataclass(frozen=True)
class Finding:
    verdict: str
    evidence: str
    advice: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def judge(results: dict[str, Any]) -> tuple[str, list[Finding]]:
    """The primary verdict and every finding, from a diagnosis' probe results."""
    findings: list[Finding] = []
    advice = _Advice(results)
    signal, grads, ntk = results.get("signal"), results.get("gradients"), results.get("ntk")
    if signal:
        ratio, depth = signal["second_moment_ratio"], len(signal["layers"])
        if ratio < VANISHING_SIGNAL:
            fall = _times(1 / ratio if ratio > 0 else math.inf)
            findings.append(
                Finding(
                    "vanishing signal",
                    f"activation second moment falls {fall} over {depth} layers",
                    advice.vanishing,
                )
            )
        elif ratio > EXPLODING_SIGNAL:
            findings.append(
                Finding(
                    "exploding signal",
                    f"activation second moment grows {_times(ratio)} over {depth} layers",
                    advice.exploding,
                )
            )
        dead = [
            row["dead_fraction"] for row in signal["layers"] if row.get("dead_fraction") is not None
        ]
        if dead and sum(dead) / len(dead) > DEAD_UNITS:
            findings.append(
                Finding(
                    "dead units",
                    f"{100 * sum(dead) / len(dead):.0f} % of units are constant over the batch",
                    "units that never vary pass no gradient: use a smaller learning rate, "
                    "leaky_relu or a critical init; check the input scale",
                )
            )
    if grads:
        d = grads["delta_first_to_last"]
        if d < VANISHING_GRADIENTS or grads["max_ratio"] < VANISHING_RATIO:
            findings.append(
                Finding(
                    "vanishing gradients",
                    f"‖∂L/∂h‖ at the first layer is {_times(1 / d if d > 0 else math.inf)} smaller "
                    f"than at the last; largest ‖∇W‖/‖W‖ is {grads['max_ratio']:.2g}",
                    advice.vanishing,
                )
            )
        elif d > EXPLODING_GRADIENTS:
            findings.append(
                Finding(
                    "exploding gradients",
                    f"‖∂L/∂h‖ at the first layer is {_times(d)} larger than at the last",
                    advice.exploding,
                )
            )
    # A kernel on N samples with K outputs can be full rank only if the net has ≥ N·K
    # parameters; a smaller net (a linear model) is singular by construction, not badly scaled.
    can_be_full_rank = ntk and ntk.get("n_params", math.inf) >= ntk.get("n_samples", 0) * ntk.get(
        "n_outputs", 1
    )
    if ntk and can_be_full_rank and ntk.get("condition_number", 0) > ILL_CONDITIONED:
        findings.append(
            Finding(
                "ill-conditioned",
                f"the empirical NTK's condition number is {ntk['condition_number']:.2g}: gradient "
                "descent moves along its smallest directions "
                f"{ntk['condition_number']:.0e}× slower than along its largest",
                "normalization layers or a critical init decorrelate the kernel; check for "
                "duplicated or constant inputs",
            )
        )
    findings.sort(key=lambda f: ORDER.index(f.verdict))
    return (findings[0].verdict if findings else "trainable"), findings


class _Advice:
    """The init advice of a vanishing or exploding finding, worked out only when one fires.

    The critical σ_w² of a smooth activation takes a root search over quadratures (seconds for
    tanh), so it is computed on first use, once per diagnosis.
    """

    def __init__(self, results: dict[str, Any]) -> None:
        self._meanfield: dict[str, Any] = results.get("meanfield") or {}

    @functools.cached_property
    def _prefix(self) -> str:
        mf = self._meanfield
        act = str(mf.get("activation", "")).lower()
        if not act:
            return ""
        critical = _critical_phrase(act, mf.get("sigma_b2", 0.0))
        where = f"χ₁ = {mf['chi1']:.3g} (σ_w² = {mf['sigma_w2']:.3g}): {mf['phase']} phase; "
        return f"{where}{critical}"

    @property
    def vanishing(self) -> str:
        return (
            f"{self._prefix}or use SELU with LeCun init, normalization layers, or residual "
            "branches scaled by 1/√L"
        ).strip()

    @property
    def exploding(self) -> str:
        return (
            f"{self._prefix}lower the weight scale, add normalization, or scale residual "
            "branches by 1/√L (or ReZero)"
        ).strip()


#: The registered activations (``reg.ACTIVATIONS`` names) whose advice states their critical
#: σ_w²; any other activation gets the generic line.
CRITICAL_ADVICE = ("relu", "tanh", "selu", "sigmoid", "elu", "softplus")


def _critical_phrase(act: str, sigma_b2: float) -> str:
    """The critical init of the network's activation (a registry name), by mean-field theory."""
    from depthlab.exceptions import SpecError
    from depthlab.theory import critical_sigma_w2

    if act not in CRITICAL_ADVICE:
        return "use init: critical for this activation; "
    if act == "relu":
        return "for ReLU σ_w² = 2 (He, σ_b = 0) is critical; "
    try:
        sw2 = critical_sigma_w2(reg.ACTIVATIONS.get(act).fn, sigma_b2=sigma_b2)
    except SpecError:
        return "use init: critical; "
    return f"for {act} at σ_b² = {sigma_b2:.3g} the critical σ_w² is {sw2:.3g} (init: critical); "


def _times(x: float) -> str:
    if not math.isfinite(x):
        return "∞×"
    exponent = math.floor(math.log10(x)) if x > 0 else 0
    return f"{x:.0f}×" if x < 1e3 else f"10^{exponent}×"
