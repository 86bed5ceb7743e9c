"""The exact Hessian trace of piecewise-linear networks against the dense Hessian's trace.

Oracle: ``torch.autograd.functional.hessian`` of the batch loss as a function of the flattened
trainable parameters, on a float64 copy of the model in eval mode.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from depthlab import ArchSpec, ProbeError, build_model
from depthlab.probes import HessianProbe, ProbeBatch
from depthlab.probes.gauss_newton import gauss_newton_trace, not_piecewise_linear
from depthlab.probes.hessian import HessianParams

N, K = 64, 3


def batch_for(in_shape: tuple[int, ...], loss: str = "auto", seed: int = 1) -> ProbeBatch:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, *in_shape, generator=gen)
    if loss == "regression":
        return ProbeBatch.from_tensors(x, torch.randn(N, K, generator=gen))
    return ProbeBatch.from_tensors(x, torch.randint(0, K, (N,), generator=gen), loss)


def dense_trace(model: nn.Module, batch: ProbeBatch) -> float:
    ref = copy.deepcopy(model).double().eval()
    named = [(k, p) for k, p in ref.named_parameters() if p.requires_grad]
    fixed = {k: p.detach() for k, p in ref.named_parameters() if not p.requires_grad}

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, i = dict(fixed), 0
        for name, p in named:
            params[name] = flat[i : i + p.numel()].view_as(p)
            i += p.numel()
        y = batch.y if not batch.y.is_floating_point() else batch.y.double()
        return batch.loss_fn(functional_call(ref, params, (batch.x.double(),)), y)

    theta = torch.cat([p.detach().reshape(-1) for _, p in named])
    return float(torch.trace(torch.autograd.functional.hessian(loss, theta)))


def trained_a_little(model: nn.Module, batch: ProbeBatch) -> nn.Module:
    """A few SGD steps, so that batch-norm statistics and weights are not at their init values."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(5):
        opt.zero_grad()
        batch.loss_fn(model(batch.x), batch.y).backward()
        opt.step()
    return model.eval()


PIECEWISE_LINEAR = {
    "cnn1d relu": (
        ArchSpec(family="cnn1d", depth=2, width=6, kernel=3, stride=2, padding=1),
        (16,),
    ),
    "mlp leaky_relu, batch norm": (
        ArchSpec(family="mlp", depth=3, width=10, act="leaky_relu", norm="batch"),
        (8,),
    ),
    "resmlp relu, fixed residual": (
        ArchSpec(family="resmlp", depth=2, width=10, residual="fixed", residual_alpha=0.5),
        (8,),
    ),
    "resmlp relu, rezero": (ArchSpec(family="resmlp", depth=2, width=10, residual="rezero"), (8,)),
    "conv2d groups, max pool": (None, (2, 6, 6)),
}


def conv2d_net() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, groups=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 2, bias=False),
        nn.LeakyReLU(0.1),
        nn.Flatten(),
        nn.Linear(16, K),
    )


@pytest.mark.parametrize("name", sorted(PIECEWISE_LINEAR))
@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "regression"])
def test_exact_trace_equals_the_dense_hessian_trace(name, loss):
    spec, in_shape = PIECEWISE_LINEAR[name]
    batch = batch_for(in_shape, loss)
    fresh = (
        conv2d_net() if spec is None else build_model(spec, in_shape=in_shape, out_dim=K, seed=2)
    )
    model = trained_a_little(fresh, batch)
    if (
        spec is not None and spec.residual == "rezero"
    ):  # α = 0 at init would hide the branches' weights
        for p in model.parameters():
            if p.ndim == 0:
                p.data.fill_(0.7)
    assert not_piecewise_linear(model, batch.x) is None
    exact = dense_trace(model, batch)
    assert abs(exact) > 1e-3
    got = gauss_newton_trace(model, batch, torch.float64)
    assert got == pytest.approx(exact, rel=1e-9)
    # per-sample Jacobians for every parameter instead of the layer-by-layer contraction
    assert gauss_newton_trace(model, batch, torch.float64, contract=False) == pytest.approx(
        got, rel=1e-10
    )
    # the same in chunks of one sample, and in float32 to the products' rounding
    assert gauss_newton_trace(model, batch, torch.float64, budget=1) == pytest.approx(
        got, rel=1e-12
    )
    assert gauss_newton_trace(model, batch, torch.float32) == pytest.approx(exact, rel=1e-5)


