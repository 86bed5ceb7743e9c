"""Neural-collapse probe against hand-built geometries and direct numpy computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from depthlab import ArchSpec, DataSpec, ProbeError, RunSpec, TrainSpec, build_model, load_data, run
from depthlab import _registry as reg
from depthlab.probes import Collapse, ProbeBatch


def simplex_etf(c: int, d: int, seed: int = 0) -> np.ndarray:
    """(d, C) simplex ETF: unit columns with pairwise inner products −1/(C−1), in a random
    C-dimensional subspace of ℝᵈ."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((d, c)))
    return u @ (np.sqrt(c / (c - 1)) * (np.eye(c) - np.ones((c, c)) / c))


def lookup_model(features: np.ndarray, classifier: np.ndarray) -> nn.Module:
    """One-hot class input → features[:, class] (a bias-free Linear) → classifier (K, d)."""
    d, c = features.shape
    embed = nn.Linear(c, d, bias=False)
    head = nn.Linear(d, classifier.shape[0], bias=False)
    with torch.no_grad():
        embed.weight.copy_(torch.as_tensor(features))
        head.weight.copy_(torch.as_tensor(classifier))
    return nn.Sequential(embed, head)


def one_hot_batch(labels: np.ndarray, c: int) -> ProbeBatch:
    y = torch.as_tensor(labels, dtype=torch.long)
    return ProbeBatch.from_tensors(nn.functional.one_hot(y, c).float(), y)


def test_registered():
    assert reg.PROBES.get("collapse") is Collapse


def test_simplex_etf_with_self_dual_classifier_is_fully_collapsed():
    c, d = 5, 8
    m = simplex_etf(c, d)
    labels = np.repeat(np.arange(c), 7)
    out = Collapse().run(lookup_model(m, m.T), one_hot_batch(labels, c))
    assert out["nc1"] < 1e-12  # zero within-class variance
    assert out["nc2"] < 1e-5  # float32 features
    assert out["nc3"] < 1e-5
    assert out["nc4"] == 1.0
    assert out["equinorm"] < 1e-5
    assert out["n_classes"] == c and out["n_samples"] == len(labels)
    assert out["class_sizes"] == [7] * c
    assert out["size_norm_spearman"] is None  # balanced: ρ undefined
    # Off-diagonal cosines of a simplex ETF are −1/(C−1).
    cos = np.array(out["mean_cosines"])
    np.testing.assert_allclose(cos[~np.eye(c, dtype=bool)], -1 / (c - 1), atol=1e-5)
    json.dumps(out, allow_nan=False)


def test_nc3_is_scale_invariant_and_detects_a_mismatched_classifier():
    c, d = 4, 6
    m = simplex_etf(c, d, seed=1)
    batch = one_hot_batch(np.repeat(np.arange(c), 3), c)
    assert Collapse().run(lookup_model(m, 3.0 * m.T), batch)["nc3"] < 1e-5
    shuffled = Collapse().run(lookup_model(m, m.T[[1, 2, 3, 0]]), batch)
    assert shuffled["nc3"] > 1.0
    assert shuffled["nc4"] == 0.0  # every sample is classified as another class


def test_random_features_are_far_from_collapse():
    # 6 classes in 4 dimensions: no simplex ETF fits (it needs C − 1 = 5), so NC2 stays away
    # from 0 whatever the sample.
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(600, 4, generator=g), torch.randint(0, 6, (600,), generator=g)
    model = nn.Sequential(nn.Identity(), nn.Linear(4, 6))
    out = Collapse().run(model, ProbeBatch.from_tensors(x, y))
    assert out["nc1"] > 50.0
    assert out["nc2"] > 1.5
    assert out["nc4"] < 0.5


