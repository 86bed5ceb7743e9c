"""pruning-eoc, lottery-rewind, hypernet-mip and kan-scaling, cheaply: each claim's pipeline at
a toy scale (criterion computed, table JSON-safe, plot written, the control runs), and the
numbers its criterion rests on checked against references. Their recorded outcomes come from
``depthlab reproduce NAME --quick`` (docs/claims)."""

from __future__ import annotations

import json
import math

import pytest

from depthlab.claims import (
    get_claim,
    hypernet_mip,
    kan_scaling,
    lottery_rewind,
    pruning_eoc,
    reproduce,
)

TINY = {
    "pruning-eoc": (
        pruning_eoc,
        {"depth": 4, "width": 16, "seeds": 1, "epochs": 1, "data": "digits"},
    ),
    "lottery-rewind": (
        lottery_rewind,
        {"depth": 2, "width": 16, "seeds": 1, "segment_epochs": 1, "n_samples": 400},
    ),
    "hypernet-mip": (hypernet_mip, {"seeds": 1, "steps": 50, "n_train": 256, "width": 8}),
    "kan-scaling": (
        kan_scaling,
        {"seeds": 1, "steps": 20, "n_train": 100, "grids": (3, 5, 8), "widths": (4, 6, 8)},
    ),
}


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("control", [False, True])
def test_claim_runs_end_to_end_at_toy_scale(name, control, monkeypatch, tmp_path):
    module, size = TINY[name]
    monkeypatch.setattr(module, "sizes", lambda quick: dict(size))
    result = reproduce(name, quick=True, control=control, out=tmp_path)
    d = result.to_dict()
    assert d["checks"] and set(d["measured"]) == set(d["expected"])
    json.dumps(d, allow_nan=False)
    assert result.figure is not None and result.figure.read_bytes()[:4] == b"\x89PNG"
    cls = get_claim(name)
    assert cls.threads == 1 and cls.experiment_doc and cls.control_doc and cls.full_time


def test_scaling_exponent_recovers_a_known_power_law():
    points = [(n, 3.0 * n**-1.7) for n in (100, 200, 400, 800)]
    alpha, lo, hi = kan_scaling.exponent(points)
    assert alpha == pytest.approx(1.7) and lo == pytest.approx(1.7) and hi == pytest.approx(1.7)
    noisy = [(n, r * math.exp(0.1 * (-1) ** i)) for i, (n, r) in enumerate(points)]
    alpha, lo, hi = kan_scaling.exponent(noisy)
    assert lo < alpha < hi and lo < 1.7 < hi


def test_kan_scaling_sizes_span_comparable_parameter_counts():
    from depthlab import ArchSpec, build_model

    def n(spec):
        return sum(p.numel() for p in build_model(spec, in_shape=(2,), out_dim=1).parameters())

    kans = [n(ArchSpec(family="kan", depth=1, width=5, grid=g)) for g in kan_scaling.GRIDS]
    mlps = [n(ArchSpec(family="mlp", depth=2, width=w)) for w in kan_scaling.WIDTHS]
    assert kans == [15 * (g + 4) + 6 for g in kan_scaling.GRIDS]  # + 6 biases
    assert mlps[0] < 2 * kans[0] and mlps[-1] > kans[-1]


def test_hypernet_task_and_median_steps():
    x, y = hypernet_mip.task(64, 0)
    assert x.shape == (64, 3) and y.shape == (64, 1)
    assert float(x[:, 0].min()) >= 0 and float(x[:, 0].max()) <= 1
    rows = [{"steps_to_converge": s} for s in (100, None, 300)]
    assert hypernet_mip._median_steps(rows) == 300
    assert hypernet_mip._median_steps(rows[1:2]) == math.inf


def test_lottery_rewind_step_and_round_sparsity():
    from depthlab.train.techniques.lottery import round_boundaries, round_sparsity

    assert lottery_rewind.rewind_step({"n_samples": 4000, "segment_epochs": 8}) == round(
        0.05 * 8 * math.ceil(round(4000 * 0.72) / 128)
    )
    assert round_boundaries(32, 3) == [8, 16, 24]
    assert round_sparsity(0.875, 1, 3) == pytest.approx(0.5)
    assert round_sparsity(0.875, 3, 3) == pytest.approx(0.875)
