"""Theory rules, each within its domain: a rule is a *cause* only where its assumptions hold.

Every rule reads one measurement and compares it with a documented threshold, and rests on
assumptions it states as data (``Rule.assumes``). Each assumption is checked on the network and
setup at hand — the diagnosis's ``architecture`` summary, the probes' results, the ``meanfield``
probe's phase, the setup's optimizer — and the check says why it holds or fails. A rule whose
measurement crosses its threshold is

- a *cause* (a ``Finding`` named after the rule) when every assumption holds;
- *context* otherwise: a ``Finding`` with verdict ``context`` that names the rule, the failed
  assumption and what was measured, kept as a note and never the verdict ("correlation collapse
  silent: residual sum").

Each finding carries the checks it rests on (``Finding.domain``), so a report can show them.

============================ =================================== ========== =====================
rule                         measurement                         threshold  domain (assumptions)
============================ =================================== ========== =====================
exploding signal             last/first pre-activation E[h²]     > 1e3      optimizer keeps scale
vanishing signal             last/first pre-activation E[h²]     < 1e-3     optimizer keeps scale
exploding gradients          ‖∂L/∂h¹‖ / ‖∂L/∂h^L‖                > 1e3      optimizer keeps scale
vanishing gradients          same, or every ‖∇W‖/‖W‖             < 1e-3,    optimizer keeps scale
                                                                 < 1e-6
correlation collapse         inputs' relative distance δ at some < 1e3 ε    independent inputs
(resolution)                 layer, against float resolution                (not a graph net)
correlation collapse /       depth / ξ_c (correlations rising /  > 6        independent inputs,
chaotic (depth law)          falling)                                       no residual sum, no
                                                                            normalization, off a
                                                                            critical line,
                                                                            zero-mean activation,
                                                                            q at a fixed point
dead units                   mean fraction of units constant     > 0.5      no residual sum
                             over the batch
ill-conditioned              empirical NTK λ_max/λ_min           > 1e7      ≥ N·K parameters,
                                                                            SGD-family optimizer
unstable step size           lr · λ_max / 2(1 + β)               > 1        SGD-family optimizer
============================ =================================== ========== =====================

Why these domains:

- *optimizer keeps scale*: SGD's step is proportional to the gradient, so a gradient 10⁻⁶ times
  smaller moves 10⁻⁶ times slower. Adam-family optimizers divide each parameter's step by the
  running RMS of its gradient and undo any finite scale; there a scale rule is a cause only
  where the values are beyond what a rescaling recovers: exactly zero, underflowed (below the
  dtype's smallest normal number) or non-finite. An optimizer the setup does not state (a
  diagnosis with no training setup) is judged as for SGD, the theory's own setting.
- *depth law*: Schoenholz et al. 2017 derive ξ_c and the trainable depth ≈ 6 ξ_c for plain
  feed-forward nets off criticality, where the correlation map approaches its fixed point at an
  exponential rate. Residual sums make the approach polynomial (Yang & Schoenholz 2017), as do
  critical lines (ReLU at He init, any init where the ``meanfield`` probe finds χ₁ = 1; where
  it does not apply, a positively homogeneous activation — ReLU, leaky ReLU — whose correlation
  map at zero bias has slope 1 at c = 1 for every weight scale);
  normalization layers change the map; an activation with a non-zero mean adds a vector common
  to every input, which drives the raw correlation to 1 while the inputs stay apart. The
  activation is called zero-mean when its mean holds at most half of the first hidden
  representation's second moment (the ``correlation`` probe's ``offset_share``; ReLU ≈ 0.3,
  softplus ≈ 0.9). ξ_c is the correlation map's rate at the length's fixed point q*: while the
  signal vanishes or explodes (the signal rule's 1e-3 and 1e3) the layers are not there — a
  signal shrinking into an activation's linear part keeps every correlation (GELU with
  orthogonal weights: mean-field ξ_c 0.7 layers, measured correlations unchanged over 24).
- *correlation collapse (resolution)*: inputs whose representations differ by less than 1e3 ε
  of their norm are rounding apart in every network (``depthlab.probes.correlation``), whatever
  the architecture or optimizer — of independent inputs: a graph network's nodes are coupled,
  and its own rule, *oversmoothing* (``depthlab.diagnosis.graph_rules``), stands in for both
  correlation rules.
- *dead units*: a unit constant over the batch passes no gradient; behind a residual sum the
  skip path still carries the signal past it.
- *ill-conditioned*: a kernel on N samples and K outputs is full rank only for ≥ N·K parameters;
  the NTK's spectrum sets gradient descent's speeds, which Adam's per-parameter scaling changes.
- *unstable step size*: the edge of stability 2(1 + β)/λ_max (Cohen et al. 2021) is gradient
  descent's with heavy-ball momentum β.

λ_max comes from the ``hessian`` probe or from ``stability`` (Lanczos, in the diagnosis), which
runs for an SGD-family trial that diverged, spiked (max step loss > 2 × the first) or started
far above the best constant predictor (initial loss > 3 × its loss): ``needs_stability``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from depthlab.diagnosis.assumptions import ASSUMPTIONS, Check
from depthlab.diagnosis.verdict import (
    DEAD_UNITS,
    DEPTH_OVER_XI,
    EXPLODING_GRADIENTS,
    EXPLODING_SIGNAL,
    ILL_CONDITIONED,
    SGD_FAMILY,
    STABLE_STEP,
    VANISHING_GRADIENTS,
    VANISHING_RATIO,
    VANISHING_SIGNAL,
    Finding,
    _times,
)
from depthlab.exceptions import UnknownComponentError

#: An SGD-family trial starting above this multiple of the constant predictor's loss, or whose
#: largest step loss exceeds this multiple of its first, triggers the edge-of-stability check.
HIGH_START = 3.0
LOSS_SPIKE = 2.0
CONTEXT_ADVICE = "none from this rule: its law does not hold for this network and setup"


@dataclasses.dataclass(frozen=True)
class Reading:
    """A rule's measurement past its threshold: the verdict it names and its evidence;
    ``advice`` is computed only when the reading becomes a cause."""

    verdict: str
    evidence: str
    advice: Callable[[], str]


@dataclasses.dataclass(frozen=True)
class Rule:
    """A theory rule: its name, threshold, the assumptions it rests on, and its reading."""

    name: str
    threshold: str
    assumes: tuple[str, ...]
    read: Callable[[Mapping[str, Any], Mapping[str, Any], Any], Reading | None]


# -- readings ---------------------------------------------------------------------------------


def _signal(results: Mapping[str, Any], setup: Mapping[str, Any], advice: Any) -> Reading | None:
    signal = results.get("signal")
    if not signal:
        return None
    ratio, depth = signal["second_moment_ratio"], len(signal["layers"])
    if ratio < VANISHING_SIGNAL:
        fall = _times(1 / ratio if ratio > 0 else math.inf)
        return Reading(
            "vanishing signal",
            f"activation second moment falls {fall} over {depth} layers",
            lambda: advice.vanishing,
        )
    if ratio > EXPLODING_SIGNAL:
        return Reading(
            "exploding signal",
            f"activation second moment grows {_times(ratio)} over {depth} layers",
            lambda: advice.exploding,
        )
    return None


def _gradients(results: Mapping[str, Any], setup: Mapping[str, Any], advice: Any) -> Reading | None:
    grads = results.get("gradients")
    if not grads:
        return None
    d = grads["delta_first_to_last"]
    ends = {r["name"]: r.get("delta_norm") for r in grads.get("layers", [])}
    first, last = (ends.get(name) for name in grads.get("role_layers") or ("", ""))
    if first == 0 and last == 0:
        # 0/0, no ratio: every branch behind a zero gate (ReZero, SkipInit at init) passes no
        # ∂L/∂h until its gate moves, which the gate's own gradient does at the first step
        return None
    if d < VANISHING_GRADIENTS or grads["max_ratio"] < VANISHING_RATIO:
        return Reading(
            "vanishing gradients",
            f"‖∂L/∂h‖ at the first layer is {_times(1 / d if d > 0 else math.inf)} smaller "
            f"than at the last; largest ‖∇W‖/‖W‖ is {grads['max_ratio']:.2g}",
            lambda: advice.vanishing,
        )
    if d > EXPLODING_GRADIENTS:
        return Reading(
            "exploding gradients",
            f"‖∂L/∂h‖ at the first layer is {_times(d)} larger than at the last",
            lambda: advice.exploding,
        )
    return None


def _resolution(
    results: Mapping[str, Any], setup: Mapping[str, Any], advice: Any
) -> Reading | None:
    corr = results.get("correlation") or {}
    at = corr.get("indistinguishable_at")
    if at is None:
        return None
    return Reading(
        "correlation collapse",
        f"inputs become indistinguishable at layer {corr['indistinguishable_layer']} "
        f"({at + 1} of {corr['depth']}): their relative distance falls to "
        f"{corr['min_distance']:.2g}, below the resolution {corr['resolution']:.2g} "
        f"(1e3 ε of {corr.get('dtype', 'float32')})",
        lambda: advice.correlation(True),
    )


def _depth_law(results: Mapping[str, Any], setup: Mapping[str, Any], advice: Any) -> Reading | None:
    from depthlab.diagnosis.verdict import depth_ratio

    corr = results.get("correlation")
    ratio, xi, source = depth_ratio(results)
    if not corr or ratio is None or xi is None or ratio <= DEPTH_OVER_XI:
        return None
    last = corr.get("last_mean_correlation")
    if last is None:
        last = corr["layers"][-1]["mean_correlation"]
    rising = last > corr.get("input_mean", 0.0)
    what = (
        "inputs become indistinguishable (correlations → 1)"
        if rising
        else "inputs decorrelate (every pair ends at the same correlation)"
    )
    bound = "≤ " if source == "measured" and corr.get("xi_c_is_bound") else ""
    return Reading(
        "correlation collapse" if rising else "chaotic",
        f"depth {corr['depth']} is {ratio:.3g} × the {source} correlation length "
        f"ξ_c = {bound}{xi:.3g} layers (trainable to ≈ 6 ξ_c): {what}",
        lambda: advice.correlation(rising),
    )


def _dead(results: Mapping[str, Any], setup: Mapping[str, Any], advice: Any) -> Reading | None:
    signal = results.get("signal") or {}
    dead = [
        r["dead_fraction"] for r in signal.get("layers", []) if r.get("dead_fraction") is not None
    ]
    if not dead or sum(dead) / len(dead) <= DEAD_UNITS:
        return None
    return Reading(
        "dead units",
        f"{100 * sum(dead) / len(dead):.0f} % of units are constant over the batch",
        lambda: advice.dead,
    )


def _conditioning(
    results: Mapping[str, Any], setup: Mapping[str, Any], advice: Any
) -> Reading | None:
    ntk = results.get("ntk")
    # a lower bound fires only when the bound itself is above the threshold
    if not ntk or not ntk.get("condition_number", 0) > ILL_CONDITIONED:
        return None
    cond = ntk["condition_number"]
    bound = "≥ " if ntk.get("condition_number_is_bound") else ""
    return Reading(
        "ill-conditioned",
        f"the empirical NTK's condition number is {bound}{cond:.2g}: gradient descent moves "
        f"along its smallest directions {cond:.0e}× slower than along its largest",
        lambda: advice.conditioning,
    )


def _step_size(results: Mapping[str, Any], setup: Mapping[str, Any], advice: Any) -> Reading | None:
    top = (results.get("hessian") or {}).get("top_eigenvalues") or []
    stability = results.get("stability") or {}
    if not top and stability.get("lambda_max"):
        top = [stability["lambda_max"]]
    optimizer = str(setup.get("optimizer", "adam"))
    if not top or optimizer not in SGD_FAMILY or "lr" not in setup or not top[0] > 0:
        return None
    beta = float(setup.get("momentum", 0.9)) if optimizer == "momentum" else 0.0
    limit = 2 * (1 + beta) / top[0]
    lr = float(setup["lr"])
    if lr <= STABLE_STEP * limit:
        return None
    why = f"; checked because {stability['trigger']}" if stability.get("trigger") else ""
    return Reading(
        "unstable step size",
        f"lr {lr:.3g} is above the edge of stability 2(1 + β)/λ_max = {limit:.3g} "
        f"(λ_max = {top[0]:.3g}, β = {beta:g}){why}",
        lambda: advice.step_size(limit),
    )


SCALE = ("optimizer keeps scale",)
DEPTH_LAW = (
    "independent inputs",
    "no residual sum",
    "no normalization",
    "off a critical line",
    "zero-mean activation",
    "q at a fixed point",
)

#: The theory rules in the order they are checked. Other rules join by appending a ``Rule``.
RULES: list[Rule] = [
    Rule("signal scale", "< 1e-3 or > 1e3", SCALE, _signal),
    Rule("gradient scale", "< 1e-3 or > 1e3; every ‖∇W‖/‖W‖ < 1e-6", SCALE, _gradients),
    Rule("correlation collapse (resolution)", "δ < 1e3 ε", ("independent inputs",), _resolution),
    Rule("depth law", "depth > 6 ξ_c", DEPTH_LAW, _depth_law),
    Rule("dead units", "> 0.5", ("no residual sum",), _dead),
    Rule("ill-conditioned", "> 1e7", ("≥ N·K parameters", "SGD-family optimizer"), _conditioning),
    Rule("unstable step size", "lr > 2(1 + β)/λ_max", ("SGD-family optimizer",), _step_size),
]


# -- evaluation -------------------------------------------------------------------------------


def check(rule: Rule, results: Mapping[str, Any], setup: Mapping[str, Any]) -> list[Check]:
    """``rule``'s assumptions, each checked on this network and setup."""
    return [Check(name, *ASSUMPTIONS[name](results, setup)) for name in rule.assumes]


