"""Device plumbing, checked on the CPU: probes, the trial and the trainer create every tensor on
the model's device, a device string is honoured or refused in one line, never ignored.

The check: run with torch's default device set to ``meta`` while the model and data live on the
CPU. A tensor created without naming its device then lands on ``meta``, and mixing it with the
model's tensors raises (or yields a meta number that cannot be read) — exactly the mistake
that breaks on a GPU. The results must equal those of a plain run.
"""

from __future__ import annotations

import pathlib

import pytest
import torch
from torch import nn

import depthlab as dl
from depthlab import _registry as reg
from depthlab._device import DeviceError, model_device, resolve_device
from depthlab.data import Dataset
from depthlab.diagnosis.run import ALL_PROBES, DiagnoseOptions, _params_for
from depthlab.probes import ProbeBatch
from depthlab.spec import RunSpec, TrainSpec

# wall-clock numbers differ between any two runs, and the Hessian picks its fastest
# implementation (batched or looped products) by them: the same numbers to roundoff
TIMINGS = {"hvp_seconds", "method"}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def _batch(n: int = 64) -> ProbeBatch:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=gen)
    return ProbeBatch.from_tensors(x, torch.randint(0, 3, (n,), generator=gen))


def _same(a: object, b: object) -> bool:
    """Equal, floats to float32 roundoff; keys in ``TIMINGS`` not compared."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(k in TIMINGS or _same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6, abs=1e-12, nan_ok=True)  # float32 products
    return a == b


@pytest.mark.parametrize("name", ALL_PROBES)
def test_every_probe_creates_its_tensors_on_the_models_device(name):
    model, batch = _model(), _batch()
    params = _params_for(name, DiagnoseOptions(ntk_samples=16, batch_size=32))
    if name == "hessian":  # one implementation and the exact trace, whatever the timings say
        params = params.replace(method="double_backward", block=1, exact_seconds=1e6)
    probe = reg.PROBES.get(name)(params)
    plain = probe.run(model, batch, seed=0)
    with torch.device("meta"):  # anything made without a device lands on meta and clashes
        checked = probe.run(model, batch, seed=0)
    assert _same(checked, plain)


def test_the_trainer_creates_its_tensors_on_the_models_device():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 6, generator=gen), torch.randint(0, 3, (96,), generator=gen)
    data = Dataset("toy", "classification", x, y, x[:32], y[:32], x[:32], y[:32], 3)
    noise = ({"name": "gradient_noise", "eta": 0.01},)
    spec = TrainSpec(epochs=2, batch_size=16, techniques=noise, device="cpu")
    plain = dl.fit(_model(), data, spec, progress=False)
    model = _model()
    with torch.device("meta"):
        checked = dl.fit(model, data, spec, progress=False)
    assert checked.history == plain.history and checked.metrics == plain.metrics
    assert model_device(model) == torch.device("cpu")


def test_a_probe_moves_the_batch_to_the_model():
    """A batch on another device string of the same device is moved, not refused."""
    model, batch = _model(), _batch()
    probe = reg.PROBES.get("gradients")()
    moved = probe.run(model, batch.to(torch.device("cpu", 0)), seed=0)
    assert moved == probe.run(model, batch, seed=0)


def test_device_strings():
    assert resolve_device("cpu:0") == torch.device("cpu", 0)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device(None).type == expected
    with pytest.raises(DeviceError, match="unknown device 'gpu'; choices: auto, cpu, cuda"):
        resolve_device("gpu")
    with pytest.raises(DeviceError, match="'meta' cannot run depthlab"):
        resolve_device("meta")


def test_a_missing_cuda_is_an_error_not_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="'cuda:1' is not available on this machine"):
        resolve_device("cuda:1")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match="not available"):
        dl.fit(_model(), _toy(), TrainSpec(epochs=1, device="cuda"), progress=False)


def _toy() -> Dataset:
    x, y = _batch(32).x, _batch(32).y
    return Dataset("toy", "classification", x, y, x, y, x, y, 3)


def test_a_meta_model_is_refused_in_one_line():
    with torch.device("meta"):
        model = _model()
    x, y = _batch().x, _batch().y
    with pytest.raises(DeviceError, match="on the 'meta' device"):
        dl.diagnose(model, (x, y))
    with pytest.raises(DeviceError, match="on the 'meta' device"):
        dl.fit(model, _toy(), TrainSpec(epochs=1), progress=False)
    with pytest.raises(DeviceError, match="on the 'meta' device"):
        reg.PROBES.get("signal")().run(model, _batch())
    with pytest.raises(DeviceError, match="on the 'meta' device"):
        dl.diagnose(model, (x, y), device="cpu")  # never moved: it has no data to move


def test_diagnose_on_a_named_device():
    x, y = _batch().x, _batch().y
    for device in ("cpu:0", torch.device("cpu")):
        d = dl.diagnose(_model(), (x, y), device=device, probes=("signal",))
        assert d.data["device"].startswith("cpu") and d.data["failed"] == {}


def test_train_device_in_run_files_is_checked_but_not_hashed():
    spec = RunSpec()
    on_cpu = spec.replace(train=spec.train.replace(device="cpu"))
    assert on_cpu.content_hash() == spec.content_hash()
    assert RunSpec.from_yaml(on_cpu.to_yaml()).train.device == "cpu"
    with pytest.raises(dl.SpecError, match="device: 'gpu' is not valid; choices: auto, cpu"):
        TrainSpec(device="gpu")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``depthlab ARGS`` in this process (the errors come before any work): exit code and
    stderr."""
    from depthlab.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return int(exit_.value.code or 0), capsys.readouterr().err