class Custom(nn.Module):
    """Only linear layers as modules, but a tanh in its own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 6), nn.Linear(6, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


def _twice() -> nn.Module:
    lin = nn.Linear(8, 8)
    return nn.Sequential(lin, nn.ReLU(), lin, nn.Linear(8, K))


def _hooked() -> nn.Module:
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, K))
    model[1].register_forward_hook(lambda mod, args, out: out**2)
    return model


NOT_PIECEWISE_LINEAR = {
    "tanh": (lambda: build_model(ArchSpec(family="mlp", depth=2, width=8, act="tanh"),
                                 in_shape=(8,), out_dim=K), "'0.2' (Tanh) is not piecewise linear"),
    "layer norm": (lambda: build_model(ArchSpec(family="resmlp", depth=1, width=8, norm="layer"),
                                       in_shape=(8,), out_dim=K), "(LayerNorm)"),
    "custom forward": (Custom, "'Custom' (Custom) has a forward of its own"),
    "called twice": (_twice, "module '0' is called 2 times"),
    "hook": (_hooked, "'1' (ReLU) has forward hooks"),
    "batch statistics": (
        lambda: nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6, track_running_stats=False),
                              nn.ReLU(), nn.Linear(6, K)),
        "normalises by batch statistics",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NOT_PIECEWISE_LINEAR))
def test_networks_that_are_not_piecewise_linear_are_named(name):
    factory, reason = NOT_PIECEWISE_LINEAR[name]
    torch.manual_seed(0)
    model = factory().eval()
    batch = batch_for((8,))
    why = not_piecewise_linear(model, batch.x)
    assert why is not None and reason in why
    params = HessianParams(estimators=["trace"], trace_products=30, exact_seconds=0.0)
    out = HessianProbe(params).run(model, batch)
    assert out["trace_method"] == "hutch++" and reason in out["trace_note"]
    with pytest.raises(ProbeError, match="piecewise linear in each parameter"):
        HessianProbe(HessianParams(estimators=["trace"], trace_method="exact")).run(model, batch)


def test_the_check_matters_a_smooth_network_has_a_residual_trace():
    """For tanh the Gauss–Newton trace is not the Hessian's: the check is not a formality."""
    model = build_model(ArchSpec(family="mlp", depth=2, width=8, act="tanh"), in_shape=(8,),
                        out_dim=K, seed=2).eval()  # fmt: skip
    batch = batch_for((8,))
    exact = dense_trace(model, batch)
    assert abs(gauss_newton_trace(model, batch, torch.float64) - exact) > 1e-3 * abs(exact)


def test_a_loss_that_couples_samples_is_refused():
    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, K))
    batch = batch_for((8,))
    coupled = ProbeBatch(batch.x, batch.y, lambda out, y: out.sum() ** 2)
    with pytest.raises(ProbeError, match="couples the outputs of different samples"):
        gauss_newton_trace(model, coupled, torch.float64)


def test_the_probe_takes_the_exact_trace_by_default_where_it_holds():
    spec, in_shape = PIECEWISE_LINEAR["cnn1d relu"]
    model = build_model(spec, in_shape=in_shape, out_dim=K, seed=2)
    batch = batch_for(in_shape)
    out = HessianProbe(HessianParams(estimators=["trace"], dtype="float64")).run(model, batch)
    assert out["trace_method"] == "exact" and out["trace_note"] is None
    assert out["hvp_count"] == 0 and out["trace_stderr"] == 0.0
    assert out["trace_ci"] == [out["trace"], out["trace"]]
    assert out["trace"] == pytest.approx(dense_trace(model, batch), rel=1e-9)
    hutch = HessianProbe(
        HessianParams(estimators=["trace"], dtype="float64", trace_method="hutch++")
    ).run(model, batch)
    assert hutch["trace_method"] == "hutch++" and hutch["hvp_count"] == 60
