"""The verdict for a training setup: rules with fixed thresholds (why) and a calibrated P(trains).

A diagnosis answers "will *this* network train *with this optimizer, learning rate and budget*".
Two kinds of evidence meet here:

*Theory rules* (``depthlab.diagnosis.rules``) read one probe each, fire above a documented
threshold, and are a *cause* only inside their domain — the assumptions each states, checked on
the network and setup; outside it they are ``context`` notes, never the verdict:

============================ ========================================== ======= ===============
verdict                      rule                                       thresh. domain
============================ ========================================== ======= ===============
exploding signal             last/first layer pre-activation E[h²]      > 1e3   SGD family [1]
vanishing signal             last/first layer pre-activation E[h²]      < 1e-3  SGD family [1]
exploding gradients          ‖∂L/∂h¹‖ / ‖∂L/∂h^L‖                       > 1e3   SGD family [1]
vanishing gradients          same, or every ‖∇W‖/‖W‖                    < 1e-3, SGD family [1]
                                                                        < 1e-6
correlation collapse         inputs' relative distance / float ε        < 1e3   not a graph net
correlation collapse         depth / ξ_c, correlations rising           > 6     plain net [2]
chaotic                      depth / ξ_c, correlations falling          > 6     plain net [2]
dead units                   mean fraction of units dead over the batch > 0.5   no residual sum
ill-conditioned              empirical NTK condition number             > 1e7   ≥ N·K params,
                                                                                SGD family
unstable step size           SGD lr above 2(1 + β)/λ_max of the Hessian > 1     SGD family
============================ ========================================== ======= ===============

[1] Or values exactly zero, underflowed or non-finite: Adam-family optimizers undo a finite
scale. [2] Independent inputs (not a graph net), no residual sum, no normalization, off a
critical line, zero-mean activation, q at its fixed point: where the approach to c* is
exponential. Graph networks get *oversmoothing* and *heterophily* instead
(``depthlab.diagnosis.graph_rules``).

The depth rule is Schoenholz et al. 2017's: signals propagate, and networks train, to a depth
of about 6 ξ_c. The NTK rule applies only to networks with at least N·K parameters (N samples,
K outputs; a smaller net's kernel is singular by construction) and never fires on a condition
number that is only a numerical lower bound below the threshold. The step-size rule is the edge
of stability (Cohen et al. 2021): gradient descent with momentum β is stable on a quadratic only
while lr · λ_max < 2(1 + β); λ_max comes from the ``hessian`` probe, or is worked out (Lanczos
to 1 %, ``stability`` in the diagnosis) when an SGD-family trial diverges, spikes or starts
far above the constant predictor (``rules.needs_stability``).

*The trial* (``depthlab.probes.trial``) trains a copy for a few percent of the budget with the
user's own setup — the run's own first steps: same initial weights, batches and schedule. A loss
that turns NaN/inf is *diverges* and sets P(trains) to 0; no progress toward the best constant
predictor is *no progress* (context when the trial saw only the warm-up, which is flagged).

``p_trains`` — the probability that the network gets at least halfway from chance to a shallow
reference net within the budget — comes from a logistic model per optimizer family (SGD family:
sgd, momentum; adaptive: adam, adamw) over trial and theory features, fitted on the tuning half
of ``bench/verdict_calibration.py`` and stored in ``depthlab.diagnosis.calibrated``. The verdict
is ``trainable`` when p_trains ≥ 0.5; otherwise the first rule or trial finding in ``ORDER``
names the cause (``won't train in budget`` when none fired). Without the trial (a probe list
that leaves it out) the rules alone give the verdict and p_trains is the theory-only model's.
``decided_by`` says whose evidence moved p_trains most: ``trial`` or ``theory``. Rules that
fire on a network predicted to train stay in ``findings`` as warnings.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from depthlab.diagnosis import calibrated

VANISHING_SIGNAL = 1e-3
EXPLODING_SIGNAL = 1e3
DEAD_UNITS = 0.5
VANISHING_GRADIENTS = 1e-3
VANISHING_RATIO = 1e-6
EXPLODING_GRADIENTS = 1e3
ILL_CONDITIONED = 1e7
DEPTH_OVER_XI = 6.0
STABLE_STEP = 1.0
LOW_COVERAGE = 0.5

ORDER = (
    "disconnected",  # pruning emptied a layer on the only path (depthlab.diagnosis.disconnected)
    "diverges",
    "unstable step size",
    "exploding signal",
    "oversmoothing",  # graph rules (depthlab.diagnosis.graph_rules): a graph net's own cause
    "vanishing signal",
    "exploding gradients",
    "vanishing gradients",
    "correlation collapse",
    "chaotic",
    "dead units",
    "ill-conditioned",
    "heterophily",  # graph rules (depthlab.diagnosis.graph_rules)
    "no progress",
    "low coverage",
    "warm-up covers the trial",
    "context",
)
#: Findings that only qualify what the probes saw (or, heterophily, the accuracy to expect);
#: never the verdict's cause. ``context`` is a theory rule outside its domain
#: (``depthlab.diagnosis.rules``).
WARNINGS = ("low coverage", "heterophily", "warm-up covers the trial", "context")
SGD_FAMILY = ("sgd", "momentum")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One rule's or the trial's finding. ``rule``: the rule that made it (for ``context``, the
    rule that stayed silent); ``domain``: its assumptions as checked on this network and setup,
    each ``"assumption: holds|fails (why)"``."""

    verdict: str
    evidence: str
    advice: str
    rule: str = ""
    domain: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "domain": list(self.domain)}


