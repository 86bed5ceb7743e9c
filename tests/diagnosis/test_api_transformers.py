"""``depthlab.diagnose`` on a HuggingFace model as it comes (a ``ModelOutput``, keyword inputs)
with a ``DataLoader`` of dict batches and of ``BatchEncoding``\\ s: a tiny BERT built from a
config, random init, nothing downloaded."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
import torch
from torch.utils.data import DataLoader

import depthlab as dl

if importlib.util.find_spec("transformers") is None:
    pytest.skip("transformers is a test dependency (make setup)", allow_module_level=True)

EXAMPLE = pathlib.Path(__file__).parent.parent.parent / "examples" / "diagnose_transformers.py"
_spec = importlib.util.spec_from_file_location("diagnose_transformers", EXAMPLE)
assert _spec is not None and _spec.loader is not None
_spec.loader.exec_module(importlib.util.module_from_spec(_spec))  # hides a broken torchvision

N, LENGTH, VOCAB, CLASSES = 96, 12, 64, 3


def _bert():  # noqa: ANN202
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=CLASSES,
        attn_implementation="sdpa",
    )
    return transformers.BertForSequenceClassification(config)


def _rows() -> list[dict[str, torch.Tensor]]:
    """Labels from which third of the vocabulary the second token is in (learnable)."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (N, LENGTH), generator=gen)
    labels = (ids[:, 1] * CLASSES) // VOCAB
    mask = torch.ones(LENGTH, dtype=torch.long)
    return [{"input_ids": ids[i], "attention_mask": mask, "labels": labels[i]} for i in range(N)]


def _encodings(rows: list[dict[str, torch.Tensor]]):  # noqa: ANN202
    from transformers import BatchEncoding

    return BatchEncoding({k: torch.stack([r[k] for r in rows]) for k in rows[0]})


@pytest.fixture(scope="module")
def diagnosed():
    model = _bert()
    loader = DataLoader(_rows(), batch_size=16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    return model, dl.diagnose(model, loader, optimizer=opt, steps=300)


def test_a_bert_from_its_own_loader(diagnosed):
    model, d = diagnosed
    assert d.data["failed"] == {}
    # token ids: no input-pair correlations; not a plain MLP: no mean-field theory
    assert set(d.data["skipped"]) == {"correlation", "meanfield"}
    assert d.data["setup"]["optimizer"] == "adamw" and d.data["setup"]["lr"] == 3e-3
    assert d.data["n_samples"] == N
    frame = d.layers()
    names = dict(model.named_modules())
    assert len(frame) > 10 and all(n in names for n in frame["name"])  # the model's own names
    assert frame["grad_norm"].notna().all()
    assert d.verdict in d._repr_html_()


def test_batch_encodings_give_the_same_diagnosis(diagnosed):
    model, d = diagnosed
    loader = DataLoader(_rows(), batch_size=16, collate_fn=_encodings)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    again = dl.diagnose(model, loader, optimizer=opt, steps=300)
    assert again.data["signal"] == d.data["signal"]
    assert again.data["trial"]["loss"] == d.data["trial"]["loss"]
    assert (again.verdict, again.p_trains) == (d.verdict, d.p_trains)
