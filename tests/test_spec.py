"""Specs: exact YAML round-trip, stable hash, and a SpecError naming the field for bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depthlab import ArchSpec, DataSpec, RunSpec, SpecError, TrainSpec, UnknownComponentError
from depthlab import _registry as reg

RUN_YAML = """
arch:  {family: mlp, depth: 8, width: 128, act: relu, init: he, norm: none}
data:  {name: digits, seed: 0}
train: {optimizer: adam, lr: 0.001, epochs: 20, batch_size: 64, seed: 0}
"""

finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def arch_specs(draw):
    depth = draw(st.integers(0, 40))
    width = draw(
        st.one_of(
            st.integers(1, 4096),
            st.lists(st.integers(1, 512), min_size=depth, max_size=depth)
            if depth
            else st.integers(1, 4096),
        )
    )
    return ArchSpec(
        family=draw(st.sampled_from(reg.ARCHS.names())),
        depth=depth,
        width=tuple(width) if isinstance(width, list) else width,
        act=draw(st.sampled_from(reg.ACTIVATIONS.names())),
        init=draw(st.sampled_from(reg.INITS.names())),
        norm=draw(st.sampled_from(reg.NORMS.names())),
        norm_placement=draw(st.sampled_from(["pre", "post"])),
        residual=draw(st.sampled_from(["none", "fixed", "inv_sqrt_depth", "rezero"])),
        residual_alpha=draw(st.floats(-10, 10, allow_nan=False)),
        dropout=draw(st.floats(0, 0.99)),
        sigma_b=draw(st.floats(0, 5)),
        kernel=draw(st.integers(1, 9)),
        stride=draw(st.integers(1, 4)),
        padding=draw(st.integers(0, 4)),
    )


@st.composite
def train_specs(draw):
    techniques = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.just("gradient_noise"),
                    "eta": st.floats(0, 2),
                    "gamma": st.floats(0, 1),
                }
            ),
            max_size=2,
        )
    )
    return TrainSpec(
        optimizer=draw(st.sampled_from(["sgd", "momentum", "adam", "adamw"])),
        lr=draw(st.floats(1e-8, 10)),
        epochs=draw(st.integers(1, 1000)),
        batch_size=draw(st.integers(0, 1024)),
        schedule=draw(st.sampled_from(["constant", "step", "cosine"])),
        warmup_epochs=draw(st.floats(0, 5)),
        grad_clip=draw(st.floats(0, 10)),
        seed=draw(st.integers(0, 2**31)),
        techniques=tuple(techniques),
    )


run_specs = st.builds(
    RunSpec,
    arch=arch_specs(),
    train=train_specs(),
    data=st.builds(
        DataSpec,
        name=st.sampled_from(reg.DATASETS.names()),
        seed=st.integers(0, 1000),
        val_fraction=st.floats(0, 0.45),
        test_fraction=st.floats(0, 0.45),
    ),
    name=st.text(max_size=20),
)


def test_the_documented_run_file_loads():
    spec = RunSpec.from_yaml(RUN_YAML)
    assert spec.arch == ArchSpec(depth=8, width=128)
    assert spec.train.lr == 0.001 and spec.data.name == "digits"


@settings(max_examples=150, deadline=None)
@given(run_specs)
def test_yaml_round_trip_is_exact(spec):
    again = RunSpec.from_yaml(spec.to_yaml())
    assert again == spec
    assert again.content_hash() == spec.content_hash()
    assert RunSpec.from_dict(spec.to_dict()) == spec


def test_hash_is_stable_across_processes():
    spec = RunSpec.from_yaml(RUN_YAML)
    code = "import depthlab as d; print(d.RunSpec.from_yaml(open(0).read()).content_hash())"
    out = subprocess.run(
        [sys.executable, "-c", code], input=RUN_YAML, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == spec.content_hash()
    assert spec.replace(name="other").content_hash() != spec.content_hash()


# (section, field, bad value) — each must raise a SpecError whose field names it.
INVALID = [
    ("arch", "family", "transformer"),
    ("arch", "depth", -1),
    ("arch", "depth", 2.5),
    ("arch", "width", 0),
    ("arch", "width", -3),
    ("arch", "width", "wide"),
    ("arch", "width", [4, 4]),
    ("arch", "act", "swishy"),
    ("arch", "init", "kaiming"),
    ("arch", "norm", "group"),
    ("arch", "residual", "always"),
    ("arch", "dropout", 1.0),
    ("arch", "dropout", -0.1),
    ("arch", "sigma_b", -1.0),
    ("arch", "kernel", 0),
    ("arch", "bias", "yes"),
    ("arch", "dropout_kind", "gaussian"),
    ("arch", "bogus", 1),
    ("data", "name", "imagenet"),
    ("data", "val_fraction", 1.5),
    ("data", "seed", "zero"),
    ("data", "task", "ranking"),
    ("data", "n_samples", 3),
    ("data", "teacher_act", "nope"),
    ("train", "optimizer", "lbfgs"),
    ("train", "lr", 0.0),
    ("train", "lr", -1.0),
    ("train", "lr", float("nan")),
    ("train", "epochs", 0),
    ("train", "batch_size", -5),
    ("train", "schedule", "linear"),
    ("train", "loss", "hinge"),
    ("train", "momentum", 1.0),
    ("train", "grad_clip", -1.0),
    ("train", "techniques", [{"name": "dropconnect"}]),
    ("train", "techniques", [{"name": "gradient_noise", "eta": -1.0}]),
    ("train", "techniques", [{"eta": 0.3}]),
    ("train", "techniques", ["gradient_noise"]),
]


@pytest.mark.parametrize("section,field,value", INVALID)
def test_invalid_values_name_the_field(section, field, value):
    data = {"arch": {"depth": 3}, "data": {}, "train": {}}
    data[section][field] = value
    with pytest.raises(SpecError) as info:
        RunSpec.from_dict(data)
    assert info.value.field.startswith(f"{section}.{field}")
    assert str(info.value).startswith(f"{section}.{field}")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(INVALID), run_specs)
def test_random_invalid_specs_raise_naming_the_field(case, spec):
    section, field, value = case
    data = spec.to_dict()
    if field == "width" and isinstance(value, list):
        data["arch"]["depth"] = len(value) + 1
    data[section][field] = value
    with pytest.raises(SpecError) as info:
        RunSpec.from_dict(data)
    assert info.value.field.startswith(f"{section}.{field}")


def test_unknown_names_list_the_choices():
    with pytest.raises(UnknownComponentError) as info:
        ArchSpec(act="swishy")
    message = str(info.value)
    assert "'swishy'" in message and "relu" in message and "tanh" in message


def test_malformed_yaml_is_a_spec_error():
    with pytest.raises(SpecError, match="malformed YAML at line 2"):
        RunSpec.from_yaml("arch: {depth: [1, 2\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        RunSpec.from_yaml("- just\n- a list\n")


def test_specs_are_frozen():
    spec = ArchSpec()
    with pytest.raises(AttributeError):
        spec.depth = 3  # type: ignore[misc]


def test_callable_components_round_trip_by_import_path():
    import torch

    spec = ArchSpec(act=torch.nn.Tanh)
    text = spec.to_yaml()
    assert "torch.nn.modules.activation:Tanh" in text
    assert ArchSpec.from_yaml(text).act == "torch.nn.modules.activation:Tanh"
    with pytest.raises(SpecError, match="cannot import"):
        ArchSpec(act="no_such_module:thing")


def test_yaml_reads_exponent_floats_as_numbers():
    """``lr: 1e-3`` is a number, as in YAML 1.2 (PyYAML's 1.1 rules would give a string)."""
    from depthlab.spec import TrainSpec

    spec = TrainSpec.from_yaml("lr: 1e-3\nweight_decay: 5E-4\nepochs: 3")
    assert spec.lr == 0.001 and spec.weight_decay == 0.0005 and spec.epochs == 3
    assert TrainSpec.from_yaml(spec.to_yaml()) == spec


def test_null_keeps_an_optional_nested_spec_none():
    """``X | None`` fields read ``null`` as None; a plain nested spec field reads it as X()."""
    import dataclasses

    from depthlab.spec import Spec

    @dataclasses.dataclass(frozen=True)
    class Outer(Spec):
        optional: TrainSpec | None = None
        required: TrainSpec = dataclasses.field(default_factory=TrainSpec)

    spec = Outer.from_yaml("optional: null\nrequired: null")
    assert spec.optional is None and spec.required == TrainSpec()
    assert Outer.from_dict(spec.to_dict()) == spec
    assert Outer.from_dict({"optional": {"epochs": 2}}).optional == TrainSpec(epochs=2)


def test_fields_added_later_leave_earlier_ids_alone() -> None:
    """A field added after runs were stored (``HASHED_WHEN_SET``, or ``UNHASHED`` such as
    ``train.device``) leaves the id of an earlier run as it was; set to another value, it counts."""
    import dataclasses as dc

    from depthlab.spec import RunSpec

    run = RunSpec.from_dict(
        {"arch": {"family": "mlp", "depth": 3, "width": 32, "act": "tanh"}, "train": {"lr": 0.01}}
    )
    # the id this run had before the kan/hypernet fields and train.device were added
    assert run.content_hash() == "9a2fe3b5f5a2068f"
    assert dc.replace(run, arch=dc.replace(run.arch, grid=7)).content_hash() != run.content_hash()
    kan = RunSpec.from_dict({"arch": {"family": "kan", "grid": 5}})
    assert kan.content_hash() == RunSpec.from_dict({"arch": {"family": "kan"}}).content_hash()
