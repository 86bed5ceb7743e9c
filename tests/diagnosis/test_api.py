"""``depthlab.diagnose``: one call on a user's own model, optimizer and data."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import depthlab as dl
from depthlab.diagnosis.setup import read_optimizer
from depthlab.exceptions import DataError, ProbeError, SpecError

VERDICTS = ("trainable", "vanishing", "exploding", "collapsed", "diverges", "won't train")


def _mlp(width: int = 32, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(10, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 2))


def _data(n: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 10, generator=gen)
    return x, (x[:, 0] + x[:, 1] > 0).long()


@pytest.fixture(scope="module")
def diagnosed():
    torch.manual_seed(0)
    model = _mlp()
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    d = dl.diagnose(model, loader, optimizer=opt, steps=500)
    return model, before, torch.equal(torch.get_rng_state(), rng), d


def test_one_call_reads_the_users_optimizer_and_budget(diagnosed):
    model, before, rng, d = diagnosed
    assert isinstance(d, dl.Diagnosis)
    assert d.verdict in VERDICTS and 0.0 <= d.p_trains <= 1.0 and d.decided_by
    setup = d.data["setup"]
    assert (setup["optimizer"], setup["lr"], setup["momentum"]) == ("momentum", 0.05, 0.9)
    assert setup["batch_size"] == 32 and not setup["assumed"]
    # 500 steps in whole epochs of the 512 drawn samples (16 steps each)
    assert abs(setup["budget_steps"] - 500) <= 8
    assert d.data["trial"]["budget_steps"] == setup["budget_steps"]
    assert d.data["failed"] == {}
    # a separable task, a healthy net, a sane step: it trains, and the trial saw it
    assert d.verdict == "trainable" and d.data["trial"]["progress"] > 0
    # the model and the caller's random stream are as they were
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert rng  # unmoved


def test_layers_is_a_dataframe_of_every_layer(diagnosed):
    model, _, _, d = diagnosed
    frame = d.layers()
    assert type(frame).__name__ == "DataFrame"
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert list(frame["name"]) == linear
    for col in ("role", "second_moment", "grad_norm", "weight_norm", "gain"):
        assert col in frame.columns and frame[col].notna().all(), col
    w = model[0].weight.detach().double()
    assert frame["weight_norm"][0] == pytest.approx(float(w.norm()), rel=1e-9)
    assert frame["gain"][0] == pytest.approx(10 * float(w.pow(2).mean()), rel=1e-9)
    grads = {r["name"]: r["grad_norm"] for r in d.data["gradients"]["layers"]}
    assert list(frame["grad_norm"]) == [grads[n] for n in linear]


def test_html_repr_and_save(diagnosed, tmp_path):
    _, _, _, d = diagnosed
    page = d._repr_html_()
    assert d.verdict in page and "<table>" in page and "P(trains)" in page
    index = d.save(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "diagnosis.json").read_text())
    assert saved["verdict"] == d.verdict and saved["p_trains"] == d.p_trains
    assert len(saved["layers"]) == len(d.data["layers"])
    assert index.name == "index.html" and d.verdict in index.read_text()
    assert d.to_dict() == d.data and d.to_dict() is not d.data


def test_tensors_dataset_and_loader_give_the_same_diagnosis():
    x, y = _data(200)
    runs = []
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    for data in ((x, y), TensorDataset(x, y), loader, list(zip(x, y, strict=True))):
        torch.manual_seed(0)
        runs.append(dl.diagnose(_mlp(), data, batch_size=32, probes=("signal", "trial")))
    first = runs[0].to_dict()
    for other in runs[1:]:
        assert other.to_dict()["signal"] == first["signal"]
        assert other.to_dict()["trial"]["loss"] == first["trial"]["loss"]
    assert runs[0].data["setup"]["assumed"]  # nothing said about the run


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: torch.optim.SGD(p, lr=0.1), ("sgd", 0.1)),
        (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8), ("momentum", 0.1)),
        (lambda p: torch.optim.Adam(p, lr=3e-4, weight_decay=1e-2), ("adam", 3e-4)),
        (lambda p: torch.optim.AdamW(p, lr=3e-4), ("adamw", 3e-4)),
        (lambda p: torch.optim.NAdam(p, lr=2e-3), ("adam", 2e-3)),
        (lambda p: torch.optim.RMSprop(p, lr=1e-3), ("adam", 1e-3)),
    ],
)
def test_an_optimizer_instance_is_read_by_a_stated_rule(make, expected):
    read = read_optimizer(make(_mlp().parameters()))
    assert (read["optimizer"], read["lr"]) == expected
    if expected[0] == "momentum":
        assert read["momentum"] == 0.8
    if isinstance(make(_mlp().parameters()), torch.optim.Adam):
        assert read["weight_decay"] == 1e-2


def test_a_factory_and_an_unknown_optimizer():
    x, y = _data(64)
    d = dl.diagnose(
        _mlp(), (x, y), optimizer=lambda p: torch.optim.SGD(p, lr=0.02), steps=40, probes="trial"
    )
    assert (d.data["setup"]["optimizer"], d.data["setup"]["lr"]) == ("sgd", 0.02)

    class Sign(torch.optim.Optimizer):
        def __init__(self, params, lr=0.01):  # noqa: ANN001
            super().__init__(params, {"lr": lr})

    with pytest.raises(SpecError, match="cannot read Sign"):
        dl.diagnose(_mlp(), (x, y), optimizer=Sign(_mlp().parameters()))
    with pytest.raises(SpecError, match="choices: sgd, momentum, adam, adamw"):
        dl.diagnose(_mlp(), (x, y), optimizer="lion")
    with pytest.raises(SpecError, match="not both"):
        dl.diagnose(_mlp(), (x, y), steps=10, epochs=2)


class _Output:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class _Returns(nn.Module):
    """A model returning an object with ``.logits``, taking its inputs by keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _mlp()

    def forward(self, features: torch.Tensor, scale: torch.Tensor) -> _Output:
        return _Output(self.net(features * scale[:, None]))


