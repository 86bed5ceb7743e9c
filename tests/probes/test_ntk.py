"""The ntk probe against an explicit per-sample-Jacobian oracle, its methods against each other,
and the probe's promises: a symmetric PSD kernel, an untouched model, a lazy/rich contrast."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from depthlab import ArchSpec, ProbeError, SpecError, build_model
from depthlab import _registry as reg
from depthlab.probes import NTKProbe, ProbeBatch
from depthlab.probes.ntk import empirical_ntk, spectrum
from depthlab.probes.ntk_layerwise import layer_block

METHODS = ("layerwise", "jacobian", "ntvp")


def oracle_ntk(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Θ = J Jᵀ traced over outputs, J the dense Jacobian of the flat-parameter function."""
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    shapes = {k: p.shape for k, p in params.items()}
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])

    def f(theta: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(theta, [s.numel() for s in shapes.values()])
        named = {k: c.reshape(s) for (k, s), c in zip(shapes.items(), chunks, strict=True)}
        return functional_call(model, named, (x,)).reshape(len(x), -1)

    jac = torch.autograd.functional.jacobian(f, flat)  # (N, K, P)
    return torch.einsum("ikp,jkp->ij", jac, jac)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


class OddOp(nn.Module):
    """A user module: a learnable gain inside softplus, a raw matrix product, a linear readout."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 8)
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, 8))
        self.mix = nn.Parameter(torch.randn(8, 8) / 3)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.softplus(self.lin(x) * self.gain)
        return self.out(torch.tanh(h @ self.mix) + h)


class TiedAutoencoder(nn.Module):
    """The decoder reuses the encoder's weight through ``F.linear``, outside the module."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(6, 4)
        self.dec_bias = nn.Parameter(torch.zeros(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.tanh(self.enc(x)), self.enc.weight.t(), self.dec_bias)


class Reused(nn.Module):
    """One linear layer applied twice, in-place ReLU after it, and a sequence-first layer."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.act = nn.ReLU(inplace=True)
        self.seq = nn.Linear(3, 5)
        self.out = nn.Linear(11, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.lin(self.act(self.lin(x))))
        s = self.seq(x.reshape(len(x), 2, 3).transpose(0, 1)).mean(0)  # (T, N, 3) layout
        return self.out(torch.cat([h, s], dim=1))


class DataDependent(nn.Module):
    """Python control flow on the data: ``vmap`` refuses it, the plain-autograd loop runs it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 5)
        self.scale = nn.Parameter(torch.tensor(0.7))
        self.out = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        if bool((x.abs() > 1e6).any()):  # a guard that never fires, but vmap cannot branch
            h = h.clamp(-1, 1)
        return self.out(torch.tanh(h) * self.scale)


def conv_zoo() -> nn.Module:
    """Grouped, dilated, reflect-padded Conv1d and a circular 'same' Conv2d."""
    return nn.Sequential(
        nn.Unflatten(1, (2, 6)),
        nn.Conv1d(2, 4, 3, padding=2, dilation=2, padding_mode="reflect", groups=2),
        nn.ReLU(),
        nn.Unflatten(1, (2, 2)),
        nn.Conv2d(2, 3, (2, 3), padding="same", padding_mode="circular"),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(3 * 2 * 6, 3),
    )


def batchnorm_mlp() -> nn.Module:
    model = build_model(ArchSpec(depth=2, width=12, norm="batch"), in_shape=(6,), out_dim=3)
    gen = torch.Generator().manual_seed(3)
    for m in model.modules():  # running statistics and affine away from their defaults
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
    return model


def rezero_nonzero() -> nn.Module:
    spec = ArchSpec(family="resmlp", depth=2, width=12, norm="layer", residual="rezero")
    model = build_model(spec, in_shape=(6,), out_dim=3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.fill_(0.3)  # at init α = 0 and the branches' gradients vanish
    return model


ZOO = {
    "mlp": lambda: build_model(ArchSpec(depth=2, width=12), in_shape=(6,), out_dim=3),
    "resmlp-rezero": lambda: build_model(
        ArchSpec(family="resmlp", depth=2, width=12, norm="layer", residual="rezero"),
        in_shape=(6,),
        out_dim=3,
    ),
    "resmlp-rezero-trained": rezero_nonzero,
    "resmlp-fixed": lambda: build_model(
        ArchSpec(family="resmlp", depth=2, width=12, norm="layer", residual="fixed"),
        in_shape=(6,),
        out_dim=3,
    ),
    "cnn1d": lambda: build_model(
        ArchSpec(family="cnn1d", depth=2, width=4, kernel=3, stride=2, padding=1),
        in_shape=(16,),
        out_dim=3,
    ),
    "batchnorm-eval": batchnorm_mlp,
    "user-odd-op": OddOp,
}
IN_DIM = {"cnn1d": 16}


def zoo_model(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = ZOO[name]().double().eval()
    x = torch.randn(10, IN_DIM.get(name, 6), dtype=torch.float64)
    return model, x


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(ZOO))
def test_matches_the_dense_jacobian_oracle(name, method):
    model, x = zoo_model(name)
    assert sum(p.numel() for p in model.parameters()) <= 2000
    theta, info = empirical_ntk(model, x, method=method)
    assert info["method"] == method
    assert rel_err(theta, oracle_ntk(model, x)) < 1e-5


def test_rezero_at_init_has_no_branch_contribution():
    model, x = zoo_model("resmlp-rezero")
    _, info = empirical_ntk(model, x, method="layerwise")
    assert info["fallback_params"] > 0  # LayerNorm affine and α went through the fallback
    theta = oracle_ntk(model, x)
    for block in model[1:3]:
        for p in block.branch.parameters():
            p.requires_grad_(False)
    assert rel_err(oracle_ntk(model, x), theta) < 1e-12  # vanishing gradients: no change


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "make", [TiedAutoencoder, Reused, DataDependent, conv_zoo], ids=lambda f: f.__name__
)
def test_exact_for_unusual_modules(make, method):
    torch.manual_seed(0)
    model = make().double().eval()
    x = torch.randn(7, 12 if make is conv_zoo else 6, dtype=torch.float64)
    if make is DataDependent and method == "ntvp":  # vmap cannot run it; only ntvp needs vmap
        with pytest.raises(ProbeError, match="use method layerwise or jacobian"):
            empirical_ntk(model, x, method=method)
        return
    theta, _ = empirical_ntk(model, x, method=method)
    assert rel_err(theta, oracle_ntk(model, x)) < 1e-5


def test_layers_that_cannot_be_contracted_fall_back():
    torch.manual_seed(0)
    _, info = empirical_ntk(TiedAutoencoder().double(), torch.randn(5, 6).double())
    assert info["contracted_layers"] == 0  # the weight used outside the module is caught
    _, info = empirical_ntk(Reused().double(), torch.randn(5, 6).double(), method="layerwise")
    assert info["contracted_layers"] == 2  # the reused layer and the readout; not seq-first
    assert info["fallback_params"] == 3 * 5 + 5


@pytest.mark.parametrize("memory_mb", [1024.0, 1e-3])
def test_methods_agree_in_float32_and_under_a_tiny_memory_budget(memory_mb):
    torch.manual_seed(0)
    spec = ArchSpec(family="cnn1d", depth=2, width=6, kernel=3, stride=1, padding=1, norm="layer")
    model = build_model(spec, in_shape=(16,), out_dim=4).eval()
    x = torch.randn(12, 16)
    kernels = {m: empirical_ntk(model, x, method=m, memory_mb=memory_mb)[0] for m in METHODS}
    auto, info = empirical_ntk(model, x, method="auto", memory_mb=memory_mb)
    assert info["method"] in METHODS
    for theta in (*kernels.values(), auto):
        assert rel_err(theta, kernels["jacobian"]) < 1e-5


def test_both_convolution_contractions_agree():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(5, 7, 2, 3, generator=gen, dtype=torch.float64)  # (N, P, G, di)
    d = torch.randn(5, 7, 2, 2, 4, generator=gen, dtype=torch.float64)  # (N, P, G, K, do)
    per_sample = layer_block(a, d, True, True, budget=10**9)
    pairwise = layer_block(a, d, True, True, budget=10)  # too small for per-sample gradients
    grads = [torch.einsum("npko,npi->nkoi", d[:, :, g], a[:, :, g]) for g in range(2)]
    grads.append(d.sum(1))
    flat = torch.cat([g.reshape(5, -1) for g in grads], dim=1)
    assert torch.allclose(per_sample, flat @ flat.T, rtol=1e-12, atol=1e-12)
    assert torch.allclose(pairwise, flat @ flat.T, rtol=1e-12, atol=1e-12)


def _batch(n: int = 16, dim: int = 6, seed: int = 0) -> ProbeBatch:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen)
    return ProbeBatch.from_tensors(x, torch.arange(n) % 3)


