"""Probes on modules that are not depthlab's: layers found by their weight, roles across depth,
batch dimensions that are not first, the mode policy, token inputs, per-token heads, and
Hessian products by what works."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from depthlab import ProbeError
from depthlab.probes import Collapse, HessianProbe, ProbeBatch
from depthlab.probes.base import frozen_statistics, set_mode
from depthlab.probes.gradients import GradientsProbe
from depthlab.probes.hessian import HessianParams
from depthlab.probes.jacobian import JacobianProbe
from depthlab.probes.layers import (
    batch_layout,
    coverage,
    per_sample,
    role,
    role_group,
    weight_layers,
)
from depthlab.probes.signal import SignalProbe


class Conv1D(nn.Module):
    """HuggingFace GPT-2's layout: ``weight`` is (in, out), y = x W + b."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_in, d_out) / d_in**0.5)
        self.bias = nn.Parameter(torch.zeros(d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class Block(nn.Module):
    """A residual block whose first layer (``query``) has almost no gradient at init."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.query = nn.Linear(d, d)
        nn.init.normal_(self.query.weight, std=1e-4)
        self.mlp = Conv1D(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = 1 + 1e-3 * torch.tanh(self.query(x))
        return x + self.out(torch.relu(self.mlp(x * gate)))


class Tiny(nn.Module):
    def __init__(self, d: int = 8, blocks: int = 3, classes: int = 3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(d) for _ in range(blocks))
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def _batch(n: int = 32, d: int = 8, seed: int = 0) -> ProbeBatch:
    gen = torch.Generator().manual_seed(seed)
    return ProbeBatch.from_tensors(
        torch.randn(n, d, generator=gen), torch.randint(0, 3, (n,), generator=gen)
    )


def test_any_module_with_a_matrix_weight_is_a_layer_and_coverage_counts_it():
    torch.manual_seed(0)
    model = Tiny()
    names = [n for n, _ in weight_layers(model)]
    assert "blocks.0.mlp" in names and "head" in names and len(names) == 10
    c = coverage(model)
    total = sum(p.numel() for p in model.parameters())
    assert c["params_total"] == total and c["params_covered"] == total and c["fraction"] == 1
    assert c["layer_types"] == ["Conv1D", "Linear"]
    norm = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))  # a 1-D weight is not a layer
    assert [n for n, _ in weight_layers(norm)] == ["0"]
    assert coverage(norm)["fraction"] == pytest.approx(20 / 28)
    out = GradientsProbe().run(model, _batch())
    assert "blocks.2.mlp" in [r["name"] for r in out["layers"]]


def test_roles_compare_the_same_job_across_depth():
    assert role("enc.layer.11.attn.q") == "enc.layer.*.attn.q"
    assert role("blocks.2.0") == "blocks.*.0" and role("3") == "3"
    calls = ["emb", "b.0.q", "b.0.mlp", "b.0.out", "b.1.q", "b.1.mlp", "b.1.out", "head"]
    assert role_group(calls) == ("b.*.out", 3, 6)
    assert role_group(["a", "b"]) == (None, 0, 1)  # nothing repeats: first and last
    # a plain MLP: the hidden layers ("0.0", "1.0", ...) form the role; the readout is apart
    assert role_group(["0.0", "1.0", "2.0", "3"]) == ("*.0", 0, 2)


def test_gradient_and_signal_trends_use_the_role_not_the_first_linear():
    """The first Linear in module order (a query with ~1e-4 weights) has a tiny gradient; the
    old first/last rule called that vanishing. Same-role layers are balanced."""
    torch.manual_seed(0)
    model, batch = Tiny(), _batch()
    out = GradientsProbe().run(model, batch)
    rows = {r["name"]: r for r in out["layers"]}
    assert out["role"] == "blocks.*.out"
    assert out["role_layers"] == ["blocks.0.out", "blocks.2.out"]
    expect = rows["blocks.0.out"]["delta_norm"] / rows["blocks.2.out"]["delta_norm"]
    assert out["delta_first_to_last"] == pytest.approx(expect, rel=1e-12)
    assert 0.1 < out["delta_first_to_last"] < 10
    naive = rows["blocks.0.query"]["delta_norm"] / rows["head"]["delta_norm"]
    assert naive < 1e-3  # what first-and-last in module order would have reported
    sig = SignalProbe().run(model, batch)
    moments = {r["name"]: r["second_moment"] for r in sig["layers"]}
    assert sig["role"] == "blocks.*.out"
    assert sig["second_moment_ratio"] == pytest.approx(
        moments["blocks.2.out"] / moments["blocks.0.out"], rel=1e-12
    )


def test_batch_layouts():
    n = 4
    assert batch_layout((4, 7, 3), n) == "first"
    assert batch_layout((16, 5, 3), n) == "blocks"  # N · windows, batch-major
    assert batch_layout((7, 4, 3), n) == "dim:1"  # sequence-first
    assert batch_layout((1, 7, 3), n) is None  # a position embedding: no batch
    t = torch.arange(7 * 4 * 3).reshape(7, 4, 3).float()
    assert torch.equal(per_sample(t, n)[2], t[:, 2].reshape(-1))
    windows = torch.randn(n, 4, 5, 3)  # four windows per sample, flattened batch-major
    assert torch.equal(per_sample(windows.reshape(16, 5, 3), n), windows.reshape(n, -1))
    with pytest.raises(ValueError, match="no batch dimension"):
        per_sample(torch.zeros(1, 7, 3), n)


class Windowed(nn.Module):
    """Swin's layout: the middle layer sees (N · 4 windows, tokens, C); a position table has
    no batch at all."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Embedding(6, 3)
        self.inner = nn.Linear(3, 3)
        self.head = nn.Linear(24, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 24)
        n = len(x)
        table = self.pos(torch.arange(2).unsqueeze(0))  # (1, 2, 3)
        w = x.reshape(n * 4, 2, 3) + table
        return self.head(torch.relu(self.inner(w)).reshape(n, 24))


def test_window_layouts_are_read_per_sample_and_batchless_layers_skipped():
    torch.manual_seed(0)
    model = Windowed()
    batch = _batch(8, 24)
    out = SignalProbe().run(model, batch)
    assert [r["name"] for r in out["layers"]] == ["inner", "head"]
    assert "no batch dimension" in out["skipped_layers"]["pos"]
    with torch.no_grad():
        inner = model.inner(batch.x.reshape(32, 2, 3) + model.pos.weight[:2])
    pairs = inner.reshape(8, -1).double()
    a, b = pairs[0:8:2], pairs[1:8:2]
    corr = ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean().item()
    assert out["layers"][0]["correlation"] == pytest.approx(corr, rel=1e-9)
    jac = JacobianProbe().run(model, batch)
    assert [g["name"] for g in jac["layers"]] == ["inner", "head"]
    assert "no batch dimension" in jac["skipped_layers"]["pos"]


def test_mode_policy_dropout_off_batch_statistics_on():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)
    ).eval()
    batch = _batch()
    a = GradientsProbe().run(model, batch)
    b = GradientsProbe().run(model, batch, seed=1)
    assert a["layers"] == b["layers"]  # no dropout draws: the same numbers at any seed
    # the function training sees, without dropout: batch statistics, by plain autograd
    ref = copy.deepcopy(model).train()
    ref[3].eval()
    F.cross_entropy(ref(batch.x), batch.y).backward()
    assert a["layers"][0]["grad_norm"] == pytest.approx(float(ref[0].weight.grad.norm()), 1e-6)
    assert not model.training  # restored
    c = GradientsProbe().run(model, batch, dropout=True)
    assert c["layers"][0]["grad_norm"] != a["layers"][0]["grad_norm"]
    set_mode(model)
    assert model[1].training and not model[3].training
    model.eval()


