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

from depthlab.diagnosis import ALL_PROBES, DiagnoseOptions, diagnose
from depthlab.probes import ProbeBatch
from depthlab.spec import TrainSpec
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
    # the setup the test below trains with: Adam at 3e-3, 30 full-batch steps
    train = TrainSpec(optimizer="adam", lr=3e-3, epochs=30, batch_size=0)
    options = DiagnoseOptions(probes=ALL_PROBES, ntk_samples=32, batch_size=16, train=train)
    return request.param, model, x, y, diagnose(model, ProbeBatch.from_tensors(x, y), options)


def test_every_probe_runs_or_is_skipped_with_a_reason(diagnosed):
    name, _, _, _, result = diagnosed
    assert set(result["probes"]) == set(ALL_PROBES)
    assert result["failed"] == {}
    for probe, status in result["probes"].items():
        assert status["status"] in ("ok", "skipped"), (probe, status)
        if status["status"] == "skipped":
            assert status["reason"] and probe not in result
        else:
            assert probe in result
    # mean-field theory covers plain MLPs only, and input-pair correlations need real-valued
    # inputs (BERT's are token ids); everything else measures these networks
    expected = {"meanfield", "correlation"} if name == "bert" else {"meanfield"}
    assert {p for p, s in result["probes"].items() if s["status"] == "skipped"} == expected
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


def _gpt2() -> torch.nn.Module:
    import transformers as t

    config = t.GPT2Config(
        vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2, num_labels=CLASSES,
        pad_token_id=0, bos_token_id=1, eos_token_id=1, attn_implementation="sdpa",
    )  # fmt: skip
    return HF.Logits(t.GPT2ForSequenceClassification(config))


def _swin() -> torch.nn.Module:
    import transformers as t

    config = t.SwinConfig(
        image_size=16, patch_size=2, num_channels=3, embed_dim=16, depths=[1, 1],
        num_heads=[2, 2], window_size=4, num_labels=CLASSES, attn_implementation="sdpa",
    )  # fmt: skip
    return HF.Logits(t.SwinForImageClassification(config))


@pytest.mark.parametrize("name", ["gpt2", "swin"])
def test_gpt2_conv1d_layers_and_swin_windows(name):
    """GPT-2: HF Conv1D layers are found, its per-token score head is pooled at the last
    token; Swin: window-partitioned layers are read per sample."""
    torch.manual_seed(0)
    model = _gpt2() if name == "gpt2" else _swin()
    x, y = _data("bert" if name == "gpt2" else "vit")
    probes = ("signal", "gradients", "jacobian", "collapse")
    result = diagnose(model, ProbeBatch.from_tensors(x, y), DiagnoseOptions(probes=probes))
    assert all(s["status"] == "ok" for s in result["probes"].values()), result["probes"]
    assert result["coverage"]["fraction"] > 0.95
    names = [r["name"] for r in result["gradients"]["layers"]]
    if name == "gpt2":
        assert "Conv1D" in result["coverage"]["layer_types"]
        assert "model.transformer.h.1.mlp.c_fc" in names
        assert result["gradients"]["role"] == "model.transformer.h.*.mlp.c_proj"
        assert result["collapse"]["n_samples"] == N  # one pooled feature vector per sample
        assert result["jacobian"]["wrt"] == "output of model.transformer.wte"
    else:
        # the attention projections run on (N · windows, tokens, C): read per sample
        row = next(r for r in result["signal"]["layers"] if r["name"].endswith("q_proj"))
        assert result["signal"]["skipped_layers"] == {}
        seen = []
        module = dict(model.named_modules())[row["name"]]
        handle = module.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
        with torch.no_grad():
            model.eval()(x)  # no batch norm in Swin: the mode policy is eval mode
        handle.remove()
        assert seen[0].shape[0] == 4 * N  # four windows per sample, batch-major
        h = seen[0].reshape(N, -1).double()  # one vector per sample, not per window
        a, b = h[0::2], h[1::2]
        corr = ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean().item()
        assert row["correlation"] == pytest.approx(corr, rel=1e-6)
    assert result["jacobian"]["mean_squared_singular_value"] > 0
