"""Weight-spectrum probe: norms and stable rank from known singular values, the power-law MLE
against samples of known exponent, and light- versus heavy-tailed random matrices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from depthlab import ProbeError
from depthlab import _registry as reg
from depthlab.probes import ProbeBatch, Weights
from depthlab.probes.weights import fit_power_law, spectrum_stats

# The weights probe reads no data; any batch will do.
BATCH = ProbeBatch.from_tensors(torch.zeros(1, 1), torch.zeros(1, dtype=torch.long))


def with_weight(w: np.ndarray) -> nn.Module:
    layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w))
    return nn.Sequential(layer)


def test_registered():
    assert reg.PROBES.get("weights") is Weights


def test_norms_and_stable_rank_of_known_singular_values():
    rng = np.random.default_rng(0)
    s = np.array([4.0, 2.0, 1.0, 1.0, 0.5])
    u, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    v, _ = np.linalg.qr(rng.standard_normal((7, 5)))
    out = Weights(Weights.Params(top_k=3, full_spectrum=True)).run(
        with_weight(u @ np.diag(s) @ v.T), BATCH
    )
    (layer,) = out["layers"]
    assert layer["name"] == "0" and layer["shape"] == [5, 7] and layer["n_eigs"] == 5
    assert layer["spectral_norm"] == pytest.approx(4.0, rel=1e-6)
    assert layer["fro_norm"] == pytest.approx(np.sqrt(22.25), rel=1e-6)
    assert layer["stable_rank"] == pytest.approx(22.25 / 16.0, rel=1e-6)
    np.testing.assert_allclose(layer["top_singular_values"], s[:3], rtol=1e-6)
    np.testing.assert_allclose(layer["singular_values"], s, rtol=1e-6)
    assert layer["alpha"] is None and out["mean_alpha"] is None  # 5 eigenvalues: too few to fit
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize("alpha", [1.8, 2.5, 3.5])
def test_mle_recovers_the_exponent_of_a_pareto_tail_above_a_bulk(alpha):
    # p(x) ∝ x^(−α) for x ≥ 1 (inverse-CDF sampling), below it a uniform bulk on [0.2, 1) that
    # is no power law: the KS choice of x_min must keep the fit out of the bulk.
    rng = np.random.default_rng(int(alpha * 10))
    # 5,000 tail samples: the estimator's spread (with x_min chosen) is then ≈ 0.05 at α = 3.5.
    tail = (1.0 - rng.random(5000)) ** (-1.0 / (alpha - 1.0))
    bulk = rng.uniform(0.2, 1.0, 1000)
    fit = fit_power_law(np.concatenate([bulk, tail]))
    assert fit is not None
    assert fit.alpha == pytest.approx(alpha, abs=0.15)
    assert fit.xmin > 0.8  # the fit does not start inside the bulk
    assert fit.ks < 0.05


def test_alpha_is_scale_invariant():
    w = np.random.default_rng(1).standard_t(2.0, (120, 60))
    a, b = spectrum_stats(torch.tensor(w)), spectrum_stats(torch.tensor(5.0 * w))
    assert a["alpha"] == pytest.approx(b["alpha"], rel=1e-9)
    assert b["alpha_xmin"] == pytest.approx(25.0 * a["alpha_xmin"], rel=1e-9)


def test_gaussian_matrix_is_light_tailed_and_cauchy_matrix_heavy_tailed():
    rng = np.random.default_rng(2)
    model = nn.Sequential(nn.Linear(500, 1000), nn.Linear(500, 1000))
    with torch.no_grad():
        model[0].weight.copy_(torch.as_tensor(rng.standard_normal((1000, 500))))
        model[1].weight.copy_(torch.as_tensor(rng.standard_cauchy((1000, 500))))
    gauss, cauchy = Weights().run(model, BATCH)["layers"]
    # Marchenko–Pastur bulk with a hard edge, no power-law tail: a steep fit. Over seeds the
    # fit scatters widely (≈ 4.5 to 20 at this size), so only a loose bound is a property.
    assert gauss["alpha"] > 4.0
    # Entries with tail exponent μ = 1: a power-law ESD with α ≈ 1 + μ/2 (≈ 1.4–1.55 over seeds).
    assert cauchy["alpha"] < 2.0
    assert cauchy["alpha_ks"] < 0.1
    assert gauss["n_eigs"] == cauchy["n_eigs"] == 500
    # Marchenko–Pastur: ‖W‖_F² ≈ NM and ‖W‖₂ ≈ √N + √M for unit-variance entries.
    assert gauss["stable_rank"] == pytest.approx(1000 * 500 / (1000**0.5 + 500**0.5) ** 2, rel=0.03)
    assert cauchy["stable_rank"] < 10.0  # a few huge entries dominate


def test_conv_weight_is_read_as_out_by_in_times_kernel():
    conv = nn.Conv1d(3, 8, kernel_size=5)
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(8 * 12, 4))
    out = Weights(Weights.Params(full_spectrum=True)).run(model, BATCH)
    first, last = out["layers"]
    assert first["type"] == "Conv1d" and first["shape"] == [8, 3, 5]
    assert first["matrix_shape"] == [8, 15] and first["n_eigs"] == 8
    expected = np.linalg.svd(conv.weight.detach().double().numpy().reshape(8, 15), compute_uv=False)
    np.testing.assert_allclose(first["singular_values"], expected, rtol=1e-10)
    assert last["matrix_shape"] == [4, 96] and out["n_layers"] == 2


def test_rank_deficient_layer_fits_only_positive_eigenvalues():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((80, 15)) @ rng.standard_normal((15, 60))
    (layer,) = Weights().run(with_weight(w), BATCH)["layers"]
    assert layer["n_eigs"] == 60
    assert layer["alpha"] is not None and np.isfinite(layer["alpha"])
    assert layer["alpha_n_tail"] <= 15


def test_model_is_left_bit_for_bit_unchanged():
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(24, 3))
    model.train()
    model[1].eval()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    Weights().run(model, BATCH)
    assert [m.training for m in model.modules()] == modes
    assert not model[0].weight.requires_grad and model[3].weight.requires_grad
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) and v.dtype == before[k].dtype, k


def test_model_without_layers_is_an_error():
    with pytest.raises(ProbeError, match="no nn.Linear"):
        Weights().run(nn.Sequential(nn.ReLU()), BATCH)


def test_non_finite_weights_are_an_error():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    with pytest.raises(ProbeError, match="layer '1' has NaN"):
        Weights().run(model, BATCH)