def test_frozen_statistics_give_each_sample_the_batch_normalisation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten())
    model[1].running_mean.fill_(5.0)  # untrained running statistics that eval mode would use
    x = torch.randn(10, 2, 7)
    with torch.no_grad():
        train_out = copy.deepcopy(model).train()(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with frozen_statistics(model, x), torch.no_grad():
        singles = torch.cat([model(x[i : i + 1]) for i in range(len(x))])
    assert torch.allclose(singles, train_out, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class NoForwardAD(torch.autograd.Function):
    """x³ with a hand-written backward (twice differentiable) and no forward-mode rule."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205
        (x,) = ctx.saved_tensors
        return g * 3 * x**2


class Cubic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(NoForwardAD.apply(self.a(x)))


def test_hessian_products_fall_back_to_what_works():
    torch.manual_seed(0)
    model = Cubic().double()
    gen = torch.Generator().manual_seed(0)
    batch = ProbeBatch.from_tensors(
        torch.randn(16, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (16,))
    )
    out = HessianProbe(HessianParams(estimators=["eigenvalues", "trace"], top_k=1)).run(
        model, batch
    )
    assert "forward_over_reverse" in out["hvp_failures"]
    assert out["method"].split("/")[0] == "double_backward"
    names = [k for k, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        parts = torch.split(theta, [p.numel() for p in model.parameters()])
        pairs = zip(names, parts, model.parameters(), strict=True)
        params = {k: c.view_as(p) for k, c, p in pairs}
        return F.cross_entropy(functional_call(model, params, (batch.x,)), batch.y)

    dense = torch.autograd.functional.hessian(loss, flat)
    assert out["trace"] == pytest.approx(float(torch.trace(dense)), rel=1e-9)
    top = float(torch.linalg.eigvalsh(dense)[-1])
    assert out["top_eigenvalues"][0] == pytest.approx(top, rel=1e-4)  # eig_tol


class TokenNet(nn.Module):
    """Token ids → embedding (+ a position table) → per-token head; the model's output is the
    last token's (GPT-2's pooling)."""

    def __init__(self, vocab: int = 20, d: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(16, d)
        self.mix = nn.Linear(d, d)
        self.score = nn.Linear(d, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        h = torch.tanh(self.mix(h)).cumsum(1)
        return self.score(h)[:, -1]


def test_token_models_are_differentiated_at_their_embedding():
    torch.manual_seed(0)
    model = TokenNet()
    ids = torch.randint(0, 20, (4, 5))
    out = JacobianProbe().run(model, ProbeBatch.from_tensors(ids, torch.tensor([0, 1, 2, 0])))
    assert out["wrt"] == "output of tok"
    e = model.tok(ids).detach()

    def from_embedding(ei: torch.Tensor) -> torch.Tensor:
        h = ei + model.pos(torch.arange(5))
        return model.score(torch.tanh(model.mix(h)).cumsum(0))[-1]

    sv = []
    for i in range(4):
        jac = torch.autograd.functional.jacobian(from_embedding, e[i]).reshape(3, -1)
        sv.append(torch.linalg.svdvals(jac.double()))
    ref = torch.cat(sv).sort(descending=True).values
    assert torch.allclose(torch.tensor(out["singular_values"], dtype=torch.float64), ref, 1e-5)
    assert out["mean_squared_singular_value"] > 0  # not the all-zero Jacobian of the ids

    class Ids(nn.Module):  # integers in, integers used as floats: nothing to differentiate
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(5, 3)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.lin(ids.float())

    with pytest.raises(ProbeError, match="no module turns it into floats"):
        JacobianProbe().run(Ids(), ProbeBatch.from_tensors(ids, torch.tensor([0, 1, 2, 0])))


def test_per_token_heads_are_pooled_as_the_model_pools():
    torch.manual_seed(0)
    model = TokenNet()
    ids = torch.randint(0, 20, (30, 5))
    y = torch.arange(30) % 3
    out = Collapse().run(model, ProbeBatch.from_tensors(ids, y))
    with torch.no_grad():
        h = torch.tanh(model.mix(model.tok(ids) + model.pos(torch.arange(5)))).cumsum(1)[:, -1]
    means = torch.stack([h[y == c].mean(0) for c in range(3)]).double()
    assert out["mean_norms"] == pytest.approx(means.norm(dim=1).tolist(), rel=1e-5)
    assert out["n_features"] == 6 and out["classifier"] == "score"


class Encoder(nn.Module):
    """nn.TransformerEncoder on token ids: in eval mode under torch.func (whose parameters do
    not require grad) MultiheadAttention takes a fused fast path with no forward-mode AD."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(16, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.emb(ids)).mean(1))


def test_multihead_attention_is_probed_without_its_fast_path():
    torch.manual_seed(0)
    model = Encoder()
    ids = torch.randint(0, 16, (4, 5))
    out = JacobianProbe().run(model, ProbeBatch.from_tensors(ids, torch.tensor([0, 1, 2, 0])))
    assert torch.backends.mha.get_fastpath_enabled()  # restored
    model.eval()  # the mode policy: no batch norm here, dropout off
    e = model.emb(ids).detach()

    def from_embedding(ei: torch.Tensor) -> torch.Tensor:
        return model.head(model.enc(ei.unsqueeze(0)).mean(1))[0]

    sv = torch.cat(
        [
            torch.linalg.svdvals(
                torch.autograd.functional.jacobian(from_embedding, e[i]).reshape(3, -1).double()
            )
            for i in range(4)
        ]
    )
    assert out["mean_squared_singular_value"] == pytest.approx(float(sv.pow(2).mean()), 1e-5)
