"""Each verdict rule fires on a network built to have that pathology, and only then."""

from __future__ import annotations

import math

import pytest
import torch

from depthlab import ArchSpec, build_model
from depthlab.diagnosis import DiagnoseOptions, diagnose, judge
from depthlab.probes import ProbeBatch

FAST = DiagnoseOptions(probes=("signal", "gradients", "meanfield"), seeds=1)


def _batch(d=20, n=128):
    gen = torch.Generator().manual_seed(0)
    return ProbeBatch.from_tensors(torch.randn(n, d, generator=gen), torch.arange(n) % 4)


def _net(act="relu", init="he", depth=32, width=128, scale=1.0, bias=0.0):
    model = build_model(
        ArchSpec(depth=depth, width=width, act=act, init=init), in_shape=(20,), out_dim=4
    )
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(math.sqrt(scale))
                m.bias.fill_(bias)
    return model


def _verdicts(model):
    result = diagnose(model, _batch(), FAST, progress=False)
    return result["verdict"], {f["verdict"] for f in result["findings"]}, result


def test_critical_relu_is_trainable():
    verdict, found, result = _verdicts(_net(depth=16))
    assert verdict == "trainable" and not found
    assert result["meanfield"]["phase"] == "critical"


def test_relu_lecun_vanishes_with_advice_naming_he():
    verdict, found, result = _verdicts(_net(init="lecun", depth=48))
    assert verdict == "vanishing signal" and "vanishing gradients" in found
    finding = result["findings"][0]
    assert "over 49 layers" in finding["evidence"]
    assert "σ_w² = 2 (He" in finding["advice"] and "SELU with LeCun" in finding["advice"]


def test_relu_with_large_weights_explodes():
    verdict, found, _ = _verdicts(_net(scale=1.5, depth=48))  # σ_w² = 3: ×1.5 per layer
    assert verdict == "exploding signal" and "exploding gradients" in found


def test_chaotic_tanh_has_exploding_gradients_but_bounded_signal():
    verdict, found, result = _verdicts(_net(act="tanh", init="lecun", scale=16.0))
    assert verdict == "exploding gradients"
    assert "exploding signal" not in found and result["meanfield"]["phase"] == "chaotic"


def test_negative_biases_kill_units():
    _, found, _ = _verdicts(_net(depth=4, bias=-5.0))
    assert "dead units" in found


def test_tanh_advice_names_its_critical_point():
    _, _, result = _verdicts(_net(act="tanh", init="lecun", scale=0.5, depth=40))
    advice = result["findings"][0]["advice"]
    assert result["verdict"] == "vanishing signal"
    assert "the critical σ_w² is 1" in advice


def test_ill_conditioned_rule_reads_the_ntk():
    base = {"ntk": {"condition_number": 1e9, "n_params": 500, "n_samples": 2, "n_outputs": 3}}
    verdict, findings = judge(base)
    assert verdict == "ill-conditioned" and "1e+09" in findings[0].evidence
    assert judge({"ntk": {"condition_number": 1e3}})[0] == "trainable"
    # A net with fewer parameters than samples × outputs has a singular kernel by construction.
    small = {
        "ntk": {"condition_number": math.inf, "n_params": 41, "n_samples": 128, "n_outputs": 10}
    }
    assert judge(small)[0] == "trainable"


def test_ill_conditioned_on_a_network_with_duplicated_inputs():
    model = _net(depth=3, width=64)
    x = torch.randn(32, 20, generator=torch.Generator().manual_seed(0))
    x[16:] = x[:16]  # every input twice: two identical rows in the kernel
    batch = ProbeBatch.from_tensors(x, torch.arange(32) % 4)
    result = diagnose(
        model, batch, DiagnoseOptions(probes=("ntk",), ntk_samples=32), progress=False
    )
    assert result["verdict"] == "ill-conditioned"


def test_thresholds_are_the_documented_ones():
    from depthlab.diagnosis import verdict as v

    doc = v.__doc__
    for value in ("1e-3", "1e3", "0.5", "1e-6", "1e7"):
        assert value in doc
    assert (v.VANISHING_SIGNAL, v.EXPLODING_SIGNAL, v.ILL_CONDITIONED) == (1e-3, 1e3, 1e7)