@dataclasses.dataclass(frozen=True)
class Assessment:
    """The verdict, its probability and the evidence behind it."""

    verdict: str
    p_trains: float
    decided_by: str
    findings: tuple[Finding, ...]
    contributions: dict[str, float]


def optimizer_family(optimizer: str) -> str:
    return "sgd" if optimizer in SGD_FAMILY else "adaptive"


def judge(results: Mapping[str, Any]) -> tuple[str, list[Finding]]:
    """The verdict and every finding from probe results alone (no training setup)."""
    a = assess(results)
    return a.verdict, list(a.findings)


def assess(results: Mapping[str, Any], setup: Mapping[str, Any] | None = None) -> Assessment:
    """The verdict for ``results`` (a diagnosis' probe results) under ``setup``
    (``optimizer``, ``lr``, ``momentum``; the adaptive default when absent)."""
    from depthlab.diagnosis.advice import Advice

    setup = dict(setup or {})
    advice = Advice(results, setup)
    findings = rule_findings(results, setup, advice)
    p, contributions = probability(results, setup)
    if p is None or "trial" not in results:
        # Without the trial the rules decide, as they always have: theory has nothing to weigh
        # against. P(trains) is then the theory-only model's, reported beside the verdict.
        causes = [f for f in findings if f.verdict not in WARNINGS]
        verdict = causes[0].verdict if causes else "trainable"
        fallback = 0.0 if causes else 1.0
        return Assessment(
            verdict, fallback if p is None else p, "theory", tuple(findings), contributions
        )
    causes = [f for f in findings if f.verdict not in WARNINGS]
    trial = results.get("trial") or {}
    if trial.get("diverged"):
        # The trial is the run's own first steps (same init, same batches, same schedule):
        # its divergence is the run's, whatever the other evidence says.
        p = 0.0
        contributions = {**contributions, "trial": -math.inf}
    if p >= 0.5:
        verdict = "trainable"
    elif causes:
        verdict = causes[0].verdict
    else:
        verdict = "won't train in budget"
        findings.append(
            Finding(
                verdict,
                f"P(trains) = {p:.2f} from the calibrated model; no single rule fired",
                advice.slow,
            )
        )
    trial, theory = contributions.get("trial", 0.0), contributions.get("theory", 0.0)
    # whose evidence pushed toward the decision the most
    sign = 1.0 if p >= 0.5 else -1.0
    decided_by = "trial" if sign * trial >= sign * theory else "theory"
    if "trial" not in results:
        decided_by = "theory"
    return Assessment(verdict, p, decided_by, tuple(findings), contributions)