def reference_nc(h: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Papyan et al.'s definitions, computed the obvious way with d×d matrices."""
    classes = np.unique(y)
    c = len(classes)
    mu_g = h.mean(0)
    means = np.stack([h[y == k].mean(0) for k in classes])
    sw = sum(np.outer(v - means[y[i]], v - means[y[i]]) for i, v in enumerate(h)) / len(h)
    sb = sum(np.outer(mu - mu_g, mu - mu_g) for mu in means) / c
    # Σ_B has rank C − 1: invert only its nonzero eigenvalues.
    evals, evecs = np.linalg.eigh(sb)
    keep = evals > 1e-10 * evals.max()
    sb_pinv = (evecs[:, keep] / evals[keep]) @ evecs[:, keep].T
    nearest = np.argmin(np.linalg.norm(h[:, None, :] - means[None], axis=2), axis=1)
    mhat = np.stack([(mu - mu_g) / np.linalg.norm(mu - mu_g) for mu in means], axis=1)
    return {
        "nc1": float(np.trace(sw @ sb_pinv) / c),
        "nc3": float(np.linalg.norm(w / np.linalg.norm(w) - mhat.T / np.linalg.norm(mhat))),
        "nc4": float(np.mean(np.argmax(h @ w.T + b, axis=1) == nearest)),
        "nc2": float(
            np.linalg.norm(mhat.T @ mhat - c / (c - 1) * (np.eye(c) - np.ones((c, c)) / c))
        ),
    }


def test_metrics_match_direct_numpy_computation_on_random_imbalanced_data():
    rng = np.random.default_rng(3)
    c, d = 4, 12
    sizes = [10, 25, 40, 60]
    y = np.repeat(np.arange(c), sizes)
    h = rng.standard_normal((c, d))[y] * 1.5 + rng.standard_normal((len(y), d))
    head = nn.Linear(d, c)
    model = nn.Sequential(nn.Identity(), head)
    batch = ProbeBatch.from_tensors(torch.tensor(h, dtype=torch.float32), torch.as_tensor(y))
    out = Collapse().run(model, batch)
    h32 = h.astype(np.float32).astype(np.float64)  # what the model sees
    ref = reference_nc(
        h32, y, head.weight.detach().double().numpy(), head.bias.detach().double().numpy()
    )
    for key in ("nc1", "nc2", "nc3", "nc4"):
        assert out[key] == pytest.approx(ref[key], rel=1e-8), key
    assert out["class_sizes"] == sizes
    assert 0.0 < out["nc1"] and out["nc4"] < 1.0


def test_orthogonal_means_ordered_by_class_size():
    # Dang et al. 2023: bias-free MSE on imbalanced classes gives orthogonal means whose norms
    # grow with class size.
    c, d = 4, 6
    sizes = np.array([5, 10, 20, 40])
    means = np.zeros((d, c))
    means[np.arange(c), np.arange(c)] = [1.0, 1.5, 2.5, 4.0]
    labels = np.repeat(np.arange(c), sizes)
    out = Collapse().run(lookup_model(means, means.T), one_hot_batch(labels, c))
    assert out["max_offdiag_cosine"] < 1e-7
    assert out["size_norm_spearman"] == pytest.approx(1.0)
    np.testing.assert_allclose(out["mean_norms"], [1.0, 1.5, 2.5, 4.0], rtol=1e-6)
    assert out["class_sizes"] == sizes.tolist()
    reverse = lookup_model(means[:, ::-1].copy(), means[:, ::-1].T.copy())
    assert Collapse().run(reverse, one_hot_batch(labels, c))["size_norm_spearman"] == (
        pytest.approx(-1.0)
    )


def test_named_classifier_chunking_and_absent_classes():
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 8), nn.Tanh(), nn.Linear(8, 5))
    x, y = torch.randn(90, 6, generator=g), torch.randint(0, 3, (90,), generator=g)  # 3 of 5
    batch = ProbeBatch.from_tensors(x, y)
    whole = Collapse().run(model, batch)
    assert whole["classifier"] == "4" and whole["n_classes"] == 3 and whole["n_features"] == 8
    chunked = Collapse(Collapse.Params(chunk_size=7)).run(model, batch)
    for key in ("nc1", "nc2", "nc3", "nc4"):
        assert chunked[key] == pytest.approx(whole[key], rel=1e-6)
    named = Collapse(Collapse.Params(classifier="2")).run(model, batch)
    assert named["classifier"] == "2" and named["n_features"] == 10


@pytest.mark.parametrize(
    ("model", "x", "y", "match"),
    [
        (nn.Sequential(nn.Linear(3, 1)), torch.randn(8, 3), torch.randn(8, 1), "classification"),
        (nn.Sequential(nn.Flatten()), torch.randn(8, 3), torch.arange(8) % 2, "no.*Linear|none"),
        (
            nn.Sequential(nn.Linear(3, 2)),
            torch.randn(8, 3),
            torch.zeros(8, dtype=torch.long),
            "at least 2 classes",
        ),
        (nn.Sequential(nn.Linear(3, 2)), torch.randn(8, 3), torch.arange(8) % 4, "2 outputs"),
    ],
)
def test_errors(model, x, y, match):
    with pytest.raises(ProbeError, match=match):
        Collapse().run(model, ProbeBatch.from_tensors(x, y))


def test_non_finite_features_are_an_error():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].bias[0] = float("inf")
    with pytest.raises(ProbeError, match="NaN/inf"):
        Collapse().run(model, ProbeBatch.from_tensors(torch.randn(6, 3), torch.arange(6) % 2))


def test_unknown_classifier_name_lists_the_linear_layers():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    batch = ProbeBatch.from_tensors(torch.randn(6, 3), torch.arange(6) % 2)
    with pytest.raises(ProbeError, match="nn.Linear modules: 0, 2"):
        Collapse(Collapse.Params(classifier="head")).run(model, batch)
    with pytest.raises(ProbeError, match="is a ReLU"):
        Collapse(Collapse.Params(classifier="1")).run(model, batch)


def test_model_is_left_as_found():
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Collapse().run(model, ProbeBatch.from_tensors(torch.randn(30, 5), torch.arange(30) % 3))
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_training_to_zero_error_reduces_within_class_variability():
    spec = RunSpec(
        arch=ArchSpec(depth=2, width=64),
        data=DataSpec(name="digits"),
        train=TrainSpec(epochs=60, lr=1e-3, weight_decay=5e-4, batch_size=64),
    )
    data = load_data(spec.data)
    batch = ProbeBatch.from_tensors(data.x_train, data.y_train)
    init = build_model(
        spec.arch, in_shape=data.in_shape, out_dim=data.out_dim, seed=spec.train.seed
    )
    before = Collapse().run(init, batch)
    result = run(spec, progress=False)
    assert result.metrics["train_accuracy"] > 0.99
    after = Collapse().run(result.model, batch)
    assert after["nc1"] < 0.25 * before["nc1"]
    assert after["nc4"] > 0.95 > before["nc4"]
