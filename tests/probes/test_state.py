"""After any probe, the model's mode and parameters are bit-for-bit unchanged."""

from __future__ import annotations

import pytest
import torch

from depthlab import ArchSpec, build_model
from depthlab import _registry as reg
from depthlab.probes import ProbeBatch

MODELS = {
    "mlp-dropout": (ArchSpec(depth=3, width=16, dropout=0.2), (10,)),
    "resmlp-batchnorm": (
        ArchSpec(family="resmlp", depth=2, width=12, norm="batch", residual="rezero"),
        (10,),
    ),
    "cnn1d-layernorm": (ArchSpec(family="cnn1d", depth=2, width=4, norm="layer", stride=2), (16,)),
    "reused-module": (None, (10,)),
}


def _reused_module(in_shape: tuple[int, ...]) -> torch.nn.Module:
    """One linear layer called twice (nn.Sequential(a, relu, a, head)): shared weights."""
    torch.manual_seed(1)
    shared = torch.nn.Linear(in_shape[0], in_shape[0])
    return torch.nn.Sequential(shared, torch.nn.ReLU(), shared, torch.nn.Linear(in_shape[0], 3))


def _snapshot(model):
    return (
        [m.training for m in model.modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
        [(p.requires_grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()],
    )


@pytest.mark.parametrize("probe_name", reg.PROBES.names())
@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("training", [True, False])
def test_probe_leaves_the_model_as_it_found_it(probe_name, model_name, training):
    spec, in_shape = MODELS[model_name]
    if spec is None:
        model = _reused_module(in_shape)
    else:
        model = build_model(spec, in_shape=in_shape, out_dim=3, seed=1)
    held = [(m, dict(m._parameters), dict(m._buffers)) for m in model.modules()]
    model.train(training)
    if training:  # a gradient left over from the user's own step must survive too
        model(torch.randn(4, *in_shape)).sum().backward()
    gen = torch.Generator().manual_seed(0)
    batch = ProbeBatch.from_tensors(torch.randn(24, *in_shape, generator=gen), torch.arange(24) % 3)
    before = _snapshot(model)
    probe = reg.PROBES.get(probe_name)()
    try:
        probe.run(model, batch, seed=0)
    except Exception as exc:  # a probe that does not apply may refuse; it must still restore
        from depthlab import ProbeError

        assert isinstance(exc, ProbeError), exc
    modes, tensors, grads = _snapshot(model)
    assert modes == before[0]
    for m, params, buffers in held:  # the very same Parameter and buffer objects
        assert all(m._parameters[k] is v for k, v in params.items()), type(m).__name__
        assert all(m._buffers[k] is v for k, v in buffers.items()), type(m).__name__
    for k, v in tensors.items():
        assert torch.equal(v, before[1][k]), k
    for (rg, g), (rg0, g0) in zip(grads, before[2], strict=True):
        assert rg == rg0
        assert (g is None and g0 is None) or torch.equal(g, g0)