def theory_findings(
    results: Mapping[str, Any], setup: Mapping[str, Any], advice: Any
) -> list[Finding]:
    """Every rule whose measurement crosses its threshold: a cause where its domain holds, a
    ``context`` note where it does not (one cause per verdict: the first rule naming it)."""
    out: list[Finding] = []
    named: set[str] = set()
    for rule in RULES:
        reading = rule.read(results, setup, advice)
        if reading is None:
            continue
        checks = check(rule, results, setup)
        domain = tuple(str(c) for c in checks)
        failed = [c for c in checks if not c.holds]
        if not failed:
            if reading.verdict not in named:
                named.add(reading.verdict)
                out.append(
                    Finding(reading.verdict, reading.evidence, reading.advice(), rule.name, domain)
                )
            continue
        why = "; ".join(f"{c.assumption} fails — {c.detail}" for c in failed)
        out.append(
            Finding(
                "context",
                f"{reading.verdict} ({rule.name}) is silent here: {why}. It measured: "
                f"{reading.evidence}",
                CONTEXT_ADVICE,
                rule.name,
                domain,
            )
        )
    return out


def applies(name: str, results: Mapping[str, Any], setup: Mapping[str, Any]) -> bool:
    """Whether every assumption of the rule called ``name`` holds here (e.g. ``"depth law"``:
    whether depth / ξ_c means anything for this network, as a feature too)."""
    rule = next((r for r in RULES if r.name == name), None)
    if rule is None:
        raise UnknownComponentError("rule", name, [r.name for r in RULES])
    return all(c.holds for c in check(rule, results, setup))


