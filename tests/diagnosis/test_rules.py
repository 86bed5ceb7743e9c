"""Each theory rule is a cause inside its stated domain and a context note outside it."""

from __future__ import annotations

import pytest
import torch

from depthlab import ArchSpec, build_model
from depthlab.diagnosis import DiagnoseOptions, diagnose, judge
from depthlab.diagnosis import rules as r
from depthlab.diagnosis.run import training_setup
from depthlab.diagnosis.verdict import WARNINGS, assess
from depthlab.exceptions import UnknownComponentError
from depthlab.probes import ProbeBatch
from depthlab.spec import TrainSpec

SGD = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.0}
ADAMW = {"optimizer": "adamw", "lr": 1e-3}
PLAIN = {"kind": "mlp", "norms": [], "activations": ["Tanh"], "residual": False}
RESIDUAL = {**PLAIN, "residual": True}
NORMED = {**PLAIN, "norms": ["LayerNorm"]}


def _causes(results, setup):
    findings = assess(results, setup).findings
    return {f.verdict for f in findings if f.verdict not in WARNINGS}, findings


def _silent(results, setup, verdict, rule):
    """``verdict`` is no cause, and a context note says that ``rule`` stayed silent."""
    causes, findings = _causes(results, setup)
    notes = [f for f in findings if f.verdict == "context" and f.rule == rule]
    return verdict not in causes and len(notes) == 1 and verdict in notes[0].evidence


def _signal(ratio, q_last=1.0):
    return {
        "second_moment_ratio": ratio,
        "layers": [{"name": "0", "second_moment": 1.0}, {"name": "9", "second_moment": q_last}],
    }


def _grads(delta, last_grad=1e-3):
    rows = [
        {"name": "0", "grad_norm": last_grad, "delta_norm": delta, "called": True},
        {"name": "9", "grad_norm": 1.0, "delta_norm": 1.0, "called": True},
    ]
    return {"delta_first_to_last": delta, "max_ratio": 1.0, "layers": rows}


@pytest.mark.parametrize(
    ("probe", "value", "verdict"),
    [
        ("signal", _signal(1e-6, 1e-6), "vanishing signal"),
        ("signal", _signal(1e6, 1e6), "exploding signal"),
        ("gradients", _grads(1e-6), "vanishing gradients"),
        ("gradients", _grads(1e6), "exploding gradients"),
    ],
)
def test_scale_rules_are_causes_under_sgd_and_context_under_adam(probe, value, verdict):
    results = {probe: value, "architecture": PLAIN}
    assert verdict in _causes(results, SGD)[0]
    assert _silent(results, ADAMW, verdict, f"{probe.removesuffix('s')} scale")
    # no optimizer stated: judged as for SGD, the theory's own setting
    assert judge(results)[0] == verdict


def test_adam_scale_rules_fire_where_gradients_are_exactly_zero_or_underflow():
    dead_layer = {"gradients": _grads(1e-6, last_grad=0.0), "architecture": PLAIN}
    causes, findings = _causes(dead_layer, ADAMW)
    assert "vanishing gradients" in causes
    cause = next(f for f in findings if f.verdict == "vanishing gradients")
    assert any("holds" in d and "‖∇W‖ is 0" in d for d in cause.domain)
    underflow = {"signal": _signal(1e-40, 1e-40), "architecture": PLAIN}
    assert "vanishing signal" in _causes(underflow, ADAMW)[0]


def _corr(depth_ratio=20.0, offset=0.1, rising=True, indistinguishable=None):
    rows = [
        {"name": str(k), "index": k, "slope": 0.5**k, "slope_se": 0.01, "mean_correlation": 0.5}
        for k in range(12)
    ]
    for row in rows:
        row["offset_share"] = offset
    return {
        "layers": rows,
        "depth": 12,
        "xi_c": 12 / depth_ratio,
        "xi_c_is_bound": False,
        "depth_ratio": depth_ratio,
        "input_mean": 0.0 if rising else 0.9,
        "last_mean_correlation": 0.99 if rising else 0.1,
        "dtype": "float32",
        "resolution": 1.2e-4,
        "min_distance": 1e-8 if indistinguishable is not None else 0.1,
        "indistinguishable_at": indistinguishable,
        "indistinguishable_layer": None if indistinguishable is None else str(indistinguishable),
    }


