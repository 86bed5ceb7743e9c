"""The measured correlation length against mean-field theory, and the fit on known slopes."""

from __future__ import annotations

import math

import pytest
import torch

from depthlab import ArchSpec, build_model
from depthlab.probes import ProbeBatch
from depthlab.probes.correlation import CorrelationParams, CorrelationProbe, fit_xi
from depthlab.theory import analyse


def _pairs(n: int = 512, d: int = 64) -> ProbeBatch:
    """Input pairs whose correlations spread over [-0.8, 0.8]."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(n // 2, d, generator=gen)
    rho = torch.rand(n // 2, generator=gen) * 1.6 - 0.8
    x = torch.empty(n, d)
    x[0::2] = base
    x[1::2] = rho[:, None] * base + (1 - rho[:, None] ** 2).sqrt() * torch.randn(
        n // 2, d, generator=gen
    )
    return ProbeBatch.from_tensors(x, torch.zeros(n, dtype=torch.long))


def _tanh_net(sigma_w2: float, sigma_b2: float, seed: int) -> torch.nn.Module:
    model = build_model(
        ArchSpec(depth=40, width=512, act="tanh", init="xavier"), in_shape=(64,), out_dim=2
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, math.sqrt(sigma_w2 / m.in_features), generator=gen)
                m.bias.normal_(0, math.sqrt(sigma_b2), generator=gen)
    return model


@pytest.mark.parametrize("sigma_w2", [1.2, 3.0, 4.0])
def test_measured_xi_c_matches_mean_field_on_both_sides_of_criticality(sigma_w2):
    # Width 512, 40 layers, 256 pairs, mean over 2 networks: within 15 % of theory. (Near the
    # critical point, σ_w² ≈ 1.8 here, ξ_c exceeds the depth the fit can see; the linearised
    # map also needs c near c*, so far-from-critical ordered nets read high: 3.4 vs 2.3 at 0.8.)
    theory = analyse(torch.tanh, sigma_w2=sigma_w2, sigma_b2=0.05)
    measured = [
        CorrelationProbe(CorrelationParams(pairs=256)).run(
            _tanh_net(sigma_w2, 0.05, seed), _pairs(), seed=seed
        )["xi_c"]
        for seed in range(2)
    ]
    mean = sum(measured) / len(measured)
    assert abs(mean - theory.xi_c) / theory.xi_c < 0.15, (measured, theory.xi_c)


def test_fit_recovers_a_known_rate_and_stops_at_the_noise():
    rows = [{"index": k, "slope": math.exp(-k / 5.0), "slope_se": 0.01} for k in range(12)] + [
        {"index": 12 + k, "slope": 0.01, "slope_se": 0.02} for k in range(20)
    ]
    fit = fit_xi(rows)
    assert fit["xi_c"] == pytest.approx(5.0, rel=1e-9)
    assert fit["depth"] == 32 and fit["depth_ratio"] == pytest.approx(32 / 5.0)
    assert not fit["xi_c_is_bound"] and not fit["geometry_kept"]


def test_a_net_that_keeps_the_geometry_has_an_unbounded_xi():
    rows = [{"index": k, "slope": 1.0, "slope_se": 0.01} for k in range(10)]
    fit = fit_xi(rows)
    assert fit["xi_c"] == math.inf and fit["depth_ratio"] == 0.0 and fit["geometry_kept"]


def test_nothing_resolved_measures_nothing():
    rows = [{"index": k, "slope": 0.01, "slope_se": 0.05} for k in range(10)]
    fit = fit_xi(rows)
    assert fit["xi_c"] is None and fit["depth_ratio"] is None and not fit["xi_c_is_bound"]


def test_token_inputs_are_refused_with_a_reason():
    from depthlab import ProbeError

    model = torch.nn.Sequential(
        torch.nn.Embedding(10, 8), torch.nn.Flatten(), torch.nn.Linear(32, 2)
    )
    batch = ProbeBatch.from_tensors(
        torch.randint(0, 10, (64, 4)), torch.zeros(64, dtype=torch.long)
    )
    with pytest.raises(ProbeError, match="integer tokens"):
        CorrelationProbe().run(model, batch)


def test_one_resolved_layer_then_noise_bounds_nothing():
    rows = [{"index": 0, "slope": 1.0, "slope_se": 0.01}] + [
        {"index": k, "slope": 0.7, "slope_se": 0.45} for k in range(1, 6)
    ]
    fit = fit_xi(rows)
    assert fit["xi_c"] is None and fit["depth_ratio"] is None
    gone = [{"index": 0, "slope": 1.0, "slope_se": 0.01}] + [
        {"index": k, "slope": 0.001, "slope_se": 0.001} for k in range(1, 6)
    ]
    fit = fit_xi(gone)
    assert fit["xi_c_is_bound"] and fit["xi_c"] < 0.5 and fit["depth_ratio"] > 6


def test_relu_at_he_is_not_called_a_correlation_collapse():
    """ReLU at He init is critical (ξ_c = ∞ by mean field) though its correlations approach 1
    polynomially, which an exponential fit would read as a short ξ_c."""
    from depthlab.diagnosis import DiagnoseOptions, diagnose

    model = build_model(
        ArchSpec(depth=24, width=256, act="relu", init="he"), in_shape=(64,), out_dim=2
    )
    options = DiagnoseOptions(probes=("signal", "correlation", "meanfield"), seeds=1)
    result = diagnose(model, _pairs(), options, progress=False)
    assert result["correlation"]["depth_ratio"] is None or result["correlation"]["depth_ratio"] > 6
    assert result["meanfield"]["xi_c"] > 1000  # mean field: critical (∞ up to its root finding)
    assert not {"correlation collapse", "chaotic"} & {f["verdict"] for f in result["findings"]}


def _probe_rows(model: torch.nn.Module, x: torch.Tensor) -> dict:
    batch = ProbeBatch.from_tensors(x, torch.zeros(len(x), dtype=torch.long))
    return CorrelationProbe(CorrelationParams(pairs=16)).run(model, batch, seed=0)


def test_distances_and_offset_share_match_a_direct_computation():
    # two identity layers: each layer's input is known exactly (x, then x again)
    gen = torch.Generator().manual_seed(0)
    common = torch.randn(8, generator=gen)
    x = 3 * common + torch.randn(32, 8, generator=gen)  # a large vector shared by every input
    model = torch.nn.Sequential(torch.nn.Linear(8, 8, bias=False), torch.nn.Linear(8, 8))
    with torch.no_grad():
        for m in model:
            m.weight.copy_(torch.eye(8))
        model[1].bias.zero_()
    out = _probe_rows(model, x)
    h = x.double()
    a, b = h[0::2], h[1::2]
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    delta = (a - b).norm(dim=1) / (a.norm(dim=1) * b.norm(dim=1)).sqrt()
    centred = h - h.mean(0)
    ca, cb = centred[0::2], centred[1::2]
    ccos = (ca * cb).sum(1) / (ca.norm(dim=1) * cb.norm(dim=1))
    for row in out["layers"]:
        assert row["one_minus_c"] == pytest.approx(float((1 - cos).mean()), rel=1e-9)
        assert row["distance"] == pytest.approx(float(delta.median()), rel=1e-9)
        assert row["centred_correlation"] == pytest.approx(float(ccos.mean()), rel=1e-9, abs=1e-12)
        share = float(h.mean(0).pow(2).sum() / h.pow(2).sum(1).mean())
        assert row["offset_share"] == pytest.approx(share, rel=1e-9) and share > 0.5
    assert out["indistinguishable_at"] is None and out["dtype"] == "float32"
    assert out["resolution"] == pytest.approx(1e3 * torch.finfo(torch.float32).eps)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inputs_pressed_below_float_resolution_are_found_at_their_layer(dtype):
    # layer 1 shrinks every input's own part by 1e-6 against a shared bias of 1: relative
    # distances of about 1e-6, below 1e3 ε of float32 (1.2e-4) but far above float64's (2e-13)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)
    ).to(dtype)
    with torch.no_grad():
        model[0].weight.copy_(1e-6 * torch.eye(8))
        model[0].bias.fill_(1.0)
        for m in model[1:]:
            m.weight.copy_(torch.eye(8)[: m.out_features])
            m.bias.zero_()
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0), dtype=dtype)
    out = _probe_rows(model, x)
    assert 1e-7 < out["layers"][1]["distance"] < 1e-5
    if dtype == torch.float32:
        assert out["indistinguishable_at"] == 1 and out["indistinguishable_layer"] == "1"
    else:
        assert out["indistinguishable_at"] is None and out["dtype"] == "float64"
