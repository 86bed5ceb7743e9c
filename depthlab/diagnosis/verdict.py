"""The verdict for a training setup: rules with fixed thresholds (why) and a calibrated P(trains).

A diagnosis answers "will *this* network train *with this optimizer, learning rate and budget*".
Two kinds of evidence meet here:

*Theory rules* read one probe each and fire above a documented threshold:

============================ ============================================== ===============
verdict                      rule                                           threshold
============================ ============================================== ===============
exploding signal             last/first layer pre-activation second moment  > 1e3
vanishing signal             last/first layer pre-activation second moment  < 1e-3
exploding gradients          ‖∂L/∂h¹‖ / ‖∂L/∂h^L‖                           > 1e3
vanishing gradients          ‖∂L/∂h¹‖ / ‖∂L/∂h^L‖, or every ‖∇W‖/‖W‖       < 1e-3, < 1e-6
correlation collapse         depth / measured ξ_c, correlations rising      > 6
chaotic                      depth / measured ξ_c, correlations falling     > 6
dead units                   mean fraction of units dead over the batch     > 0.5
ill-conditioned              empirical NTK condition number λ_max/λ_min     > 1e7
unstable step size           SGD lr above 2(1 + β)/λ_max of the Hessian     > 1
============================ ============================================== ===============

The depth rule is Schoenholz et al. 2017's: signals propagate, and networks train, to a depth
of about 6 ξ_c. The NTK rule applies only to networks with at least N·K parameters (N samples,
K outputs; a smaller net's kernel is singular by construction) and never fires on a condition
number that is only a numerical lower bound below the threshold. The step-size rule is the edge
of stability (Cohen et al. 2021): gradient descent with momentum β is stable on a quadratic only
while lr · λ_max < 2(1 + β); λ_max comes from the ``hessian`` probe, or is worked out (Lanczos
to 1 %, ``stability`` in the diagnosis) when an SGD-family trial goes unstable.

*The trial* (``depthlab.probes.trial``) trains a copy for a few percent of the budget with the
user's own setup — the run's own first steps: same initial weights, batches and schedule. A loss
that turns NaN/inf is *diverges* and sets P(trains) to 0; no progress toward the best constant
predictor is *no progress*.

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
)
#: Findings that only qualify what the probes saw (or, heterophily, the accuracy to expect);
#: never the verdict's cause.
WARNINGS = ("low coverage", "heterophily")
SGD_FAMILY = ("sgd", "momentum")


@dataclasses.dataclass(frozen=True)
class Finding:
    verdict: str
    evidence: str
    advice: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


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
    """Every theory rule and trial finding that fires, in ``ORDER``."""
    findings: list[Finding] = []
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
                    advice.dead,
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
    # graph rules (depthlab.diagnosis.graph_rules): oversmoothing and heterophily; for a graph
    # network they stand in for the correlation rules, whose ξ_c assumes independent inputs
    from depthlab.diagnosis.graph_rules import graph_findings

    graph, is_graph = graph_findings(results, setup, advice)
    findings.extend(graph)
    corr = None if is_graph else results.get("correlation")
    ratio, xi, source = depth_ratio(results)
    if corr and ratio is not None and ratio > DEPTH_OVER_XI:
        last = corr.get("last_mean_correlation")
        if last is None:
            last = corr["layers"][-1]["mean_correlation"]
        rising = last > corr.get("input_mean", 0.0)
        name = "correlation collapse" if rising else "chaotic"
        what = (
            "inputs become indistinguishable (correlations → 1)"
            if rising
            else "inputs decorrelate (every pair ends at the same correlation)"
        )
        bound = "≤ " if source == "measured" and corr.get("xi_c_is_bound") else ""
        findings.append(
            Finding(
                name,
                f"depth {corr['depth']} is {ratio:.3g} × the {source} correlation "
                f"length ξ_c = {bound}{xi:.3g} layers (trainable to ≈ 6 ξ_c): {what}",
                advice.correlation(rising),
            )
        )
    # A kernel on N samples with K outputs can be full rank only if the net has ≥ N·K
    # parameters; a smaller net (a linear model) is singular by construction, not badly scaled.
    if ntk and ntk.get("n_params", math.inf) >= ntk.get("n_samples", 0) * ntk.get("n_outputs", 1):
        cond = ntk.get("condition_number", 0)
        is_bound = bool(ntk.get("condition_number_is_bound"))
        # a lower bound fires only when the bound itself is above the threshold
        if cond > ILL_CONDITIONED:
            findings.append(
                Finding(
                    "ill-conditioned",
                    f"the empirical NTK's condition number is {'≥ ' if is_bound else ''}"
                    f"{cond:.2g}: gradient descent moves along its smallest directions "
                    f"{cond:.0e}× slower than along its largest",
                    advice.conditioning,
                )
            )
    hessian = results.get("hessian") or {}
    top = hessian.get("top_eigenvalues") or []
    if not top and (results.get("stability") or {}).get("lambda_max"):
        top = [results["stability"]["lambda_max"]]
    optimizer = str(setup.get("optimizer", "adam"))
    if top and optimizer in SGD_FAMILY and "lr" in setup and top[0] > 0:
        beta = float(setup.get("momentum", 0.9)) if optimizer == "momentum" else 0.0
        limit = 2 * (1 + beta) / top[0]
        if float(setup["lr"]) > STABLE_STEP * limit:
            findings.append(
                Finding(
                    "unstable step size",
                    f"lr {float(setup['lr']):.3g} is above the edge of stability "
                    f"2(1 + β)/λ_max = {limit:.3g} (λ_max = {top[0]:.3g}, β = {beta:g})",
                    advice.step_size(limit),
                )
            )
    trial = results.get("trial")
    if trial:
        if trial.get("diverged"):
            findings.append(
                Finding(
                    "diverges",
                    f"the trial's loss became NaN/inf at step {trial['diverged_step']} of "
                    f"{trial['planned_steps']} ({trial['optimizer']}, lr {trial['lr']:.3g})",
                    advice.diverges,
                )
            )
        elif _trial_progress(trial) < calibrated.NO_PROGRESS:
            findings.append(
                Finding(
                    "no progress",
                    f"after {trial.get('steps', '?')} trial steps "
                    f"({100 * trial.get('fraction_of_budget', 0.0):.0f} % "
                    f"of the budget) the loss is {trial['loss_after_ratio']:.3g} × the constant "
                    f"predictor's {trial['baseline_loss']:.3g}",
                    advice.slow,
                )
            )
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