def rule_findings(
    results: Mapping[str, Any], setup: Mapping[str, Any], advice: Any
) -> list[Finding]:
    """Every theory rule (``depthlab.diagnosis.rules``: a cause inside its domain, a
    ``context`` note outside it) and trial finding that fires, in ``ORDER``."""
    from depthlab.diagnosis import rules
    from depthlab.diagnosis.graph_rules import graph_findings

    findings = rules.theory_findings(results, setup, advice)
    # -- hook: sparse nets (rule in depthlab.diagnosis.disconnected) --
    from depthlab.diagnosis.disconnected import VERDICT, disconnected

    cut = disconnected(results)
    if cut is not None:
        findings.append(Finding(VERDICT, *cut))
    # -- end hook --
    # graph rules (depthlab.diagnosis.graph_rules): oversmoothing and heterophily; for a graph
    # network they stand in for the correlation rules, whose domain is independent inputs
    findings += graph_findings(results, setup, advice)[0]
    findings += rules.warmup_findings(results, setup)
    findings += _trial_findings(results, setup, advice)
    coverage = results.get("coverage")
    if coverage and coverage.get("fraction", 1.0) < LOW_COVERAGE:
        findings.append(
            Finding(
                "low coverage",
                f"the probes found layers holding {100 * coverage['fraction']:.0f} % of the "
                "parameters; the verdict rests on those",
                "check that the model's layers hold their weights as ≥ 2-D 'weight' parameters",
            )
        )
    findings.sort(key=lambda f: ORDER.index(f.verdict))
    return findings


def _trial_findings(
    results: Mapping[str, Any], setup: Mapping[str, Any], advice: Any
) -> list[Finding]:
    """*diverges* and *no progress* from the trial; no progress inside the warm-up is context
    (the trial saw a smaller step than the run's)."""
    from depthlab.diagnosis.rules import CONTEXT_ADVICE, in_warmup

    trial = results.get("trial")
    if not trial:
        return []
    if trial.get("diverged"):
        return [
            Finding(
                "diverges",
                f"the trial's loss became NaN/inf at step {trial['diverged_step']} of "
                f"{trial['planned_steps']} ({trial['optimizer']}, lr {trial['lr']:.3g})",
                advice.diverges,
            )
        ]
    if _trial_progress(trial) >= calibrated.NO_PROGRESS:
        return []
    evidence = (
        f"after {trial.get('steps', '?')} trial steps "
        f"({100 * trial.get('fraction_of_budget', 0.0):.0f} % of the budget) the loss is "
        f"{trial['loss_after_ratio']:.3g} × the constant predictor's {trial['baseline_loss']:.3g}"
    )
    if in_warmup(results, setup):
        return [
            Finding(
                "context",
                f"no progress (trial) is silent here: trial past warm-up fails. It measured: "
                f"{evidence}",
                CONTEXT_ADVICE,
                "no progress",
                ("trial past warm-up: fails",),
            )
        ]
    return [Finding("no progress", evidence, advice.slow, "no progress")]


def depth_ratio(results: Mapping[str, Any]) -> tuple[float | None, float | None, str]:
    """Depth over ξ_c, ξ_c, and where ξ_c came from: mean-field theory when the ``meanfield``
    probe applies (exact for the approach to a critical point, which is not exponential), else
    the ``correlation`` probe's measurement (re-fitted from its stored slopes)."""
    from depthlab.probes.correlation import fit_xi

    corr = results.get("correlation")
    if not corr:
        return None, None, "measured"
    mf = results.get("meanfield") or {}
    if mf.get("phase") == "critical":
        # at the critical point ξ_c diverges (theory may return inf or NaN for it)
        return 0.0, math.inf, "mean-field"
    if isinstance(mf.get("xi_c"), int | float) and mf["xi_c"] > 0:
        xi = float(mf["xi_c"])
        return (corr["depth"] / xi if math.isfinite(xi) else 0.0), xi, "mean-field"
    fit = fit_xi(corr["layers"])
    return fit["depth_ratio"], fit["xi_c"], "measured"


def _trial_progress(trial: Mapping[str, Any]) -> float:
    """How far below the constant predictor (or its start, if lower) the trial's loss got."""
    if "progress" in trial:
        return float(trial["progress"])
    base = trial["baseline_loss"] or 1.0
    return (min(trial["loss_before"], base) - trial["loss_after"]) / base