def test_dict_batches_and_model_outputs():
    x, y = _data(96)
    rows = [{"features": x[i], "scale": torch.tensor(1.0), "labels": y[i]} for i in range(96)]
    model = _Returns()
    d = dl.diagnose(model, DataLoader(rows, batch_size=16), probes=("signal", "gradients"))
    assert d.data["failed"] == {} and d.data["skipped"] == {}
    assert [r["name"] for r in d.data["layers"]] == ["net.0", "net.2", "net.4"]
    # the same network on the plain tensors (scale 1) measures the same numbers
    plain = dl.diagnose(model.net, (x, y), probes=("signal", "gradients"))
    for probe, key in (("signal", "second_moment_ratio"), ("gradients", "loss")):
        assert plain.data[probe][key] == pytest.approx(d.data[probe][key], rel=1e-6)


def test_a_custom_loss_and_forward():
    x, y = _data(64)
    seen = []

    def forward(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        seen.append(inputs.shape[1:])
        return model(inputs)

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out, target, label_smoothing=0.1)

    d = dl.diagnose(_mlp(), (x, y), loss=loss, forward=forward, probes=("gradients",))
    assert seen and all(s == (10,) for s in seen)
    plain = dl.diagnose(_mlp(), (x, y), probes=("gradients",))
    assert d.data["gradients"]["loss"] != plain.data["gradients"]["loss"]


def test_bad_input_is_one_clear_error():
    x, y = _data(64)
    with pytest.raises(DataError, match="no samples"):
        dl.diagnose(_mlp(), DataLoader(TensorDataset(x[:0], y[:0]), batch_size=8))
    with pytest.raises(ProbeError, match="rejects inputs of shape"):
        dl.diagnose(_mlp(), (torch.randn(64, 7), y))
    bad = x.clone()
    bad[5, 3] = math.nan
    with pytest.raises(DataError, match="x holds NaN/inf values \\(first at sample 5\\)"):
        dl.diagnose(_mlp(), (bad, y))
    with pytest.raises(DataError, match="has 63 samples but the targets have 64"):
        dl.diagnose(_mlp(), (x[:63], y))
    with pytest.raises(DataError, match="keys: features"):
        dl.diagnose(_mlp(), DataLoader([{"features": x[i]} for i in range(8)], batch_size=4))
    with pytest.raises(dl.DepthlabError, match="must be a torch.nn.Module"):
        dl.diagnose("model", (x, y))  # type: ignore[arg-type]


def test_the_subpackage_never_shadows_the_function():
    """``depthlab.diagnosis`` is the subpackage; importing any of its modules leaves
    ``depthlab.diagnose`` the function, and no ``depthlab.diagnose`` module exists."""
    for name in ("verdict", "run", "advice", "sources", "calibration", "api", "result"):
        importlib.import_module(f"depthlab.diagnosis.{name}")
    assert callable(dl.diagnose) and not isinstance(dl.diagnose, type(dl))
    assert dl.diagnose is importlib.import_module("depthlab.diagnosis.api").diagnose
    assert importlib.util.find_spec("depthlab.diagnose") is None


def test_layers_without_pandas_is_one_line(diagnosed, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    with pytest.raises(dl.MissingDependencyError, match=r'pip install "depthlab\[frames\]"'):
        diagnosed[3].layers()
