"""The kan and hypernet families and a pruned net: each trains on bundled data and every
default probe runs on it without failing."""

from __future__ import annotations

import pytest

from depthlab import ArchSpec, DataSpec, RunSpec, TrainSpec
from depthlab.diagnosis.run import DEFAULT_PROBES, diagnose_run
from depthlab.train import run

# digits' first pixel is 0 in every image: a hypernet conditioned on it would see one z; the
# MNIST-1D sequences start with a varying value
CASES = {
    "kan": ({"family": "kan", "depth": 1, "width": 16, "act": "silu"}, "digits", ()),
    "hypernet": ({"family": "hypernet", "depth": 2, "width": 32}, "mnist1d", ()),
    "hypernet-mip": (
        {"family": "hypernet", "depth": 2, "width": 32, "parametrization": "mip"},
        "mnist1d",
        (),
    ),
    "pruned-mlp": (
        {"family": "mlp", "depth": 4, "width": 64},
        "digits",
        ({"name": "prune_at_init", "method": "snip", "sparsity": 0.8, "rescale": True},),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_family_trains_and_every_default_probe_runs(case):
    arch, data, techniques = CASES[case]
    spec = RunSpec(
        arch=ArchSpec.from_dict(arch),
        data=DataSpec(name=data, n_samples=600 if data == "mnist1d" else None),
        train=TrainSpec(epochs=4, batch_size=64, techniques=techniques),
    )
    result = run(spec, progress=False)
    assert result.state.value == "COMPLETE"
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    diagnosis, _, _ = diagnose_run(spec, DEFAULT_PROBES)
    assert diagnosis["failed"] == {}, diagnosis["failed"]
    ran = {k for k, v in diagnosis["probes"].items() if v["status"] == "ok"}
    assert {"signal", "gradients", "correlation", "trial"} <= ran


def test_depthlab_list_shows_the_families_and_techniques():
    from depthlab.testing.cli import run_cli

    archs = run_cli("list", "archs")
    assert archs.returncode == 0
    assert "kan" in archs.stdout and "hypernet" in archs.stdout
    techniques = run_cli("list", "techniques")
    for name in ("prune_at_init", "iterative_magnitude", "grid_extension"):
        assert name in techniques.stdout
