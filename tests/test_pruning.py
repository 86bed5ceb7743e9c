"""Sparse nets: pruning at init, the rescaling, masks kept through training, IMP with rewinding,
and the diagnosis of the masked net (the *disconnected* finding)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from depthlab import ArchSpec, DataSpec, RunSpec, SpecError, TrainSpec, build_model, fit, load_data
from depthlab.diagnosis.run import diagnose_run
from depthlab.probes.meanfield import read_parameters
from depthlab.train import Callback
from depthlab.train.techniques import prune, rescale_factors, sparsity_summary
from depthlab.train.techniques.masks import MASK, masked_layers
from depthlab.train.techniques.pruning import PruneParams

DATA = DataSpec(name="digits")


def _mlp(**kw) -> nn.Module:
    spec = ArchSpec(family="mlp", depth=3, width=32, act="tanh", init="critical", sigma_b=0.05)
    return build_model(spec.replace(**kw), in_shape=(10,), out_dim=3, seed=0)


def _batch(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.randn(n, 10, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_rescaling_matches_a_hand_computation():
    w = torch.tensor([[3.0, 4.0, 0.5], [1.0, 2.0, 2.0]])
    m = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    # unit 0: dense Σ W² = 9 + 16 + 0.25 = 25.25, kept 9 → s = √(25.25/9);
    # unit 1: dense 1 + 4 + 4 = 9, kept 5 → s = √(9/5)
    s = rescale_factors(w, m)
    torch.testing.assert_close(s, torch.tensor([[(25.25 / 9) ** 0.5], [(9 / 5) ** 0.5]]))
    kept = (s * m * w).pow(2).sum(1)
    torch.testing.assert_close(kept, w.pow(2).sum(1))
    # an empty unit has nothing to rescale
    assert rescale_factors(w, torch.zeros_like(w)).eq(1).all()


def test_rescaled_net_keeps_the_dense_sigma_w2_the_unrescaled_loses_it():
    dense = _mlp()
    _, sw2, _, _ = read_parameters(dense)
    found = {}
    for rescale in (False, True):
        net = copy.deepcopy(dense)
        prune(net, PruneParams(method="random", sparsity=0.75, rescale=rescale), seed=1)
        found[rescale] = read_parameters(net)[1]
    assert found[True] == pytest.approx(sw2, rel=1e-6)
    assert found[False] == pytest.approx(0.25 * sw2, rel=0.1)  # a quarter kept, no rescale


@pytest.mark.parametrize("method", ["magnitude", "snip", "grasp", "random"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_each_method_removes_the_stated_fraction(method, scope):
    net = _mlp()
    x, y = _batch()
    params = PruneParams(method=method, sparsity=0.8, scope=scope)
    prune(net, params, x=x, y=y, loss=F.cross_entropy)
    summary = sparsity_summary(net, x)
    assert summary is not None and summary["sparsity"] == pytest.approx(0.8, abs=2e-3)
    if scope == "layer" or method == "random":
        assert all(abs(r["kept_fraction"] - 0.2) < 0.01 for r in summary["layers"])


def test_magnitude_keeps_the_largest_weights():
    net = _mlp()
    weights = [m.weight.detach().abs().clone() for m in net.modules() if isinstance(m, nn.Linear)]
    prune(net, PruneParams(method="magnitude", sparsity=0.5, scope="layer"))
    for w, (_, m) in zip(weights, masked_layers(net), strict=True):
        kept, dropped = w[m.weight_mask > 0], w[m.weight_mask == 0]
        assert kept.min() >= dropped.max()


@pytest.mark.parametrize(
    "optimizer,extra",
    [("sgd", {}), ("momentum", {"weight_decay": 1e-3}), ("adam", {"grad_clip": 1.0}),
     ("adamw", {"weight_decay": 0.1})],
)  # fmt: skip
def test_masks_stay_applied_through_training(optimizer, extra):
    data = load_data(DATA)
    spec = ArchSpec(family="mlp", depth=2, width=32)
    net = build_model(spec, in_shape=data.in_shape, out_dim=data.out_dim, seed=0)
    train = TrainSpec(
        optimizer=optimizer, lr=0.05, epochs=2,
        techniques=({"name": "prune_at_init", "method": "snip", "sparsity": 0.9},), **extra,
    )  # fmt: skip
    before = {n: m.weight.detach().clone() for n, m in net.named_modules() if hasattr(m, "weight")}
    result = fit(net, data, train, progress=False)
    assert result.state.value == "COMPLETE"
    layers = masked_layers(net)
    assert len(layers) == 3
    for name, m in layers:
        mask = m._buffers[MASK]
        assert (m.weight[mask == 0] == 0).all(), name  # pruned: exactly zero after training
        assert not torch.equal(m.weight[mask > 0], before[name][mask > 0])  # kept: trained


def test_a_deep_copy_stays_masked_under_any_update():
    """The trial probe trains a deep copy; an update that ignores the mask (in place, not a
    gradient step) is undone before the next forward pass."""
    net = _mlp()
    prune(net, PruneParams(method="random", sparsity=0.9), seed=0)
    twin = copy.deepcopy(net)
    x, _ = _batch()
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
    twin(x)
    for (_, a), (_, b) in zip(masked_layers(net), masked_layers(twin), strict=True):
        assert (b.weight[a.weight_mask == 0] == 0).all()
    loss = twin(x).square().sum()
    loss.backward()
    for _, m in masked_layers(twin):
        assert (m.weight.grad[m.weight_mask == 0] == 0).all()


def _pruned_spec(**tech) -> RunSpec:
    return RunSpec(
        arch=ArchSpec(family="mlp", depth=12, width=64, act="tanh", init="critical", sigma_b=0.05),
        data=DATA,
        train=TrainSpec(optimizer="momentum", lr=0.01, epochs=2, techniques=(tech,)),
    )


def test_the_diagnosis_sees_the_masked_net_and_the_run_trains_the_same_one():
    probes = ("signal", "gradients", "correlation", "meanfield")
    spec = _pruned_spec(name="prune_at_init", method="snip", sparsity=0.8, scope="layer")
    result, model, _ = diagnose_run(spec, probes)
    assert result["sparsity"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert not result["failed"]
    grads = {r["name"]: r["grad_norm"] for r in result["gradients"]["layers"]}
    assert len(grads) == 13
    data = load_data(DATA)
    net = build_model(spec.arch, in_shape=data.in_shape, out_dim=data.out_dim, seed=0)
    fit(net, data, spec.train.replace(epochs=1), progress=False)
    for (_, a), (_, b) in zip(masked_layers(model), masked_layers(net), strict=True):
        assert torch.equal(a.weight_mask, b.weight_mask)


def test_a_layer_pruned_away_is_a_disconnected_finding_naming_it():
    # global magnitude pruning empties the layer of fan-in 2048 (He init: the smallest weights)
    spec = _pruned_spec(name="prune_at_init", method="magnitude", sparsity=0.97)
    spec = spec.replace(arch=ArchSpec(family="mlp", depth=3, width=(32, 2048, 32)))
    result, _, _ = diagnose_run(spec, ("signal", "gradients"))
    assert result["sparsity"]["empty_layers"] == ["2.0"]
    assert result["verdict"] == "disconnected"
    assert "2.0" in result["findings"][0]["evidence"]
    # per-layer pruning keeps every layer: no such finding
    layer = _pruned_spec(name="prune_at_init", method="magnitude", sparsity=0.97, scope="layer")
    result, _, _ = diagnose_run(layer.replace(arch=spec.arch), ("signal", "gradients"))
    assert result["verdict"] != "disconnected"


def test_an_emptied_residual_branch_is_not_disconnected():
    net = build_model(ArchSpec(family="resmlp", depth=2, width=16), in_shape=(10,), out_dim=3)
    from depthlab.train.techniques import attach_mask

    branch = net[1].branch[-1]
    attach_mask(branch, torch.zeros_like(branch.weight))
    x, _ = _batch()
    summary = sparsity_summary(net, x)
    assert summary["empty_layers"] and summary["input_reaches_output"] is True


class _Watch(Callback):
    def __init__(self, k: int, boundary: int) -> None:
        self.k, self.boundary = k, boundary
        self.at_k: dict[str, torch.Tensor] = {}
        self.after_rewind: dict[str, torch.Tensor] = {}

    def on_step_end(self, state) -> None:  # type: ignore[no-untyped-def]
        if state.step == self.k:
            self.at_k = {n: p.detach().clone() for n, p in state.model.named_parameters()}

    def on_epoch_end(self, state, metrics) -> None:  # type: ignore[no-untyped-def]
        if state.epoch + 1 == self.boundary:
            self.after_rewind = {n: p.detach().clone() for n, p in state.model.named_parameters()}


def test_imp_rewinds_the_survivors_to_step_k_and_reaches_the_sparsity():
    data = load_data(DATA)
    net = build_model(ArchSpec(family="mlp", depth=2, width=32), in_shape=(64,), out_dim=10)
    tech = {"name": "iterative_magnitude", "sparsity": 0.75, "rounds": 2, "rewind_to": 5}
    watch = _Watch(5, boundary=1)
    train = TrainSpec(epochs=3, batch_size=128, techniques=(tech,))
    fit(net, data, train, callbacks=[watch], progress=False)
    assert sparsity_summary(net)["sparsity"] == pytest.approx(0.75, abs=1e-3)
    for name, w in watch.after_rewind.items():
        torch.testing.assert_close(w, watch.at_k[name] * (w != 0))
    with pytest.raises(SpecError, match="rewind_to"):
        late = dict(tech, rewind_to=10_000)
        fit(copy.deepcopy(net), data, train.replace(techniques=(late,)), progress=False)
    with pytest.raises(SpecError, match="epochs"):
        fit(net, data, train.replace(epochs=2), progress=False)


def test_prune_params_reject_bad_values():
    with pytest.raises(SpecError, match="method"):
        TrainSpec(techniques=({"name": "prune_at_init", "method": "lottery"},))
    with pytest.raises(SpecError, match="sparsity"):
        TrainSpec(techniques=({"name": "prune_at_init", "sparsity": 1.0},))