def domains(results: Mapping[str, Any], setup: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each rule's domain on this network and setup, for the diagnosis: the rule, whether all
    its assumptions hold, and every check."""
    rows = []
    for rule in RULES:
        checks = check(rule, results, setup)
        rows.append(
            {
                "rule": rule.name,
                "threshold": rule.threshold,
                "applies": all(c.holds for c in checks),
                "checks": [dataclasses.asdict(c) for c in checks],
            }
        )
    return rows


def needs_stability(results: Mapping[str, Any], setup: Mapping[str, Any]) -> str | None:
    """Why the edge of stability must be worked out (λ_max), or ``None``: an SGD-family trial
    that diverged, spiked or started far above the best constant predictor, and no Hessian."""
    trial = results.get("trial") or {}
    if not trial or setup.get("optimizer") not in SGD_FAMILY or "hessian" in results:
        return None
    if trial.get("diverged"):
        return "the trial diverged"
    growth = trial.get("loss_growth") or 0.0
    if growth > LOSS_SPIKE:
        return f"the trial's loss spiked to {growth:.3g} × its first step's"
    base, start = trial.get("baseline_loss") or 0.0, trial.get("loss_before")
    if base > 0 and isinstance(start, int | float) and start > HIGH_START * base:
        return (
            f"the trial started at {start:.3g}, {start / base:.3g} × the constant "
            f"predictor's {base:.3g}"
        )
    return None


def warmup_findings(results: Mapping[str, Any], setup: Mapping[str, Any]) -> list[Finding]:
    """A warning when the trial saw only warm-up learning rates (it reads a smaller step than
    the run's)."""
    trial = results.get("trial") or {}
    warmup = float(setup.get("warmup_steps") or 0.0)
    steps = trial.get("steps")
    if not trial or not isinstance(steps, int) or not warmup or steps > warmup:
        return []
    lr = float(setup.get("lr", trial.get("lr", 0.0)))
    return [
        Finding(
            "warm-up covers the trial",
            f"the trial's {steps} steps saw only warm-up learning rates (up to "
            f"{lr * steps / warmup:.3g} of lr {lr:.3g}; the warm-up lasts {warmup:g} steps): "
            "its progress understates the run's",
            "read the trial's progress as a lower bound, or diagnose with a shorter warm-up",
            "trial",
            (f"trial past warm-up: fails ({steps} ≤ {warmup:g} steps)",),
        )
    ]


def in_warmup(results: Mapping[str, Any], setup: Mapping[str, Any]) -> bool:
    """Whether every trial step ran inside the warm-up."""
    return bool(warmup_findings(results, setup))
