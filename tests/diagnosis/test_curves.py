"""Parametric learning curves: known parameters are recovered, extrapolation brackets the truth."""

from __future__ import annotations

import numpy as np
import pytest

from depthlab.diagnosis import curves


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("pow3", (0.3, 2.0, 0.6)),
        ("ilog2", (0.2, 1.5)),
        ("janoschek", (0.2, 2.3, 0.02, 0.9)),
        ("weibull", (0.2, 2.3, 1 / 80, 1.3)),
        ("mmf", (0.25, 2.3, 1 / 50, 1.5)),
    ],
)
def test_a_noise_free_curve_gives_back_its_parameters(name: str, params: tuple) -> None:
    t = np.arange(1, 401, dtype=float)
    y = curves.FAMILIES[name](t, *params)
    bt, by = curves.binned(y)
    fitted, rms = curves.fit_family(name, bt, by)
    assert rms < 1e-3
    # the parameters that shape the curve over the fitted range come back
    np.testing.assert_allclose(fitted, params, rtol=0.05, atol=2e-3)


def test_extrapolation_of_a_noisy_power_law_brackets_the_true_value() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(1, 1501, dtype=float)
    y = curves.pow3(t, 0.3, 2.0, 0.6) * (1 + 0.05 * rng.standard_normal(len(t)))
    got = curves.extrapolate(y[:240], 1500)
    truth = curves.pow3(1500.0, 0.3, 2.0, 0.6)
    assert got is not None
    assert got["lo"] <= got["loss"] <= got["hi"]
    assert got["lo"] <= truth <= got["hi"]
    assert abs(got["loss"] - truth) < 0.1


def test_a_flat_curve_extrapolates_flat_and_a_short_one_not_at_all() -> None:
    rng = np.random.default_rng(1)
    flat = 2.3 + 0.01 * rng.standard_normal(60)
    got = curves.extrapolate(flat, 600)
    assert got is not None and abs(got["loss"] - 2.3) < 0.05
    assert curves.extrapolate([2.3, 2.2, 2.1], 600) is None


def test_binned_keeps_every_step_in_a_bin_and_ignores_nan() -> None:
    y = np.linspace(3.0, 1.0, 500)
    y[7] = np.nan
    t, v = curves.binned(y, bins=10)
    assert len(t) <= 10 and np.all(np.diff(t) > 0) and np.all(np.isfinite(v))
    assert v[0] == pytest.approx(3.0, abs=0.01) and v[-1] < 1.5
