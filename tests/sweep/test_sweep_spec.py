"""SweepSpec: validation naming the field, exact YAML round trip, deterministic expansion."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from depthlab import RunSpec, SpecError
from depthlab import _registry as reg
from depthlab.store.base import RunRecord, RunState
from depthlab.sweep import SweepSpec, axis_paths, expand, planned_records

SWEEP_YAML = """
base:  {arch: {family: mlp, depth: 8, width: 64}, data: {name: digits, seed: 0}, train: {epochs: 2}}
axes:  {arch.depth: [2, 8, 32], arch.act: [relu, tanh, selu]}
seeds: [0, 1]
strategy: grid
"""

BASE = "base: {arch: {family: mlp, depth: 2, width: 16}}\n"


def sweep(extra: str = "") -> SweepSpec:
    return SweepSpec.from_yaml(SWEEP_YAML + extra)


def run_ids(runs: list[RunSpec]) -> list[str]:
    return [f"{r.content_hash()}-s{r.train.seed}" for r in runs]


# -- grid ---------------------------------------------------------------------------------------
def test_example_expands_to_18_distinct_runs():
    runs = expand(sweep())
    assert len(runs) == 3 * 3 * 2
    assert len({r.content_hash() for r in runs}) == 18
    assert len(set(run_ids(runs))) == 18
    assert {(r.arch.depth, r.arch.act, r.train.seed) for r in runs} == {
        (d, a, s) for d in (2, 8, 32) for a in ("relu", "tanh", "selu") for s in (0, 1)
    }
    # Everything not on an axis comes from the base.
    assert all(r.arch.width == 64 and r.train.epochs == 2 for r in runs)


def test_grid_order_is_axis_order_then_seeds():
    runs = expand(sweep())
    assert [r.name for r in runs[:4]] == [
        "arch.depth=2,arch.act=relu,seed=0",
        "arch.depth=2,arch.act=relu,seed=1",
        "arch.depth=2,arch.act=tanh,seed=0",
        "arch.depth=2,arch.act=tanh,seed=1",
    ]
    assert runs[-1].name == "arch.depth=32,arch.act=selu,seed=1"
    assert run_ids(expand(sweep())) == run_ids(runs)


def test_run_name_formats_non_string_values():
    s = SweepSpec.from_yaml(BASE + "axes: {arch.width: [[8, 4], 16], train.lr: [0.01]}")
    names = [r.name for r in expand(s)]
    assert names == [
        "arch.width=[8,4],train.lr=0.01,seed=0",
        "arch.width=16,train.lr=0.01,seed=0",
    ]
    assert expand(s)[0].arch.width == (8, 4)


def test_adding_an_axis_value_keeps_existing_run_ids():
    before = run_ids(expand(sweep()))
    grown = SweepSpec.from_yaml(SWEEP_YAML.replace("[2, 8, 32]", "[2, 8, 32, 64]"))
    after = run_ids(expand(grown))
    assert len(after) == 4 * 3 * 2
    assert set(before) <= set(after)
    more_seeds = run_ids(expand(SweepSpec.from_yaml(SWEEP_YAML.replace("[0, 1]", "[0, 1, 2]"))))
    assert set(before) <= set(more_seeds) and len(more_seeds) == 27


def test_planned_records_are_pending_and_match_runs():
    s = sweep()
    records = planned_records(s)
    runs = expand(s)
    assert [r.run_id for r in records] == run_ids(runs)
    for rec, run in zip(records, runs, strict=True):
        assert rec.state is RunState.PENDING
        assert rec.seed == run.train.seed
        assert rec.spec_hash == run.content_hash()
        assert RunSpec.from_dict(rec.spec) == run
        assert rec == RunRecord.pending(run.content_hash(), run.to_dict(), run.train.seed)


# -- random -------------------------------------------------------------------------------------
def random_sweep(budget: int = 4, sample_seed: int = 0) -> SweepSpec:
    return sweep().replace(strategy="random", budget=budget, sample_seed=sample_seed)


def configs(s: SweepSpec) -> list[tuple[int, str]]:
    return [(r.arch.depth, str(r.arch.act)) for r in expand(s)[:: len(s.seeds)]]


def test_random_samples_budget_configs_times_seeds():
    s = random_sweep()
    runs = expand(s)
    assert len(runs) == 4 * 2
    assert len(set(configs(s))) == 4
    assert [r.train.seed for r in runs] == [0, 1] * 4
    grid_ids = set(run_ids(expand(sweep())))
    assert set(run_ids(runs)) <= grid_ids  # a sampled run is the same run as in the grid


def test_random_is_seeded():
    assert run_ids(expand(random_sweep())) == run_ids(expand(random_sweep()))
    samples = {tuple(configs(random_sweep(sample_seed=k))) for k in range(5)}
    assert len(samples) > 1
    assert configs(random_sweep(sample_seed=0)) != configs(random_sweep(sample_seed=1))


def test_random_budget_equal_to_grid_is_the_grid():
    assert run_ids(expand(random_sweep(budget=9))) == run_ids(expand(sweep()))


# -- round trip ---------------------------------------------------------------------------------
def test_yaml_round_trip_is_exact():
    for s in (sweep(), random_sweep(sample_seed=3).replace(name="depth-vs-act")):
        text = s.to_yaml()
        again = SweepSpec.from_yaml(text)
        assert again == s
        assert again.to_yaml() == text
        assert again.content_hash() == s.content_hash()
        assert SweepSpec.from_dict(s.to_dict()) == s


def test_nested_list_values_round_trip():
    s = SweepSpec.from_yaml(BASE + "axes: {arch.width: [[8, 4], 16]}")
    assert s.axes["arch.width"] == ((8, 4), 16)
    assert SweepSpec.from_yaml(s.to_yaml()) == s
    assert s.to_dict()["axes"] == {"arch.width": [[8, 4], 16]}


def test_content_hash_is_stable_and_sensitive():
    assert sweep().content_hash() == sweep().content_hash()
    assert len(sweep().content_hash()) == 16
    assert sweep().content_hash() != sweep().replace(seeds=(0, 2)).content_hash()


def test_axis_paths_exclude_train_seed():
    paths = axis_paths()
    assert "train.seed" not in paths
    assert {"arch.depth", "arch.act", "train.lr", "data.seed"} <= set(paths)
    assert all(p.split(".")[0] in ("arch", "data", "train") for p in paths)


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("axes: {arch.act: [relu, swishy]}", "axes.arch.act[1]", ["unknown activation 'swishy'"]),
        ("axes: {arch.width: [-1]}", "axes.arch.width[0]", ["-1"]),
        ("axes: {train.lr: [0.1, -1.0]}", "axes.train.lr[1]", ["-1.0"]),
        ("axes: {data.name: [nope]}", "axes.data.name[0]", ["nope", "digits"]),
        ("axes: {arch.foo: [1]}", "axes.arch.foo", ["unknown axis", "arch.depth", "train.seed"]),
        ("axes: {depth: [1]}", "axes.depth", ["unknown axis", "train.lr"]),
        ("axes: {train.seed: [1, 2]}", "axes.train.seed", ["seeds"]),
        ("axes: {arch.depth: []}", "axes.arch.depth", ["empty"]),
        ("axes: {arch.depth: 3}", "axes.arch.depth", ["list"]),
        ("axes: {arch.depth: [2, 2]}", "axes.arch.depth[1]", ["repeats"]),
        ("axes: {}", "axes", ["empty"]),
        ("axes:", "axes", ["mapping"]),
        ("axes: [arch.depth]", "axes", ["mapping"]),
        ("axes: {arch.depth: [2]}\nstrategy: random", "budget", ["required"]),
        ("axes: {arch.depth: [2]}\nstrategy: random\nbudget: 0", "budget", ["0"]),
        ("axes: {arch.depth: [2]}\nstrategy: random\nbudget: -3", "budget", ["-3"]),
        ("axes: {arch.depth: [2, 3]}\nstrategy: random\nbudget: 3", "budget", ["<= 2"]),
        ("axes: {arch.depth: [2]}\nbudget: 1", "budget", ["random"]),
        ("axes: {arch.depth: [2]}\nstrategy: bayes", "strategy", ["'bayes'", "grid", "random"]),
        ("axes: {arch.depth: [2]}\nseeds: [0, 1, 0]", "seeds[2]", ["duplicate"]),
        ("axes: {arch.depth: [2]}\nseeds: []", "seeds", ["empty"]),
        ("axes: {arch.depth: [2]}\nseeds: [a]", "seeds", ["'a'"]),
        ("axes: {arch.depth: [2]}\nworkers: 3", "workers", ["unknown key", "strategy"]),
        ("axes: {arch.depth: [2]}\nbase: {arch: {depth: -1}}", "base.arch.depth", ["-1"]),
    ],
)
def test_bad_input_raises_spec_error_naming_the_field(text, field, words):
    with pytest.raises(SpecError) as info:
        SweepSpec.from_yaml(text if "base:" in text else BASE + text)
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"{field}: ") and "\n" not in message
    for w in words:
        assert w in message


def test_strategy_error_lists_only_implemented_strategies():
    with pytest.raises(SpecError) as info:
        SweepSpec.from_yaml(BASE + "axes: {arch.depth: [2]}\nstrategy: bayes")
    assert info.value.detail.endswith("choices: grid, random, tpe")


def test_axis_value_conflicting_with_base_names_both_fields():
    text = "base: {arch: {depth: 2, width: [8, 4]}}\naxes: {arch.depth: [2, 3]}"
    with pytest.raises(SpecError) as info:
        SweepSpec.from_yaml(text)
    assert info.value.field == "axes.arch.depth[1]"
    assert "arch.width" in str(info.value)


def test_invalid_combination_fails_at_expand_naming_it():
    # Each value is fine with the base (depth 2), but depth 3 with two widths is not.
    s = SweepSpec.from_yaml(BASE + "axes: {arch.depth: [2, 3], arch.width: [[8, 4]]}")
    with pytest.raises(SpecError) as info:
        expand(s)
    assert info.value.field == "axes"
    assert "arch.depth=3" in str(info.value)


@pytest.mark.parametrize("text", ["axes: {arch.depth: [1]\n", "base: [\n", "a: b: c", "\tx"])
def test_malformed_yaml_raises_spec_error(text):
    with pytest.raises(SpecError, match="malformed YAML"):
        SweepSpec.from_yaml(text)


def test_non_mapping_document_raises_spec_error():
    with pytest.raises(SpecError, match="expected a mapping"):
        SweepSpec.from_yaml("- 1\n- 2\n")


# -- property -----------------------------------------------------------------------------------
AXIS_VALUES = {
    "arch.depth": st.integers(0, 6),
    "arch.act": st.sampled_from(reg.ACTIVATIONS.names()),
    "arch.width": st.integers(1, 64),
    "train.lr": st.floats(1e-5, 1.0),
    "data.seed": st.integers(0, 1000),
}


@st.composite
def sweeps(draw):
    paths = draw(
        st.lists(st.sampled_from(sorted(AXIS_VALUES)), min_size=1, max_size=3, unique=True)
    )
    axes = {p: draw(st.lists(AXIS_VALUES[p], min_size=1, max_size=3, unique=True)) for p in paths}
    seeds = draw(st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=3, unique=True))
    return SweepSpec.from_dict({"base": {"arch": {"width": 8}}, "axes": axes, "seeds": seeds})


@settings(max_examples=40, deadline=None)
@given(sweeps())
def test_random_grids_expand_to_product_times_seeds(s):
    runs = expand(s)
    assert len(runs) == math.prod(len(v) for v in s.axes.values()) * len(s.seeds)
    assert len(set(run_ids(runs))) == len(runs)
    assert len(planned_records(s)) == len(runs)
    assert SweepSpec.from_yaml(s.to_yaml()) == s
