"""The probes' shared helpers: forward-hook recording and the state for ``functional_call``."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from depthlab.probes.base import functional_state
from depthlab.probes.layers import capture, recording, weight_layers


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_recording_keeps_every_call_in_order_and_removes_its_hooks():
    model = _net()
    shared = model[0]
    twice = nn.Sequential(shared, nn.Linear(5, 4), shared)  # ``shared`` runs twice
    x = torch.randn(6, 4)
    with recording([("a", shared), ("b", twice[1])]) as calls:
        twice(x)
    assert [c.name for c in calls] == ["a", "b", "a"]
    assert calls[0].args[0] is x
    assert torch.equal(calls[2].output, twice(x))
    assert calls[0].output.requires_grad  # kept as the hook saw it, not detached
    assert _hooks(twice) == 0


def test_recording_removes_its_hooks_when_the_forward_fails():
    model = _net()
    with pytest.raises(RuntimeError), recording(weight_layers(model)):
        model(torch.randn(6, 7))  # wrong width
    assert _hooks(model) == 0


def test_capture_keeps_the_last_call_by_name():
    model = _net()
    x = torch.randn(6, 4)
    with torch.no_grad(), capture(weight_layers(model)) as outs:
        model(x[:2])
        model(x)
        assert set(outs) == {"0", "3"}
        assert torch.equal(outs["0"], model[0](x))
    with torch.no_grad(), capture(weight_layers(model), inputs=True) as ins:
        model(x)
        assert ins["0"] is x
    assert _hooks(model) == 0


def test_functional_state_splits_trainable_from_the_rest():
    model = _net()
    model[3].bias.requires_grad_(False)
    params, rest = functional_state(model)
    assert list(params) == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight"]
    assert list(rest) == [
        "3.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
    owned = dict(model.named_parameters())
    for k, v in params.items():
        assert v is not owned[k] and not v.requires_grad and v.data_ptr() == owned[k].data_ptr()
    assert rest["1.running_mean"] is model[1].running_mean  # buffers as they are

    live, live_rest = functional_state(model, detach=False)
    assert all(v is owned[k] for k, v in live.items())
    assert live_rest["3.bias"] is owned["3.bias"]

    chosen, others = functional_state(model, ["3.weight", "0.bias"])
    assert list(chosen) == ["3.weight", "0.bias"]  # the order asked for
    assert "0.weight" in others and "3.bias" in others and "3.weight" not in others

    model.eval()
    x = torch.randn(6, 4)
    assert torch.equal(functional_call(model, (params, rest), (x,)), model(x))
