"""The hessian probe against dense oracles on tiny models (≤ 2k parameters).

Oracle: ``torch.autograd.functional.hessian`` of the mean loss as a function of the flattened
parameters, on a float64 copy of the model in eval mode, and ``torch.linalg.eigvalsh``.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch.func import functional_call
from torch.nn import functional as F

from depthlab import ArchSpec, ProbeError, SpecError, build_model
from depthlab import _registry as reg
from depthlab.probes import HessianProbe, ProbeBatch, lanczos
from depthlab.probes.hessian import HessianParams
from depthlab.probes.hvp import HessianOperator, model_loss

MODELS = {
    "mlp": (ArchSpec(family="mlp", depth=2, width=16, act="tanh"), (8,)),
    "resmlp_layernorm": (
        ArchSpec(
            family="resmlp", depth=2, width=12, norm="layer", residual="fixed", residual_alpha=0.5
        ),
        (8,),
    ),
    "cnn1d": (ArchSpec(family="cnn1d", depth=2, width=6, kernel=3, stride=2, padding=1), (16,)),
}
N_SAMPLES, N_CLASSES = 96, 3


def make_batch(in_shape: tuple[int, ...], seed: int = 1) -> ProbeBatch:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N_SAMPLES, *in_shape, generator=gen)
    return ProbeBatch.from_tensors(x, torch.randint(0, N_CLASSES, (N_SAMPLES,), generator=gen))


def dense_hessian(model: torch.nn.Module, batch: ProbeBatch) -> torch.Tensor:
    """The oracle: float64, eval mode, parameters flattened in ``named_parameters`` order."""
    ref = copy.deepcopy(model).double().eval()
    named = list(ref.named_parameters())

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for name, p in named:
            params[name] = flat[i : i + p.numel()].view_as(p)
            i += p.numel()
        return F.cross_entropy(functional_call(ref, params, (batch.x.double(),)), batch.y)

    theta = torch.cat([p.detach().reshape(-1) for _, p in named])
    return torch.autograd.functional.hessian(loss, theta)


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    spec, in_shape = MODELS[request.param]
    model = build_model(spec, in_shape=in_shape, out_dim=N_CLASSES, seed=3)
    batch = make_batch(in_shape)
    hess = dense_hessian(model, batch)
    assert hess.shape[0] <= 2000
    return model, batch, hess, torch.linalg.eigvalsh(hess).flip(0)


def probe(**params) -> HessianProbe:
    return HessianProbe(HessianParams(**params))


# -- spec and registry -----------------------------------------------------------------------------
def test_registered_and_params_round_trip():
    assert reg.PROBES.get("hessian") is HessianProbe
    p = HessianParams(top_k=3, trace_method="hutchinson", trace_products=10)
    assert HessianParams.from_dict(p.to_dict()) == p


@pytest.mark.parametrize(
    "bad",
    [
        {"method": "newton"},
        {"estimators": ["eigenvalues", "curvature"]},
        {"trace_products": 5},
        {"tol": 0.0},
        {"eig_tol": 1.0},
        {"eig_tol": None},
        {"confidence": 1.0},
        {"top_k": 0},
        {"dtype": "float16"},
        {"steps": 3},
    ],
)
def test_params_reject_bad_values(bad):
    with pytest.raises(SpecError):
        HessianParams.from_dict(bad)


# -- Hessian–vector products -----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["double_backward", "forward_over_reverse"])
@pytest.mark.parametrize("batched", ["never", "always"])
def test_hvp_matches_dense(case, method, batched):
    model, batch, hess, _ = case
    op = HessianOperator(
        *model_loss(model.eval(), batch, torch.float64), method=method, batched=batched
    )
    v = torch.randn(3, hess.shape[0], dtype=torch.float64)
    exact = v @ hess  # H is symmetric: rows of (H Vᵀ)ᵀ
    assert (op(v) - exact).abs().max() <= 1e-10 * exact.abs().max()
    assert op.products == 3
    assert op.used() == method + ("/batched" if batched == "always" else "")


def test_auto_times_one_product_of_each_and_keeps_the_fastest(case):
    model, batch, hess, _ = case
    op = HessianOperator(*model_loss(model.eval(), batch, torch.float64), batched="auto")
    v = torch.randn(8, hess.shape[0], dtype=torch.float64)
    out = torch.cat([op(v[:1]), op(v[1:2]), op(v[2:5]), op(v[5:])])  # singles, then blocks
    assert (out - v @ hess).abs().max() <= 1e-10 * (v @ hess).abs().max()
    times = op.timings()
    assert set(times) == {
        "double_backward",
        "forward_over_reverse",
        "double_backward/batched",
        "forward_over_reverse/batched",
    }
    assert op.products == 8 and sum(op.counts.values()) == 8
    assert op.counts[("forward_over_reverse", False)] == 1  # one trial product, no more
    assert op._best(1)[0] == min(["double_backward", "forward_over_reverse"], key=times.get)


# -- top eigenvalues -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["model", "float64"])
def test_top_eigenvalues_match_dense(case, dtype):
    model, batch, _, eig = case
    out = probe(estimators=["eigenvalues"], top_k=4, dtype=dtype).run(model, batch, seed=0)
    top = torch.tensor(out["top_eigenvalues"], dtype=torch.float64)
    assert out["converged"] and out["lanczos_steps"] == out["hvp_count"]
    assert torch.all(top[:-1] >= top[1:])
    assert torch.allclose(top, eig[:4], rtol=1e-4, atol=0)
    bounds = torch.tensor(out["top_error_bounds"], dtype=torch.float64)
    residuals = torch.tensor(out["top_residuals"], dtype=torch.float64)
    assert torch.all(bounds <= 1e-4) and torch.all(bounds <= residuals)
    if dtype == "float64":  # the error bound holds (up to the products' rounding)
        assert torch.all((top - eig[:4]).abs() <= bounds * top.abs() + 1e-12 * eig[0])


def test_lanczos_on_a_known_spectrum():
    gen = torch.Generator().manual_seed(0)
    n = 200
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([10.0, 9.9, 9.8]), torch.linspace(-3, 5, n - 3)])
    a = (u * spectrum.double()) @ u.T
    top = lanczos.top_eigenvalues(lambda v: v @ a, n, 3, tol=1e-10, max_steps=n, generator=gen)
    assert top.converged and max(top.residuals) <= 1e-10
    assert torch.allclose(
        torch.tensor(top.values, dtype=torch.float64), spectrum[:3].double(), rtol=1e-9, atol=0
    )
    short = lanczos.top_eigenvalues(lambda v: v @ a, n, 3, tol=1e-12, max_steps=4, generator=gen)
    assert not short.converged and short.steps == 4 and len(short.values) == 3


def moderate_gap(seed: int, n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """A random symmetric matrix with spectrum 10, 9, 8.5 above a bulk on [-2, 7]."""
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    spectrum = torch.cat(
        [
            torch.tensor([10.0, 9.0, 8.5], dtype=torch.float64),
            torch.linspace(-2, 7, n - 3, dtype=torch.float64),
        ]
    )
    return (u * spectrum) @ u.T, spectrum


@pytest.mark.parametrize("k", [1, 3])
def test_eigenvalue_error_bound_holds_and_meets_eig_tol(k):
    for seed in range(5):
        a, spectrum = moderate_gap(seed)
        gen = torch.Generator().manual_seed(seed)
        for eig_tol in (1e-4, 1e-8):
            top = lanczos.top_eigenvalues(
                lambda v, a=a: v @ a, len(a), k, eig_tol=eig_tol, max_steps=100, generator=gen
            )
            values = torch.tensor(top.values, dtype=torch.float64)
            bounds = torch.tensor(top.error_bounds, dtype=torch.float64)
            error = (values - spectrum[:k]).abs()
            assert top.converged and len(values) == k
            assert torch.all(error <= bounds * values.abs() + 1e-13)  # the bound bounds the error
            assert torch.all(error <= eig_tol * spectrum[:k])  # so the truth is within eig_tol
            assert torch.all(bounds <= torch.tensor(top.residuals, dtype=torch.float64))


def test_eigenvalue_bound_stops_before_the_residual_rule_at_equal_accuracy():
    steps = {"eig_tol": 0, "tol": 0}
    for seed in range(5):
        a, spectrum = moderate_gap(seed)
        for rule in steps:
            gen = torch.Generator().manual_seed(seed)
            top = lanczos.top_eigenvalues(
                lambda v, a=a: v @ a, len(a), 1, max_steps=100, generator=gen, **{rule: 1e-8}
            )
            assert top.converged and abs(top.values[0] - 10.0) <= 1e-8 * 10.0
            steps[rule] += top.steps
    assert steps["eig_tol"] <= 0.8 * steps["tol"]  # measured: 85 against 123 products


def test_the_gap_bound_needs_a_gap():
    alpha = torch.tensor([3.0], dtype=torch.float64)
    beta = torch.tensor([0.5], dtype=torch.float64)
    _, residuals, bounds = lanczos.ritz_bounds(alpha, beta, 1)  # one Ritz value: no gap known
    assert bounds.tolist() == residuals.tolist() == [0.5 / 3.0]
    # a neighbour whose own residual is large cannot make a gap: the bound stays the residual
    alpha, beta = torch.tensor([3.0, 1.0], dtype=torch.float64), torch.tensor([0.1, 5.0])
    _, residuals, bounds = lanczos.ritz_bounds(alpha, beta.double(), 2)
    assert torch.equal(bounds, residuals)
    with pytest.raises(ValueError, match="tol"):
        lanczos.top_eigenvalues(
            lambda v: v, 3, 1, max_steps=3, generator=torch.Generator().manual_seed(0)
        )


class WithUnused(torch.nn.Module):
    """A model with a parameter its forward never uses (its Hessian rows are zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(8, N_CLASSES)
        self.unused = torch.nn.Parameter(torch.randn(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.tanh(x))


def test_every_method_and_block_gives_the_same_numbers_even_with_an_unused_parameter():
    model, batch = WithUnused(), make_batch((8,))
    params = dict(top_k=2, trace_products=9, slq_probes=3, slq_steps=5, dtype="float64")
    runs = {
        (method, block): probe(method=method, block=block, **params).run(model, batch, seed=4)
        for method in ("auto", "double_backward", "forward_over_reverse")
        for block in (1, 3)
    }
    reference = runs["double_backward", 1]
    assert reference["n_params"] == 8 * N_CLASSES + N_CLASSES + 5
    for out in runs.values():
        for key in ("top_eigenvalues", "trace"):
            assert out[key] == pytest.approx(reference[key], rel=1e-9, abs=1e-12)
        assert out["hvp_count"] == reference["hvp_count"]
    assert runs["auto", 3]["hvp_seconds"].keys() == {
        "double_backward",
        "forward_over_reverse",
        "double_backward/batched",
        "forward_over_reverse/batched",
    }


def test_a_loss_linear_in_the_parameters_has_a_zero_hessian():
    model = build_model(ArchSpec(family="mlp", depth=0), in_shape=(8,), out_dim=N_CLASSES)
    batch = make_batch((8,))
    linear = ProbeBatch(batch.x, batch.y, lambda out, y: out.mean(), "regression")
    out = probe(top_k=2, trace_products=6, slq_probes=2, slq_steps=5).run(model, linear)
    assert out["top_eigenvalues"] == [0.0, 0.0] and out["converged"]
    assert out["trace"] == 0.0 and out["trace_ci"] == [0.0, 0.0]
    assert (
        abs(
            sum(out["density"]["values"]) * (out["density"]["grid"][1] - out["density"]["grid"][0])
            - 1
        )
        < 1e-3
    )


def test_probe_errors_name_the_problem():
    model = build_model(ArchSpec(family="mlp", depth=1, width=4), in_shape=(8,), out_dim=N_CLASSES)
    batch = make_batch((8,))
    nan = ProbeBatch(batch.x * float("nan"), batch.y, batch.loss_fn)
    with pytest.raises(ProbeError, match="finite"):
        probe().run(model, nan)
    with pytest.raises(ProbeError, match="empty"):
        probe().run(model, batch.head(0))
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ProbeError, match="no trainable parameters"):
        probe().run(model, batch)


# -- trace -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_unbiased_with_honest_interval(method):
    spec, in_shape = MODELS["resmlp_layernorm"]
    model = build_model(spec, in_shape=in_shape, out_dim=N_CLASSES, seed=3)
    batch = make_batch(in_shape)
    exact = float(torch.trace(dense_hessian(model, batch)))
    p = probe(
        estimators=["trace"], trace_method=method, trace_products=30, method="double_backward"
    )
    runs = [p.run(model, batch, seed=s) for s in range(40)]
    values = torch.tensor([r["trace"] for r in runs], dtype=torch.float64)
    assert abs(float(values.mean()) - exact) <= 4 * float(values.std()) / math.sqrt(40)
    covered = sum(r["trace_ci"][0] <= exact <= r["trace_ci"][1] for r in runs)
    assert covered >= 34  # ≥ 85% of 40 for a 95% interval
    assert all(r["trace_method"] == method and r["hvp_count"] == 30 for r in runs)


def test_auto_trace_is_exact_by_products_when_they_are_cheap():
    """LayerNorm + residual (not piecewise linear): P products give tr H to rounding, and
    auto takes them when they fit in ``exact_seconds``; Hutch++ when they do not."""
    spec, in_shape = MODELS["resmlp_layernorm"]
    model = build_model(spec, in_shape=in_shape, out_dim=N_CLASSES, seed=3)
    batch = make_batch(in_shape)
    exact = float(torch.trace(dense_hessian(model, batch)))
    n = sum(p.numel() for p in model.parameters())
    out = probe(estimators=["trace"], dtype="float64").run(model, batch)
    assert out["trace_method"] == "exact" and out["hvp_count"] == n
    assert f"exact by {n} Hessian-vector products" in out["trace_note"]
    assert out["trace"] == pytest.approx(exact, rel=1e-9)
    assert out["trace_ci"] == [out["trace"], out["trace"]]
    cheap = probe(estimators=["trace"], exact_seconds=0.0, trace_products=30).run(model, batch)
    # the first 32 products time the implementations; then the rest would not fit
    assert cheap["trace_method"] == "hutch++" and cheap["hvp_count"] == 32 + 30


def test_hutchpp_beats_hutchinson_on_a_decaying_spectrum():
    gen = torch.Generator().manual_seed(0)
    n, m = 300, 60
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    a = (u / torch.arange(1, n + 1, dtype=torch.float64) ** 2) @ u.T
    exact = float(torch.trace(a))
    err = {"hutchinson": [], "hutch++": []}
    for _ in range(30):
        err["hutchinson"].append(lanczos.hutchinson(lambda v: v @ a, n, m, generator=gen).value)
        err["hutch++"].append(lanczos.hutchpp(lambda v: v @ a, n, m, generator=gen).value)
    rms = {k: math.sqrt(sum((x - exact) ** 2 for x in v) / len(v)) for k, v in err.items()}
    assert rms["hutch++"] < 0.25 * rms["hutchinson"]


# -- spectral density ------------------------------------------------------------------------------
def test_slq_density_integrates_to_one_with_mean_trace_over_n(case):
    model, batch, hess, eig = case
    n, probes = hess.shape[0], 16
    out = probe(estimators=["density"], slq_probes=probes, slq_steps=30, dtype="float64").run(
        model, batch, seed=0
    )
    grid = torch.tensor(out["density"]["grid"], dtype=torch.float64)
    values = torch.tensor(out["density"]["values"], dtype=torch.float64)
    assert values.min() >= 0 and abs(float(torch.trapezoid(values, grid)) - 1) < 1e-6
    mean = float(torch.trapezoid(values * grid, grid))
    # the density's mean is the average of vᵀHv over the unit Rademacher probes: exact variance
    stderr = math.sqrt(2 * (float((hess**2).sum()) - float((hess.diagonal() ** 2).sum())) / probes)
    assert abs(mean - float(eig.sum()) / n) <= 4 * stderr / n
    assert grid[0] < eig[-1] and grid[-1] > eig[0]  # the grid covers the whole spectrum
    assert out["hvp_count"] == probes * 30


def test_slq_keeps_at_most_m_vectors_per_probe_and_survives_breakdown(monkeypatch):
    sizes = []
    original = lanczos._Basis.append

    def append(self, q):
        original(self, q)
        sizes.append(sum(c.shape[1] for c in self.chunks))

    monkeypatch.setattr(lanczos._Basis, "append", append)
    a = torch.diag(torch.tensor([5.0] * 10 + [2.0] * 10 + [0.0] * 30, dtype=torch.float64))
    gen = torch.Generator().manual_seed(0)
    nodes, weights = lanczos.slq(lambda v: v @ a, 50, 3, 10, generator=gen, block=2)
    assert max(sizes) == 10 and nodes.shape == weights.shape == (3, 10)
    assert torch.allclose(weights.sum(1), torch.ones(3, dtype=torch.float64))
    weighted = nodes[weights > 1e-12]  # breakdown after 3 steps: later blocks carry no weight
    assert torch.all(torch.stack([(weighted - e).abs() for e in (5.0, 2.0, 0.0)]).amin(0) < 1e-9)


# -- the probe as a whole --------------------------------------------------------------------------
def test_probe_output_is_json_safe_and_counts_products():
    spec, in_shape = MODELS["mlp"]
    model = build_model(spec, in_shape=in_shape, out_dim=N_CLASSES)
    out = probe(top_k=2, trace_products=12, slq_probes=2, slq_steps=8, exact_seconds=0.0).run(
        model, make_batch(in_shape)
    )
    json.dumps(out, allow_nan=False)
    assert out["n_params"] == sum(p.numel() for p in model.parameters())
    assert out["n_samples"] == N_SAMPLES
    assert out["hvp_count"] == out["lanczos_steps"] + 12 + 2 * 8
    assert out["trace_ci"][0] <= out["trace"] <= out["trace_ci"][1]
    assert len(out["density"]["grid"]) == len(out["density"]["values"]) == 201
    assert out["method"].split("/")[0] in ("double_backward", "forward_over_reverse")


def test_probe_restores_the_model_bit_for_bit_and_measures_in_eval_mode():
    spec = ArchSpec(family="mlp", depth=2, width=16, dropout=0.2)
    model = build_model(spec, in_shape=(8,), out_dim=N_CLASSES, seed=5)
    batch = make_batch((8,))
    model.train()
    model[1].eval()  # a mixed-mode model
    frozen = model[0][0].bias
    frozen.requires_grad_(False)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn_like(p)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    modes = [m.training for m in model.modules()]

    out = probe(estimators=["eigenvalues"], top_k=1, dtype="float64", eig_tol=1e-11).run(
        model, batch, seed=0
    )

    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for p, g in zip(model.parameters(), grads, strict=True):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert not frozen.requires_grad and all(
        p.requires_grad for p in model.parameters() if p is not frozen
    )
    # the frozen bias is a constant; dropout is off (eval mode), else Lanczos would not match
    full = dense_hessian(model, batch)
    keep = torch.ones(full.shape[0], dtype=torch.bool)
    offset = 0
    for p in model.parameters():
        if p is frozen:
            keep[offset : offset + p.numel()] = False
        offset += p.numel()
    top = float(torch.linalg.eigvalsh(full[keep][:, keep])[-1])
    assert out["n_params"] == int(keep.sum())
    assert out["top_eigenvalues"][0] == pytest.approx(top, rel=1e-9)
