"""The fitted P(trains) models of the verdict (``depthlab.diagnose.verdict.probability``).

Written by ``python bench/verdict_calibration.py tune`` from the tuning half of the calibration
grid only; the test half is scored against these numbers, never used to set them. Each model
maps a feature to (mean, scale, weight) of a logistic regression on standardised features.
"""

from __future__ import annotations

from typing import Any

#: The trial's improvement (in units of the constant predictor's loss) below which the trial
#: counts as *no progress*.
NO_PROGRESS = 0.02

MODELS: dict[str, dict[str, Any]] = {}
