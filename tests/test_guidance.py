"""The guidance technique: a CKA term toward a frozen guide, added through Callback.loss_term."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from depthlab import ArchSpec, DataSpec, RunSpec, SpecError, TrainSpec, build_model, fit, run
from depthlab.data import load_data
from depthlab.spec import ArchSpec as _ArchSpec
from depthlab.train import Callback
from depthlab.train.techniques import Guidance, GuidanceParams, guidance_distance, map_layers
from depthlab.train.techniques.guidance import hidden_layers

MLP = ArchSpec(family="mlp", depth=3, width=16, init="he")
CNN = ArchSpec(family="cnn1d", depth=2, width=4, kernel=3, stride=2, padding=1, init="he")
DATA = DataSpec(name="mnist1d", seed=0, val_fraction=0.0)


@pytest.fixture(scope="module")
def data():
    full = load_data(DATA)
    # A 200-example slice keeps these tests fast; the loop only reads the tensors.
    return dataclasses.replace(full, x_train=full.x_train[:200], y_train=full.y_train[:200])


def train_spec(*techniques, epochs=2, seed=0):
    return TrainSpec(
        optimizer="adam", lr=1e-3, epochs=epochs, batch_size=50, seed=seed, techniques=techniques
    )


def entry(**kw):
    return {"name": "guidance", "guide": CNN.to_dict(), **kw}


def params_of(**kw):
    return GuidanceParams.from_dict({"guide": CNN.to_dict(), **kw})


# -- the distance ------------------------------------------------------------------------------
def test_distance_is_zero_when_target_is_a_copy_of_the_guide(data):
    model = build_model(MLP, in_shape=data.in_shape, out_dim=10, seed=3)
    tech = Guidance(GuidanceParams.from_dict({"guide": MLP.to_dict(), "guide_seed": 3}))
    state = _state(model, data)
    tech.on_train_start(state)
    x, y = data.x_train[:50], data.y_train[:50]
    out = model(x)
    term = tech.loss_term(state, x, y, out)
    assert term is not None
    assert len(tech.pairs) == MLP.depth
    assert abs(term.item()) < 1e-5


def test_gradient_flows_to_the_target_only(data):
    model = build_model(MLP, in_shape=data.in_shape, out_dim=10, seed=0)
    tech = Guidance(params_of())
    state = _state(model, data)
    tech.on_train_start(state)
    x, y = data.x_train[:50], data.y_train[:50]
    term = tech.loss_term(state, x, y, model(x))
    assert term is not None and term.requires_grad and term.item() > 0
    term.backward()
    hidden = [p for n, p in model.named_parameters() if not n.startswith(str(len(model) - 1))]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in hidden)
    assert tech.guide is not None
    assert all(not p.requires_grad and p.grad is None for p in tech.guide.parameters())


def test_distance_is_sum_of_cka_distances():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(20, 5, generator=g), torch.randn(20, 7, generator=g)
    both = guidance_distance([a, a], [b, a])
    from depthlab.theory.similarity import cka_distance

    assert torch.allclose(both, cka_distance(a, b) + cka_distance(a, a))


# -- training ----------------------------------------------------------------------------------
@pytest.mark.parametrize("guide_train", [None, {"epochs": 1, "batch_size": 50, "seed": 4}])
def test_guide_is_bit_for_bit_unchanged_by_training(data, guide_train):
    params = params_of(guide_train=guide_train, guide_seed=7)
    tech = Guidance(params)
    model = build_model(MLP, in_shape=data.in_shape, out_dim=10, seed=0)
    result = fit(model, data, train_spec(epochs=2), callbacks=[tech], progress=False)
    assert result.state.name == "COMPLETE"
    reference = build_model(CNN, in_shape=data.in_shape, out_dim=10, seed=7)
    if guide_train is not None:
        fit(reference, data, TrainSpec.from_dict(guide_train), progress=False)
    assert tech.guide is not None
    for (name, p), q in zip(
        tech.guide.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    assert not tech.guide.training


def test_guidance_changes_training_and_is_seeded(data):
    def once(*techniques):
        model = build_model(MLP, in_shape=data.in_shape, out_dim=10, seed=0)
        fit(model, data, train_spec(*techniques), progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    plain, a, b = once(), once(entry()), once(entry())
    assert torch.equal(a, b)
    assert not torch.equal(plain, a)


def test_weight_zero_matches_an_unguided_run(data):
    def once(*techniques):
        model = build_model(MLP, in_shape=data.in_shape, out_dim=10, seed=0)
        return fit(model, data, train_spec(*techniques), progress=False)

    plain, zero = once(), once(entry(weight=0.0))
    assert plain.history == zero.history
    assert plain.metrics == zero.metrics


def test_a_callback_without_a_loss_term_changes_nothing(data):
    class Noop(Callback):
        pass

    def once(callbacks):
        model = build_model(MLP, in_shape=data.in_shape, out_dim=10, seed=0)
        return fit(model, data, train_spec(), callbacks=callbacks, progress=False)

    assert once([]).history == once([Noop()]).history


def test_train_loss_reports_the_task_loss(data):
    class Constant(Callback):
        def loss_term(self, state, x, y, output):
            return torch.tensor(100.0)  # constant: no gradient, so training is unchanged

    def once(callbacks):
        model = build_model(MLP, in_shape=data.in_shape, out_dim=10, seed=0)
        return fit(model, data, train_spec(), callbacks=callbacks, progress=False)

    assert once([]).history == once([Constant()]).history


def test_a_non_finite_term_ends_the_run_diverged(data):
    class Bad(Callback):
        def loss_term(self, state, x, y, output):
            return output.sum() * float("nan")

    model = build_model(MLP, in_shape=data.in_shape, out_dim=10, seed=0)
    result = fit(model, data, train_spec(), callbacks=[Bad()], progress=False)
    assert result.state.name == "DIVERGED" and result.diverged_step == 0


def test_hooks_are_removed_after_training(data):
    tech = Guidance(params_of())
    model = build_model(MLP, in_shape=data.in_shape, out_dim=10, seed=0)
    fit(model, data, train_spec(epochs=1), callbacks=[tech], progress=False)
    assert all(not m._forward_hooks for m in model.modules())


def test_run_spec_yaml_round_trip_and_run():
    spec = RunSpec.from_yaml(
        f"""