def test_cli_device_is_one_clear_line(tmp_path, capsys):
    spec = tmp_path / "run.yaml"
    spec.write_text("arch: {family: mlp, depth: 1, width: 8}\ndata: {name: iris}\n")
    code, err = _cli(capsys, "train", str(spec), "--quiet", "--device", "tpu")
    assert code == 2 and err.strip().splitlines() == [
        "depthlab: error: unknown device 'tpu'; choices: auto, cpu, cuda, cuda:N, mps"
    ]
    code, err = _cli(capsys, "diagnose", "--spec", str(spec), "--device", "meta")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'meta' cannot run depthlab" in err
    sweep = pathlib.Path(__file__).parent.parent / "examples" / "sweep_depth_width.yaml"
    store = tmp_path / "runs.db"
    code, err = _cli(capsys, "sweep", str(sweep), "--store", str(store), "--device", "cuda:7")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'cuda:7' is not available" in err and not store.exists()


def test_a_whole_diagnosis_creates_its_tensors_on_the_models_device():
    """Beyond the probes: the input check, the architecture summary, the stability check of an
    unstable SGD trial and the layer table."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=gen)
    y = torch.randint(0, 3, (128,), generator=gen)
    setup = {"optimizer": "sgd", "lr": 50.0, "steps": 100, "probes": (*ALL_PROBES[:6],)}
    plain = dl.diagnose(_model(), (x, y), **setup)
    model = _model()
    with torch.device("meta"):
        checked = dl.diagnose(model, (x, y), **setup)
    assert "stability" in plain.data and checked.data["failed"] == {}
    for key in ("verdict", "p_trains", "signal", "trial", "stability", "layers", "architecture"):
        assert repr(checked.data[key]) == repr(plain.data[key]), key


GRAPH_PROBES = ("smoothing", "homophily", "oversquashing", "ntk", "jacobian", "signal", "trial")


@pytest.fixture(scope="module")
def graph_net():
    from depthlab.diagnosis.sources import dataset_source
    from depthlab.spec import ArchSpec, DataSpec

    batch, in_shape, out_dim, graph = dataset_source(
        DataSpec(name="csbm", n_samples=60, n_classes=3, homophily=0.3)
    )
    spec = ArchSpec(family="gcn", depth=2, width=8)
    return dl.build_model(spec, in_shape=in_shape, out_dim=out_dim, graph=graph), batch


@pytest.mark.parametrize("name", GRAPH_PROBES)
def test_graph_probes_create_their_tensors_on_the_models_device(graph_net, name):
    model, batch = graph_net
    params = _params_for(name, DiagnoseOptions(ntk_samples=16, batch_size=32))
    probe = reg.PROBES.get(name)(params)
    plain = probe.run(model, batch, seed=0)
    with torch.device("meta"):
        checked = probe.run(model, batch, seed=0)
    assert _same(checked, plain)


@pytest.mark.parametrize(
    "family", ["gcn", "sage", "gin", "gat", "dagnn", "graph_transformer", "sheaf"]
)
def test_graph_families_train_on_the_models_device(family):
    """Every graph family's forward and backward (full graph and a first-rows subgraph)."""
    from depthlab.data import load_data
    from depthlab.spec import ArchSpec, DataSpec

    data = load_data(DataSpec(name="csbm", n_samples=40, n_classes=3, homophily=0.3))
    kw = {"sheaf_maps": "general"} if family == "sheaf" else {}
    spec = ArchSpec(family=family, depth=2, width=8, heads=2, stalk_dim=2, **kw)

    def build() -> nn.Module:
        return dl.build_model(
            spec, in_shape=data.in_shape, out_dim=data.out_dim, graph=data.edge_index
        )

    train = TrainSpec(epochs=2, lr=0.01)
    plain = dl.fit(build(), data, train, progress=False)
    model = build()
    with torch.device("meta"):
        checked = dl.fit(model, data, train, progress=False)
        sub = model(data.x_train[:10])  # the induced subgraph of the first rows
    assert checked.history == plain.history and sub.device == torch.device("cpu")