@pytest.mark.parametrize("rising", [True, False])
@pytest.mark.parametrize(
    ("outside", "why"),
    [
        ({"architecture": RESIDUAL}, "no residual sum"),
        ({"architecture": NORMED}, "no normalization"),
        ({"correlation": _corr(offset=0.9)}, "zero-mean activation"),
        ({"signal": _signal(1e-9)}, "q at a fixed point"),
    ],
)
def test_depth_law_is_context_outside_plain_zero_mean_feed_forward_nets(rising, outside, why):
    verdict = "correlation collapse" if rising else "chaotic"
    inside = {"correlation": _corr(rising=rising), "architecture": PLAIN, "signal": _signal(1.0)}
    assert verdict in _causes(inside, ADAMW)[0]  # a geometry law: the optimizer is no part
    results = {**inside, **outside}
    if "correlation" in outside:
        results["correlation"] = _corr(offset=0.9, rising=rising)
    assert _silent(results, ADAMW, verdict, "depth law")
    findings = assess(results, ADAMW).findings
    note = next(f for f in findings if f.verdict == "context" and f.rule == "depth law")
    assert f"{why}: fails" in " ".join(note.domain)


def test_the_depth_law_is_silent_on_a_critical_line():
    critical = {"phase": "critical", "chi1": 1.0, "xi_c": float("inf")}
    results = {"correlation": _corr(), "architecture": PLAIN, "meanfield": critical}
    causes, findings = _causes(results, SGD)
    assert "correlation collapse" not in causes
    table = {row["rule"]: row for row in r.domains(results, SGD)}
    assert not table["depth law"]["applies"] and not r.applies("depth law", results, SGD)
    assert r.applies("depth law", {**results, "meanfield": {"phase": "ordered"}}, SGD)
    with pytest.raises(UnknownComponentError, match="unknown rule 'depth'; choices: correlation"):
        r.applies("depth", results, SGD)
    assert {c["assumption"] for c in table["depth law"]["checks"] if not c["holds"]} == {
        "off a critical line"
    }
    # where mean-field theory does not apply, a ReLU net is still on its critical c-line
    relu = {
        "correlation": _corr(),
        "architecture": {**PLAIN, "kind": "cnn", "activations": ["ReLU"]},
    }
    assert _silent(relu, SGD, "correlation collapse", "depth law")


def test_inputs_below_float_resolution_collapse_in_every_network_and_setup():
    lost = {"correlation": _corr(offset=0.9, indistinguishable=3), "architecture": RESIDUAL}
    causes, findings = _causes(lost, ADAMW)
    assert "correlation collapse" in causes
    cause = next(f for f in findings if f.verdict == "correlation collapse")
    assert cause.rule == "correlation collapse (resolution)" and "below the resolution" in (
        cause.evidence
    )


def test_a_graph_network_gets_neither_correlation_rule_as_a_cause():
    graph = {**PLAIN, "kind": "graph"}
    lost = {"correlation": _corr(indistinguishable=3), "architecture": graph}
    causes, findings = _causes(lost, SGD)
    assert not {"correlation collapse", "chaotic"} & causes
    notes = [f for f in findings if f.verdict == "context"]
    assert {f.rule for f in notes} == {"correlation collapse (resolution)", "depth law"}
    assert all("independent inputs: fails" in " ".join(f.domain) for f in notes)


def test_dead_units_are_context_behind_a_residual_sum():
    signal = {**_signal(1.0), "layers": [{"name": "0", "second_moment": 1.0, "dead_fraction": 0.9}]}
    assert "dead units" in _causes({"signal": signal, "architecture": PLAIN}, SGD)[0]
    assert _silent({"signal": signal, "architecture": RESIDUAL}, SGD, "dead units", "dead units")