def test_a_probe_that_does_not_apply_is_skipped_with_its_reason():
    model = build_model(ArchSpec(family="cnn1d", depth=2, width=4), in_shape=(20,), out_dim=4)
    result = diagnose(model, _batch(), FAST, progress=False)
    assert "meanfield" in result["skipped"] and "Conv1d" in result["skipped"]["meanfield"]
    assert "signal" in result and "gradients" in result


@pytest.mark.parametrize("bad", ["shape", "classes"])
def test_wrong_input_is_one_clear_error(bad):
    from depthlab import ProbeError

    model = _net(depth=2)
    batch = (
        _batch(d=7)
        if bad == "shape"
        else ProbeBatch.from_tensors(torch.randn(8, 20), torch.arange(8))
    )
    with pytest.raises(
        ProbeError, match="rejects inputs of shape" if bad == "shape" else "does not fit 8 classes"
    ):
        diagnose(model, batch, FAST, progress=False)


def test_critical_advice_names_registered_activations_and_is_lazy(monkeypatch):
    from depthlab import _registry as reg
    from depthlab.diagnosis import advice as v

    assert set(v.CRITICAL_ADVICE) <= set(reg.ACTIVATIONS.names())
    calls = []
    monkeypatch.setattr(v, "_critical_phrase", lambda *a: calls.append(a) or "")
    meanfield = {"activation": "Tanh", "sigma_b2": 0.0, "chi1": 1.0, "sigma_w2": 1.0}
    signal = {"second_moment_ratio": 1.0, "layers": []}
    assert judge({"meanfield": {**meanfield, "phase": "critical"}, "signal": signal})[0] == (
        "trainable"
    )
    assert not calls  # no finding, no advice: the critical point is never computed
    vanishing = {**signal, "second_moment_ratio": 1e-6}
    grads = {"delta_first_to_last": 1e-6, "max_ratio": 1.0}
    judge({"meanfield": {**meanfield, "phase": "ordered"}, "signal": vanishing, "gradients": grads})
    assert calls == [("tanh", 0.0)]  # two findings share one computation


def test_the_calibrated_model_decides_and_says_whose_evidence(monkeypatch):
    from depthlab.diagnosis import calibrated, verdict

    model = {
        "intercept": 0.0,
        "coefficients": {
            "trial_below_baseline": (0.0, 0.1, 4.0),
            "signal_scale": (0.0, 1.0, -0.1),
        },
    }
    monkeypatch.setattr(calibrated, "MODELS", {"adaptive/full": model, "sgd/full": model})
    # a vanishing-signal rule fires, inside its domain: SGD steps in proportion to the gradient
    signal = {"second_moment_ratio": 1e-6, "layers": []}
    sgd = {"optimizer": "sgd", "lr": 1e-2}
    trial = {
        "diverged": False,
        "improvement": 0.5,
        "loss_after_ratio": 0.6,
        "loss_before": 1.0,
        "loss_after": 0.6,
        "baseline_loss": 1.0,
        "accuracy_before": 0.1,
        "accuracy_after": 0.5,
    }
    a = verdict.assess({"signal": signal, "trial": trial}, sgd)
    # logit = 4 · 0.4 / 0.1 − 0.1 · 6 = 15.4: the trial outweighs the rule
    assert a.p_trains == pytest.approx(1 / (1 + math.exp(-15.4)))
    assert a.verdict == "trainable" and a.decided_by == "trial"
    assert "vanishing signal" in {f.verdict for f in a.findings}  # kept as a warning
    stuck = {**trial, "loss_after_ratio": 1.0, "loss_after": 1.0}
    b = verdict.assess({"signal": signal, "trial": stuck}, sgd)
    assert b.p_trains < 0.5 and b.verdict == "vanishing signal"
    # under Adam the finite scale is context, never the cause
    adam = verdict.assess({"signal": signal, "trial": stuck}, {"optimizer": "adam", "lr": 1e-3})
    assert adam.verdict == "no progress"  # the trial's own evidence, not the scale
    assert "vanishing signal" in next(f for f in adam.findings if f.verdict == "context").evidence
    diverged = {
        **trial,
        "diverged": True,
        "diverged_step": 3,
        "planned_steps": 10,
        "optimizer": "adam",
        "lr": 1e-3,
    }
    c = verdict.assess({"trial": diverged}, {"optimizer": "adam", "lr": 1e-3})
    assert c.p_trains == 0.0 and c.verdict == "diverges" and c.decided_by == "trial"