def test_probe_output_kernel_symmetric_psd_and_json_safe():
    model = build_model(ArchSpec(depth=3, width=16), in_shape=(6,), out_dim=3)
    probe = reg.PROBES.get("ntk")(NTKProbe.Params(samples=12, return_kernel=True))
    out = probe.run(model, _batch())
    assert out["n_samples"] == 12 and out["method"] == "layerwise"
    kernel = torch.tensor(out["kernel"], dtype=torch.float64)
    assert kernel.shape == (12, 12)
    assert torch.allclose(kernel, kernel.T, rtol=1e-6, atol=0)
    ev = torch.tensor(out["eigenvalues"])
    assert torch.all(ev[:-1] >= ev[1:])
    assert ev[-1] >= -12 * torch.finfo(torch.float32).eps * ev[0]
    assert math.isclose(out["trace"], float(torch.trace(kernel)), rel_tol=1e-9)
    assert math.isclose(out["trace"], float(ev.sum()), rel_tol=1e-5)
    assert math.isclose(out["condition_number"], float(ev[0] / ev[-1]), rel_tol=1e-5)
    json.dumps(out)
    assert "kernel" not in NTKProbe().run(model, _batch())


def test_duplicate_inputs_make_the_kernel_singular():
    model = build_model(ArchSpec(depth=2, width=16), in_shape=(6,), out_dim=3)
    batch = _batch(8)
    x = torch.cat([batch.x[:4], batch.x[:1]])
    out = NTKProbe().run(model, ProbeBatch.from_tensors(x, torch.arange(5) % 3))
    # λ_min is below the float64 floor: the condition number is the floor's bound, not ∞
    assert out["condition_number_is_bound"] and out["precision"] == "float64"
    eps = torch.finfo(torch.float64).eps
    assert out["condition_number"] == pytest.approx(1 / (5 * eps), rel=1e-12)
    assert abs(out["eigenvalues"][-1]) < 1e-12 * out["eigenvalues"][0]
    four = spectrum(torch.diag(torch.tensor([4.0, 1.0])), torch.float64)
    assert four["condition_number"] == 4 and not four["condition_number_is_bound"]