def test_conditioning_needs_enough_parameters_and_gradient_descent():
    ntk = {"condition_number": 1e9, "n_params": 500, "n_samples": 2, "n_outputs": 3}
    assert "ill-conditioned" in _causes({"ntk": ntk}, SGD)[0]
    assert _silent({"ntk": ntk}, ADAMW, "ill-conditioned", "ill-conditioned")
    small = {**ntk, "n_params": 5}
    assert _silent({"ntk": small}, SGD, "ill-conditioned", "ill-conditioned")


def test_step_size_rule_reads_sgd_only():
    hessian = {"top_eigenvalues": [100.0]}  # edge 2/λ = 0.02 for plain SGD
    assert "unstable step size" in _causes({"hessian": hessian}, SGD)[0]
    assert "unstable step size" not in _causes({"hessian": hessian}, {**SGD, "lr": 0.01})[0]
    assert "unstable step size" not in _causes({"hessian": hessian}, {**ADAMW, "lr": 0.05})[0]


def _trial(**kw):
    base = {
        "diverged": False,
        "steps": 10,
        "planned_steps": 10,
        "loss_before": 2.3,
        "loss_after": 2.3,
        "baseline_loss": 2.3,
        "loss_after_ratio": 1.0,
        "loss_growth": 1.0,
        "progress": 0.0,
        "improvement": 0.0,
        "fraction_of_budget": 0.05,
        "optimizer": "sgd",
        "lr": 0.05,
    }
    return {**base, **kw}


def test_a_high_start_or_spike_under_sgd_triggers_the_stability_check():
    assert r.needs_stability({"trial": _trial()}, SGD) is None
    high = r.needs_stability({"trial": _trial(loss_before=23.6)}, SGD)
    assert high and "10.3 × the constant predictor" in high
    assert "spiked" in r.needs_stability({"trial": _trial(loss_growth=4.0)}, SGD)
    assert r.needs_stability({"trial": _trial(loss_before=23.6)}, ADAMW) is None
    assert r.needs_stability({"trial": _trial(loss_before=23.6), "hessian": {}}, SGD) is None


def test_a_warmup_longer_than_the_trial_is_flagged_and_no_progress_is_context():
    setup = {**SGD, "warmup_steps": 20}
    findings = assess({"trial": _trial()}, setup).findings
    flagged = [f for f in findings if f.verdict == "warm-up covers the trial"]
    assert flagged and "saw only warm-up" in flagged[0].evidence
    assert "no progress" not in {f.verdict for f in findings}
    assert any(f.verdict == "context" and f.rule == "no progress" for f in findings)
    after = assess({"trial": _trial()}, {**SGD, "warmup_steps": 5}).findings
    assert "no progress" in {f.verdict for f in after}
    assert "warm-up covers the trial" not in {f.verdict for f in after}


def test_the_setup_states_the_warmup_in_steps():
    train = TrainSpec(batch_size=32, warmup_epochs=2.5, epochs=10)
    setup = training_setup(DiagnoseOptions(train=train), 128)
    assert setup["warmup_steps"] == 10 and setup["budget_steps"] == 40


# -- real networks, real probes ---------------------------------------------------------------

PROBES = ("signal", "gradients", "correlation", "meanfield")


def _diagnose(arch: ArchSpec, train: TrainSpec) -> dict:
    gen = torch.Generator().manual_seed(0)
    batch = ProbeBatch.from_tensors(torch.randn(128, 20, generator=gen), torch.arange(128) % 4)
    model = build_model(arch, in_shape=(20,), out_dim=4, seed=0)
    options = DiagnoseOptions(probes=PROBES, seeds=1, train=train)
    return diagnose(model, batch, options, progress=False)


def _cause_names(result: dict) -> set[str]:
    return {f["verdict"] for f in result["findings"] if f["verdict"] not in WARNINGS}


def test_softplus_depth_8_under_adam_is_not_correlation_collapse():
    arch = ArchSpec(depth=8, width=64, act="softplus", init="orthogonal")
    result = _diagnose(arch, TrainSpec(optimizer="adamw", lr=1e-3))
    corr = result["correlation"]
    # the raw correlation's fitted rate says what the old rule said: far past 6 ξ_c
    assert corr["depth_ratio"] > 6
    # but the differences that carry the inputs stay far above float resolution
    assert corr["indistinguishable_at"] is None and corr["min_distance"] > 10 * corr["resolution"]
    assert "correlation collapse" not in _cause_names(result)
    note = next(f for f in result["findings"] if f["rule"] == "depth law")
    assert note["verdict"] == "context" and "zero-mean activation fails" in note["evidence"]


