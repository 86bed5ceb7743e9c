"""Zero-cost proxies against closed forms, an independent autograd computation and hand-built
binary codes; synflow's data independence; state restore; errors of a proxy that cannot apply."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, grad

from depthlab import ArchSpec, build_model
from depthlab import _registry as reg
from depthlab.exceptions import ProbeError, SpecError
from depthlab.probes import ProbeBatch
from depthlab.probes.proxies import PROXIES, naswot_kernel, naswot_score, zero_cost_proxies


def _linear(w: list[list[float]], b: list[float] | None = None) -> nn.Linear:
    w_t = torch.tensor(w, dtype=torch.float32)
    layer = nn.Linear(w_t.shape[1], w_t.shape[0], bias=b is not None)
    with torch.no_grad():
        layer.weight.copy_(w_t)
        if b is not None:
            layer.bias.copy_(torch.tensor(b))
    return layer


def _batch(n: int, d: int, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.arange(n) % classes


# --- synflow -------------------------------------------------------------------------------


def test_synflow_of_a_two_layer_linear_net_has_its_closed_form():
    # f(x) = W2 (W1 x + b1) + b2. With |θ| and x = 1: R = 1ᵀ|W2|(|W1|1 + |b1|) + 1ᵀ|b2|, which
    # is linear in each weight matrix, so Σ W ⊙ ∂R/∂W is that matrix's term of R.
    gen = torch.Generator().manual_seed(3)
    w1, b1 = torch.randn(5, 4, generator=gen), torch.randn(5, generator=gen)
    w2, b2 = torch.randn(3, 5, generator=gen), torch.randn(3, generator=gen)
    model = nn.Sequential(_linear(w1.tolist(), b1.tolist()), _linear(w2.tolist(), b2.tolist()))
    a1, c1, a2 = (np.abs(t.double().numpy()) for t in (w1, b1, w2))
    ones = np.ones(4)
    expected = ones[:3] @ a2 @ a1 @ ones + ones[:3] @ a2 @ (a1 @ ones + c1)
    got = zero_cost_proxies(model, _batch(8, 4), proxies=["synflow"])["synflow"]
    assert got == pytest.approx(float(expected), rel=1e-12)


def test_synflow_of_a_deep_relu_chain_is_depth_times_the_path_sum_in_float64():
    # 300 layers of 3·I (width 2, no bias): every path product is 3^300 ≈ 1e143, far beyond
    # float32; with |θ| and a positive input every ReLU passes, R = 2·3^300 and each of the
    # 300 layers contributes R, so synflow = 300 · 2 · 3^300.
    depth = 300
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [_linear([[3.0, 0.0], [0.0, -3.0]]), nn.ReLU()]
    model = nn.Sequential(*layers)
    got = zero_cost_proxies(model, _batch(4, 2), proxies=["synflow"])["synflow"]
    expected = depth * 2 * 3.0**depth
    assert math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-9)


def test_synflow_does_not_depend_on_the_data():
    model = build_model(ArchSpec(depth=3, width=16, act="tanh"), in_shape=(6,), out_dim=3, seed=2)
    one = zero_cost_proxies(model, _batch(8, 6, seed=0), proxies=["synflow"])
    other_x, _ = _batch(8, 6, seed=1)
    other = zero_cost_proxies(model, (100.0 * other_x, torch.arange(8) % 2), proxies=["synflow"])
    assert one["synflow"] > 0
    assert one["synflow"] == other["synflow"]


# --- grad_norm and snip ----------------------------------------------------------------------


def test_grad_norm_and_snip_of_one_linear_layer_by_hand():
    # L = mean over N×2 entries of (x Wᵀ − y)², so ∂L/∂W = (2 / (2N)) (X Wᵀ − Y)ᵀ X.
    w = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]
    model = nn.Sequential(_linear(w))
    x = torch.tensor([[1.0, 2.0, -1.0], [0.0, -1.0, 3.0], [2.0, 1.0, 1.0], [-1.0, 0.5, 0.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    got = zero_cost_proxies(model, (x, y), proxies=["grad_norm", "snip"])
    xd, yd, wd = x.double().numpy(), y.double().numpy(), np.array(w)
    g = (2.0 / (2 * len(x))) * (xd @ wd.T - yd).T @ xd
    assert got["grad_norm"] == pytest.approx(float(np.linalg.norm(g)), rel=1e-6)
    assert got["snip"] == pytest.approx(float(np.abs(g * wd).sum()), rel=1e-6)


@pytest.mark.parametrize(
    "spec, in_shape",
    [
        (ArchSpec(depth=3, width=12, act="gelu", norm="layer"), (7,)),
        (ArchSpec(family="cnn1d", depth=2, width=4, stride=2), (16,)),
    ],
)
def test_grad_norm_and_snip_match_torch_func_gradients(spec, in_shape):
    model = build_model(spec, in_shape=in_shape, out_dim=3, seed=4)
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(10, *in_shape, generator=gen), torch.arange(10) % 3
    got = zero_cost_proxies(model, (x, y), proxies=["grad_norm", "snip"])
    # Independent: torch.func gradient of the loss with respect to every parameter at once,
    # then the sums over the weights of Linear/Conv modules.
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    model.train()

    def loss(p):
        out = functional_call(model, {**p, **buffers}, (x,))
        return nn.functional.cross_entropy(out, y)

    grads = grad(loss)(params)
    names = [
        f"{n}.weight"
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))
    ]
    assert len(names) >= 3
    grad_norm = sum(float(grads[k].double().norm()) for k in names)
    snip = sum(float((grads[k].double() * params[k].double()).abs().sum()) for k in names)
    assert got["grad_norm"] == pytest.approx(grad_norm, rel=1e-6)
    assert got["snip"] == pytest.approx(snip, rel=1e-6)


# --- naswot ---------------------------------------------------------------------------------


def test_naswot_of_three_hand_built_codes():
    # N_A = 2; K_ij = 2 − Hamming: [[2, 0, 1], [0, 2, 1], [1, 1, 2]], det = 2·3 − 0 + 1·(−2) = 4.
    codes = torch.tensor([[1, 0], [0, 1], [1, 1]])
    k = naswot_kernel(codes)
    assert k.tolist() == [[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [1.0, 1.0, 2.0]]
    assert naswot_score(codes) == pytest.approx(math.log(4.0), rel=1e-12)


def test_naswot_kernel_is_units_minus_hamming_and_score_a_direct_determinant():
    gen = torch.Generator().manual_seed(7)
    codes = (torch.rand(6, 40, generator=gen) > 0.5).int()
    n_units = codes.shape[1]
    direct = np.array(
        [
            [n_units - int((codes[i] != codes[j]).sum()) for j in range(len(codes))]
            for i in range(len(codes))
        ],
        dtype=float,
    )
    assert np.array_equal(naswot_kernel(codes).numpy(), direct)
    assert naswot_score(codes) == pytest.approx(math.log(abs(np.linalg.det(direct))), rel=1e-10)


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh])
def test_naswot_reads_the_sign_of_each_pre_activation(act):
    # W rows e1, e2, e1 + e2. Pre-activations and codes (1[h > 0]):
    # x1 = (1, −1): (1, −1, 0) → 100;  x2 = (−1, 2): (−1, 2, 1) → 011;  x3 = (2, 1) → 111.
    # K = 3 − Hamming = [[3, 0, 1], [0, 3, 2], [1, 2, 3]], det = 3·5 + 1·(−3) = 12. The code is
    # the sign of the pre-activation for tanh as well as ReLU, so both give log 12.
    model = nn.Sequential(_linear([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), act())
    x = torch.tensor([[1.0, -1.0], [-1.0, 2.0], [2.0, 1.0]])
    got = zero_cost_proxies(model, (x, torch.tensor([0, 1, 2])), proxies=["naswot"])
    assert got["naswot"] == pytest.approx(math.log(12.0), rel=1e-12)


def test_naswot_is_minus_infinity_when_two_inputs_share_a_code():
    model = nn.Sequential(_linear([[1.0, 0.0], [0.0, 1.0]]), nn.ReLU(), _linear([[1.0, 1.0]]))
    x = torch.tensor([[1.0, 2.0], [3.0, 1.0], [-1.0, 1.0]])  # the first two: both units on
    got = zero_cost_proxies(model, (x, torch.tensor([0.0, 1.0, 2.0])), proxies=["naswot"])
    assert got["naswot"] == -math.inf


# --- the probe and the function API --------------------------------------------------------


def test_probe_is_registered_returns_every_proxy_and_is_json_safe():
    from depthlab.diagnosis import DEFAULT_PROBES

    assert "proxies" in reg.PROBES.names()
    assert "proxies" not in DEFAULT_PROBES
    model = build_model(ArchSpec(depth=4, width=32), in_shape=(10,), out_dim=3, seed=0)
    batch = ProbeBatch.from_tensors(*_batch(100, 10))
    probe = reg.PROBES.get("proxies")(reg.PROBES.get("proxies").Params(batch_size=48))
    out = probe.run(model, batch)
    assert set(PROXIES) <= set(out)
    assert out["n_samples"] == 48
    assert out["n_params"] == sum(p.numel() for p in model.parameters())
    assert isinstance(out["n_params"], int)
    for name in ("grad_norm", "snip", "synflow", "naswot"):
        assert isinstance(out[name], float) and math.isfinite(out[name]) and out[name] > 0, name
    # the function API on the same 48 samples gives the same numbers
    same = zero_cost_proxies(model, batch.head(48))
    assert {k: same[k] for k in PROXIES} == {k: float(out[k]) for k in PROXIES}
    json.dumps(out, allow_nan=False)


def test_function_api_leaves_the_model_exactly_as_it_was():
    model = build_model(ArchSpec(depth=2, width=8, norm="batch"), in_shape=(5,), out_dim=3, seed=1)
    model.eval()
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    first.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    zero_cost_proxies(model, _batch(16, 5))
    assert not model.training and not any(m.training for m in model.modules())
    assert first.weight.requires_grad is False
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_a_proxy_that_cannot_apply_raises_one_probe_error():
    no_act = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ProbeError, match="naswot needs elementwise activation modules"):
        zero_cost_proxies(no_act, _batch(6, 4))
    no_weights = nn.Sequential(nn.ReLU())
    with pytest.raises(ProbeError, match="grad_norm needs a weight layer"):
        zero_cost_proxies(no_weights, _batch(6, 3), proxies=["grad_norm"])
    with pytest.raises(ProbeError, match="synflow needs a weight layer"):
        zero_cost_proxies(no_weights, _batch(6, 3), proxies=["synflow"])


def test_an_unknown_proxy_name_lists_the_choices():
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(SpecError, match="'jacov' is not valid; choices: grad_norm, snip"):
        zero_cost_proxies(model, _batch(6, 4), proxies=["jacov"])


def test_each_proxy_alone_equals_its_value_among_all():
    model = build_model(ArchSpec(depth=3, width=16, act="selu"), in_shape=(6,), out_dim=3, seed=3)
    every = zero_cost_proxies(model, _batch(20, 6))
    for name in PROXIES:
        alone = zero_cost_proxies(model, _batch(20, 6), proxies=[name])
        assert list(alone) == [name]
        assert alone[name] == every[name], name


def test_permutations_of_the_proxy_list_keep_the_order_asked():
    model = build_model(ArchSpec(depth=1, width=4), in_shape=(3,), out_dim=2, seed=0)
    for order in itertools.permutations(["snip", "n_params", "grad_norm"]):
        assert list(zero_cost_proxies(model, _batch(5, 3, classes=2), proxies=order)) == list(order)