def test_float64_resolves_a_condition_number_float32_can_only_bound():
    """Two nearly equal inputs: λ_min/λ_max ≈ 1e-9, under the float32 floor N·eps32 ≈ 1e-6 but
    far above float64's. The float64 kernel's condition number matches a float64 oracle; the
    model-precision one is the float32 floor's bound, and says so."""
    torch.manual_seed(0)
    model = build_model(ArchSpec(depth=2, width=32, act="tanh"), in_shape=(6,), out_dim=1)
    x = torch.randn(8, 6)
    x[7] = x[6] + 1e-4 * torch.randn(6)
    batch = ProbeBatch.from_tensors(x, torch.randn(8, 1))
    reference = torch.linalg.eigvalsh(oracle_ntk(_double(model), x.double()))
    cond = float(reference[-1] / reference[0])
    assert 1e7 < cond < 1e12  # the case: resolvable in float64, not in float32
    exact = NTKProbe(NTKProbe.Params(samples=8)).run(model, batch)
    assert not exact["condition_number_is_bound"]
    assert exact["condition_number"] == pytest.approx(cond, rel=1e-4)
    rough = NTKProbe(NTKProbe.Params(samples=8, precision="model")).run(model, batch)
    assert rough["precision"] == "float32" and rough["condition_number_is_bound"]
    assert rough["condition_number"] == pytest.approx(
        1 / (8 * torch.finfo(torch.float32).eps), rel=1e-6
    )
    assert rough["condition_number"] < cond  # a lower bound, below the truth


def _double(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).double()


def test_model_untouched_and_training_happens_on_a_copy():
    spec = ArchSpec(family="resmlp", depth=2, width=8, norm="batch", residual="rezero")
    model = build_model(spec, in_shape=(6,), out_dim=3, seed=1)
    model.append(nn.Dropout(0.3)).train()
    model(torch.randn(4, 6)).sum().backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    probe = NTKProbe(NTKProbe.Params(samples=8, train_steps=3, lr=0.1, optimizer="adam"))
    out = probe.run(model, _batch())
    assert 0 < out["relative_change"] < math.inf
    assert all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]) and v.dtype == state[k].dtype, k
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    probe.measure(model, _batch(), seed=0)  # without run's safety net: only the mode changes
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_wide_network_stays_lazy_narrow_one_does_not():
    def change(width: int, lr: float) -> float:
        model = build_model(ArchSpec(depth=1, width=width), in_shape=(6,), out_dim=3)
        params = NTKProbe.Params(samples=16, train_steps=10, lr=lr)
        out = NTKProbe(params).run(model, _batch(32))
        assert out["train_loss"][1] < out["train_loss"][0]
        return out["relative_change"]

    wide, narrow = change(4096, 1e-3), change(8, 0.5)
    assert 0 <= wide < 1e-3
    assert math.isfinite(narrow) and narrow > 0.05 and narrow > 100 * wide


def test_params_are_validated_and_errors_are_clear():
    with pytest.raises(SpecError, match="auto, layerwise, jacobian, ntvp"):
        NTKProbe.Params(method="exact")
    with pytest.raises(SpecError, match="samples"):
        NTKProbe.Params(samples=0)
    with pytest.raises(SpecError, match="valid keys"):
        NTKProbe.Params.from_dict({"sample": 3})
    assert NTKProbe.Params.from_dict({"method": "ntvp"}).method == "ntvp"
    model = nn.Linear(6, 2).requires_grad_(False)
    with pytest.raises(ProbeError, match="no trainable parameters"):
        NTKProbe().run(model, _batch())