def test_a_residual_layernorm_net_is_not_judged_by_the_exponential_depth_law():
    arch = ArchSpec(
        family="resmlp", depth=24, width=64, act="softplus", init="orthogonal", norm="layer"
    )
    result = _diagnose(arch, TrainSpec(optimizer="adamw", lr=1e-3))
    assert result["architecture"]["residual"] and result["architecture"]["norms"]
    table = {row["rule"]: row for row in result["rules"]}
    failed = {c["assumption"] for c in table["depth law"]["checks"] if not c["holds"]}
    assert {"no residual sum", "no normalization"} <= failed
    assert not {"correlation collapse", "chaotic"} & _cause_names(result)


def test_relu_at_he_depth_24_is_not_called_collapse():
    result = _diagnose(ArchSpec(depth=24, width=64), TrainSpec(optimizer="sgd", lr=0.05))
    assert result["meanfield"]["phase"] == "critical"
    assert not {"correlation collapse", "chaotic"} & _cause_names(result)


def test_gelu_orthogonal_depth_24_under_adamw_has_no_scale_cause():
    arch = ArchSpec(depth=24, width=64, act="gelu", init="orthogonal")
    result = _diagnose(arch, TrainSpec(optimizer="adamw", lr=1e-3))
    assert result["signal"]["second_moment_ratio"] < 1e-3  # the signal does vanish...
    causes = _cause_names(result)
    assert not {"vanishing signal", "vanishing gradients", "correlation collapse"} & causes
    rules = {f["rule"] for f in result["findings"] if f["verdict"] == "context"}
    assert {"signal scale", "gradient scale"} <= rules  # ...and the diagnosis says so
    same_net_sgd = _diagnose(arch, TrainSpec(optimizer="sgd", lr=0.05))
    assert "vanishing signal" in _cause_names(same_net_sgd)


def test_a_deep_sigmoid_net_whose_inputs_reach_float_resolution_collapses_under_adamw():
    arch = ArchSpec(depth=24, width=64, act="sigmoid", init="xavier")
    result = _diagnose(arch, TrainSpec(optimizer="adamw", lr=1e-3))
    assert result["correlation"]["indistinguishable_at"] is not None
    assert result["verdict"] == "correlation collapse"


def test_the_trial_applies_the_runs_techniques():
    from depthlab.probes.trial import run_trial

    gen = torch.Generator().manual_seed(0)
    batch = ProbeBatch.from_tensors(torch.randn(64, 20, generator=gen), torch.arange(64) % 4)
    norms = []
    for techniques in ((), ({"name": "gradient_noise", "eta": 100.0},)):
        train = TrainSpec(optimizer="sgd", lr=1e-3, batch_size=16, techniques=techniques)
        model = build_model(ArchSpec(depth=2, width=16), in_shape=(20,), out_dim=4, seed=0)
        norms.append(run_trial(model, batch, train, 4, 64)["grad_norm"])
    # σ² = 100 per entry: the noisy gradients' norm is far above the clean one's at every step
    assert all(noisy > 10 * clean for clean, noisy in zip(*norms, strict=True))


def test_a_rezero_net_at_init_is_not_called_exploding_gradients():
    # every branch sits behind a zero gate: ∂L/∂h is 0 at both ends of the role, a 0/0 ratio
    arch = ArchSpec(family="resmlp", depth=16, width=64, residual="rezero")
    result = _diagnose(arch, TrainSpec(optimizer="sgd", lr=0.01))
    assert result["gradients"]["delta_first_to_last"] == float("inf")  # the probe's raw ratio
    assert not {"exploding gradients", "vanishing gradients"} & _cause_names(result)
    assert not any(f["rule"] == "gradient scale" for f in result["findings"])