def features(results: Mapping[str, Any], setup: Mapping[str, Any]) -> dict[str, float]:
    """The numbers P(trains) is computed from (missing probes give no entry)."""
    out: dict[str, float] = {}
    lr = setup.get("lr")
    if lr:
        out["log10_lr"] = math.log10(float(lr))
    signal = results.get("signal")
    if signal:
        out["signal_scale"] = min(abs(_log10(signal["second_moment_ratio"])), 12.0)
    grads = results.get("gradients")
    if grads:
        out["gradient_scale"] = min(abs(_log10(grads["delta_first_to_last"])), 12.0)
    ratio, _, _ = depth_ratio(results)
    if ratio is not None:
        out["depth_over_xi"] = min(float(ratio), 60.0) / 10.0
    trial = results.get("trial")
    if trial:
        diverged = bool(trial.get("diverged"))
        out["trial_diverged"] = float(diverged)
        out["trial_improvement"] = 0.0 if diverged else _clip(trial["improvement"], -1.0, 1.0)
        out["trial_below_baseline"] = (
            -1.0 if diverged else _clip(1.0 - trial["loss_after_ratio"], -1.0, 1.0)
        )
        acc0, acc1 = trial.get("accuracy_before"), trial.get("accuracy_after")
        if acc0 is not None:
            out["trial_accuracy_gain"] = 0.0 if diverged or acc1 is None else acc1 - acc0
        ref = trial.get("reference")
        if ref:
            # the same trial on the shallow reference net: how fast this setup lets any network
            # learn this data, against which the network's own trial is read
            ref_below = -1.0 if ref["diverged"] else _clip(1.0 - ref["loss_after_ratio"], -1, 1)
            out["reference_below_baseline"] = ref_below
            out["trial_behind_reference"] = ref_below - out["trial_below_baseline"]
            r0, r1 = ref.get("accuracy_before"), ref.get("accuracy_after")
            if r0 is not None and "trial_accuracy_gain" in out:
                ref_gain = 0.0 if ref["diverged"] or r1 is None else r1 - r0
                out["trial_accuracy_behind_reference"] = ref_gain - out["trial_accuracy_gain"]
    return out


TRIAL_FEATURES = (
    "trial_diverged",
    "trial_improvement",
    "trial_below_baseline",
    "trial_accuracy_gain",
    "reference_below_baseline",
    "trial_behind_reference",
    "trial_accuracy_behind_reference",
)


def probability(
    results: Mapping[str, Any], setup: Mapping[str, Any]
) -> tuple[float | None, dict[str, float]]:
    """P(trains) from the calibrated model, and the logit's parts (trial, theory, intercept)."""
    family = optimizer_family(str(setup.get("optimizer", "adam")))
    feats = features(results, setup)
    kind = "full" if "trial_improvement" in feats else "theory"
    model = calibrated.MODELS.get(f"{family}/{kind}")
    if model is None:
        return None, {"family": 0.0}
    parts = {"trial": 0.0, "theory": 0.0}
    logit = float(model["intercept"])
    for name, (mean, scale, weight) in model["coefficients"].items():
        value = feats.get(name, mean)
        term = weight * (value - mean) / scale
        logit += term
        parts["trial" if name in TRIAL_FEATURES else "theory"] += term
    p = 1.0 / (1.0 + math.exp(-max(min(logit, 40.0), -40.0)))
    return p, {**parts, "intercept": float(model["intercept"]), "logit": logit}


def _clip(x: float, lo: float, hi: float) -> float:
    if not math.isfinite(x):
        return lo if x < 0 else hi
    return max(lo, min(hi, float(x)))


def _log10(x: float) -> float:
    if x <= 0:
        return -300.0
    if not math.isfinite(x):
        return 300.0
    return math.log10(x)


def _times(x: float) -> str:
    if not math.isfinite(x):
        return "∞×"
    exponent = math.floor(math.log10(x)) if x > 0 else 0
    return f"{x:.0f}×" if x < 1e3 else f"10^{exponent}×"
