"""Advice fits the architecture; each fix is a valid run-file edit; the advised fix is checked."""

from __future__ import annotations

import pytest

from depthlab.diagnosis.advice import Advice, advise, apply_edit, candidate_fixes
from depthlab.diagnosis.verdict import ORDER, WARNINGS
from depthlab.models import build_model
from depthlab.spec import RunSpec

VERDICTS = [v for v in ORDER if v not in WARNINGS] + ["won't train in budget"]


def _spec(**arch) -> RunSpec:
    return RunSpec.from_dict(
        {
            "arch": {"family": "mlp", "depth": 32, "width": 64, "act": "relu", "init": "lecun"}
            | arch,
            "data": {"name": "digits"},
            "train": {"optimizer": "momentum", "lr": 0.01, "epochs": 5},
        }
    )


@pytest.mark.parametrize("verdict", VERDICTS)
@pytest.mark.parametrize(
    "arch",
    [
        {},
        {"act": "tanh", "init": "xavier"},
        {"family": "resmlp", "norm": "layer"},
        {"family": "cnn1d", "depth": 3, "width": 8},
        {"act": "selu", "init": "he", "width": [64] * 32},
    ],
)
def test_every_fix_round_trips_into_a_valid_run_file(verdict, arch, tmp_path):
    spec = _spec(**arch)
    fixes = candidate_fixes(verdict, spec)
    assert fixes, verdict
    for edit in fixes:
        fixed = apply_edit(spec, edit)
        assert fixed != spec  # the edit changes something
        path = tmp_path / "fixed.yaml"
        path.write_text(fixed.to_yaml())
        assert RunSpec.load(path) == fixed
        build_model(fixed.arch, in_shape=(20,), out_dim=3)  # the edited network can be built
        for key, value in edit.items():
            section, field = key.split(".")
            assert getattr(getattr(fixed, section), field) == value


def test_vanishing_relu_lecun_is_first_told_to_use_he():
    assert candidate_fixes("vanishing signal", _spec())[0] == {"arch.init": "he"}
    assert candidate_fixes("diverges", _spec())[0] == {"train.lr": 0.001}


def _texts(advice: Advice) -> list[str]:
    return [
        advice.vanishing,
        advice.exploding,
        advice.dead,
        advice.correlation(True),
        advice.correlation(False),
        advice.conditioning,
        advice.step_size(0.1),
        advice.diverges,
        advice.slow,
    ]


@pytest.mark.parametrize("kind", ["transformer", "cnn", "mlp", "graph", "other"])
def test_no_sentence_starts_with_or_and_transformers_hear_no_selu(kind):
    results = {"architecture": {"kind": kind}}
    for text in _texts(Advice(results, {"optimizer": "adam", "lr": 1e-3})):
        assert text and not text.lower().startswith("or"), text
        assert "; or" not in text
        if kind == "transformer":
            assert "SELU" not in text and "selu" not in text
    transformer = Advice({"architecture": {"kind": "transformer"}}, {})
    assert "pre-LN" in transformer.vanishing


def test_mlp_advice_names_the_critical_point_when_meanfield_ran():
    mf = {"activation": "relu", "chi1": 0.5, "sigma_w2": 1.0, "phase": "ordered", "sigma_b2": 0.0}
    text = Advice({"meanfield": mf}, {}).vanishing
    assert text.startswith("χ₁ = 0.5") and "σ_w² = 2 (He" in text and "SELU" in text


def test_advise_returns_the_first_fix_predicted_to_train():
    spec = _spec()
    seen = []

    def fake(fixed):
        seen.append(fixed)
        return {"p_trains": 0.9 if fixed.arch.family == "resmlp" else 0.2, "verdict": "x"}

    fix = advise(spec, "vanishing signal", fake)
    assert fix["checked"] and fix["spec"].arch.family == "resmlp"
    assert seen[0].arch.init == "he"  # the first candidate was tried and rejected
    none_train = advise(spec, "vanishing signal", lambda s: {"p_trains": 0.1})
    assert not none_train["checked"] and none_train["p_trains"] == 0.1


def test_an_edit_whose_network_cannot_be_built_is_skipped():
    from depthlab.exceptions import SpecError

    def fake(fixed):
        if fixed.arch.init == "he":
            raise SpecError("arch.init", "cannot be built here")
        return {"p_trains": 0.8}

    fix = advise(_spec(), "vanishing signal", fake)
    assert fix["checked"] and fix["spec"].arch.init != "he"
