"""Diagnose real architectures built from HuggingFace ``transformers`` configs (random init,
nothing downloaded): BERT on token ids, ViT and ResNet on images.

python examples/diagnose_transformers.py

HuggingFace models return a ``ModelOutput``; probes need a tensor, so each factory wraps its
model in ``Logits`` (forward returns ``model(x).logits``). The factories also work from the
command line::

    depthlab diagnose --model examples/diagnose_transformers.py:bert --data tokens.npz
"""

from __future__ import annotations

import importlib.util
import sys

import torch
from torch import nn


def _hide_a_broken_torchvision() -> None:
    """A torchvision built for another torch fails while transformers imports it (and
    transformers remembers the answer); these models do not need it, so hide a broken one
    before transformers looks."""
    if "transformers" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001
        sys.modules["torchvision"] = None  # type: ignore[assignment]


_hide_a_broken_torchvision()


def _import_transformers():  # noqa: ANN202 - the module
    import transformers

    return transformers


class Logits(nn.Module):
    """``model(x).logits``: a HuggingFace classifier as a function from inputs to logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def bert(labels: int = 3, vocab: int = 64, hidden: int = 64, layers: int = 2) -> nn.Module:
    """A small BERT classifier (post-LN, GELU, CLS pooling) on sequences of token ids."""
    t = _import_transformers()
    config = t.BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=32,
        num_labels=labels,
        attn_implementation="sdpa",
    )
    return Logits(t.BertForSequenceClassification(config))


def vit(labels: int = 3, image: int = 16, hidden: int = 32, layers: int = 2) -> nn.Module:
    """A small ViT classifier (pre-LN, GELU, CLS token) on 3-channel images."""
    t = _import_transformers()
    config = t.ViTConfig(
        image_size=image,
        patch_size=4,
        num_channels=3,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        num_labels=labels,
        attn_implementation="sdpa",
    )
    return Logits(t.ViTForImageClassification(config))


def resnet(labels: int = 3) -> nn.Module:
    """A small ResNet (basic blocks, batch norm, ReLU) on 3-channel images."""
    t = _import_transformers()
    config = t.ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_labels=labels,
    )
    return Logits(t.ResNetForImageClassification(config))


if __name__ == "__main__":
    from depthlab.diagnosis import DiagnoseOptions, diagnose
    from depthlab.probes import ProbeBatch

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 64, (48, 12), generator=gen)
    y = torch.randint(0, 3, (48,), generator=gen)
    options = DiagnoseOptions(probes=("signal", "gradients", "jacobian", "ntk"), ntk_samples=32)
    result = diagnose(bert(), ProbeBatch.from_tensors(tokens, y), options, name="bert")
    print("bert:", result["verdict"], "| architecture:", result["architecture"])
    print("  gradients compared along", result["gradients"]["role"])
    print("  Jacobian with respect to the", result["jacobian"]["wrt"])
