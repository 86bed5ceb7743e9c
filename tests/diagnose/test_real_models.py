"""Real architectures from ``transformers`` configs (random init, nothing downloaded): BERT on
token ids, ViT and ResNet on images. ``diagnose`` runs every probe on each: exit 0, the JSON
written, each probe ran or was skipped with a reason, and each is called trainable, which a
few Adam steps confirm. BERT and ViT use ``attn_implementation="sdpa"``, whose fused CPU
kernel has no forward-mode AD or double backward: the math-kernel fallback is exercised."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest
import torch

from depthlab.diagnose import DEFAULT_PROBES, DiagnoseOptions, diagnose
from depthlab.probes import ProbeBatch
from depthlab.testing.cli import run_cli

EXAMPLE = pathlib.Path(__file__).parent.parent.parent / "examples" / "diagnose_transformers.py"
N, CLASSES = 48, 3


def _factories():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("diagnose_transformers", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if importlib.util.find_spec("transformers") is None:
    pytest.skip("transformers is a test dependency (make setup)", allow_module_level=True)
HF = _factories()  # before transformers is imported: the example hides a broken torchvision


def _data(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable labels: BERT's from which half of the vocabulary the first token is in, the
    images' from the sign of their mean."""
    gen = torch.Generator().manual_seed(0)
    if name == "bert":
        x = torch.randint(1, 64, (N, 12), generator=gen)
        y = (x[:, 1] * CLASSES) // 64
    else:
        x = torch.randn(N, 3, 16, 16, generator=gen)
        m = x.mean(dim=(1, 2, 3))
        y = torch.bucketize(m, m.quantile(torch.tensor([1 / 3, 2 / 3])))
    return x, y


MODELS = ("bert", "vit", "resnet")


@pytest.fixture(scope="module", params=MODELS)
def diagnosed(request):  # noqa: ANN201
    torch.manual_seed(0)
    model = getattr(HF, request.param)()
    x, y = _data(request.param)
    options = DiagnoseOptions(ntk_samples=32, batch_size=16)
    return request.param, model, x, y, diagnose(model, ProbeBatch.from_tensors(x, y), options)


def test_every_probe_runs_or_is_skipped_with_a_reason(diagnosed):
    name, _, _, _, result = diagnosed
    assert set(result["probes"]) == set(DEFAULT_PROBES)
    assert result["failed"] == {}
    for probe, status in result["probes"].items():
        assert status["status"] in ("ok", "skipped"), (probe, status)
        if status["status"] == "skipped":
            assert status["reason"] and probe not in result
        else:
            assert probe in result
    # mean-field theory covers plain MLPs only; everything else measures these networks
    assert {p for p, s in result["probes"].items() if s["status"] == "skipped"} == {"meanfield"}
    json.dumps(result, allow_nan=True)


def test_each_is_called_trainable_and_trains(diagnosed):
    name, model, x, y, result = diagnosed
    assert result["verdict"] == "trainable", result["findings"]
    ntk = result["ntk"]
    assert ntk["precision"] == "float64"
    # a few Adam steps on a copy lower the loss clearly
    import copy

    net = copy.deepcopy(model).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0], losses


def test_layers_roles_and_architecture_are_found(diagnosed):
    name, _, _, _, result = diagnosed
    cover, arch = result["coverage"], result["architecture"]
    assert cover["fraction"] > 0.9 and cover["layers"] >= 5
    kind = {"bert": "transformer", "vit": "transformer", "resnet": "cnn"}[name]
    assert arch["kind"] == kind and arch["residual"]
    assert arch["token_inputs"] == (name == "bert")
    assert arch["norms"] == (["BatchNorm2d"] if name == "resnet" else ["LayerNorm"])
    # depth trends compare one role across blocks, not the first and last Linear
    role = result["gradients"]["role"]
    assert role is not None and "*" in role
    first, last = result["gradients"]["role_layers"]
    assert first != last and first.replace("0", "*") != first
    if name == "bert":
        assert role.endswith("layer.*.output.dense")
        assert result["jacobian"]["wrt"] == "output of model.bert.embeddings.word_embeddings"
    assert result["mode"]["dropout"] == "off"


def test_attention_needs_the_math_kernel_that_the_probes_use():
    """Without the fallback, forward-over-reverse products fail on the fused kernel: the check
    that the test above exercises something."""
    from torch.func import jvp

    model = HF.vit().eval()
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises((NotImplementedError, RuntimeError)):
        jvp(model, (x,), (torch.randn_like(x),))


def test_the_cli_writes_the_json_and_exits_0(tmp_path):
    x, y = _data("bert")
    np.savez(tmp_path / "tokens.npz", x=x.numpy(), y=y.numpy())
    out = tmp_path / "bert.json"
    done = run_cli(
        "diagnose",
        "--model",
        f"{EXAMPLE}:bert",
        "--data",
        str(tmp_path / "tokens.npz"),
        "--probes",
        "signal,gradients,jacobian,ntk,collapse",
        "--ntk-samples",
        "32",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert all(s["status"] == "ok" for s in result["probes"].values())
    assert result["jacobian"]["wrt"].endswith("word_embeddings")