arch: {{family: mlp, depth: 2, width: 8}}
data: {{name: mnist1d, seed: 0, val_fraction: 0.0}}
train:
  epochs: 1
  batch_size: 500
  techniques:
    - name: guidance
      guide: {CNN.to_dict()}
      guide_train: null
      weight: 0.5
      layers: [["0.2", "1.2"], ["1.2", "2.2"]]
"""
    )
    assert RunSpec.from_yaml(spec.to_yaml()) == spec
    assert run(spec, progress=False).state.name == "COMPLETE"


def test_explicit_pair_naming_a_missing_layer_is_a_spec_error(data):
    tech = Guidance(params_of(layers=[["nope", "1.1"]]))
    model = build_model(MLP, in_shape=data.in_shape, out_dim=10, seed=0)
    with pytest.raises(SpecError, match=r"layers\[0\]: no target layer 'nope'"):
        tech.on_train_start(_state(model, data))


# -- layer mapping -----------------------------------------------------------------------------
def test_auto_mapping_pairs_layers_evenly_by_depth():
    assert map_layers(list("abcdef"), list("xyz"), "auto") == [("b", "x"), ("d", "y"), ("f", "z")]
    assert map_layers(list("ab"), list("wxyz"), "auto") == [("a", "x"), ("b", "z")]
    assert map_layers(list("abcd"), list("xy"), "all") == [
        ("a", "x"),
        ("b", "x"),
        ("c", "y"),
        ("d", "y"),
    ]


def test_hidden_layers_are_the_activations():
    mlp = build_model(MLP, in_shape=(40,), out_dim=10)
    assert hidden_layers(mlp) == ["0.2", "1.2", "2.2"]
    linear = build_model(_ArchSpec(family="mlp", depth=0), in_shape=(40,), out_dim=10)
    assert hidden_layers(linear) == []


# -- params ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "guide"),
        ({"guide": None}, "guide"),
        ({"guide": {"family": "nope"}}, "guide.family"),
        ({"guide": CNN.to_dict(), "weight": -1.0}, "weight"),
        ({"guide": CNN.to_dict(), "layers": "every"}, "layers"),
        ({"guide": CNN.to_dict(), "layers": [["a"]]}, "layers[0]"),
        ({"guide": CNN.to_dict(), "layers": []}, "layers"),
        ({"guide": CNN.to_dict(), "guide_mode": "frozen"}, "guide_mode"),
        ({"guide": CNN.to_dict(), "guide_train": {"epochs": 0}}, "guide_train.epochs"),
        ({"guide": CNN.to_dict(), "guide_train": {}, "guide_path": "g.pt"}, "guide_path"),
        ({"guide": CNN.to_dict(), "strength": 1.0}, "strength"),
    ],
)
def test_bad_params_give_one_line_spec_errors(params, field):
    with pytest.raises(SpecError) as err:
        GuidanceParams.from_dict(params)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_bad_params_in_a_train_spec_name_the_technique():
    with pytest.raises(SpecError) as err:
        TrainSpec(techniques=({"name": "guidance", "guide": CNN.to_dict(), "weight": "big"},))
    assert err.value.field == "techniques[0].weight"


def test_guide_path_loads_a_saved_guide(data, tmp_path):
    saved = build_model(CNN, in_shape=data.in_shape, out_dim=10, seed=11)
    path = tmp_path / "guide.pt"
    torch.save(saved.state_dict(), path)
    tech = Guidance(params_of(guide_path=str(path)))
    tech.on_train_start(_state(build_model(MLP, in_shape=data.in_shape, out_dim=10), data))
    assert tech.guide is not None
    for p, q in zip(tech.guide.parameters(), saved.parameters(), strict=True):
        assert torch.equal(p, q)
    missing = Guidance(params_of(guide_path=str(tmp_path / "none.pt")))
    with pytest.raises(SpecError, match="guide_path: .* is not a file"):
        missing.on_train_start(_state(build_model(MLP, in_shape=data.in_shape, out_dim=10), data))


def _state(model, data):
    from depthlab.train.callbacks import TrainState

    spec = train_spec()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainState(model, opt, data, spec, torch.Generator().manual_seed(0))


def test_hooks_are_removed_when_the_run_diverges(data):
    class Bad(Callback):
        def loss_term(self, state, x, y, output):
            return output.sum() * float("nan") if state.step == 1 else None

    tech = Guidance(params_of())
    model = build_model(MLP, in_shape=data.in_shape, out_dim=10, seed=0)
    result = fit(model, data, train_spec(), callbacks=[tech, Bad()], progress=False)
    assert result.state.name == "DIVERGED"
    assert all(not m._forward_hooks for m in model.modules())
