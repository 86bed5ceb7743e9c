"""The fitted P(trains) models of the verdict (``depthlab.diagnosis.verdict.probability``).

Written by ``python bench/verdict_calibration.py tune`` from the tuning half of the calibration
grid only; the test half is scored against these numbers, never used to set them. Each model
maps a feature to (mean, scale, weight) of a logistic regression on standardised features.
"""

from __future__ import annotations

from typing import Any

#: The trial's improvement (in units of the constant predictor's loss) below which the trial
#: counts as *no progress*.
NO_PROGRESS = 0.02

MODELS: dict[str, dict[str, Any]] = {
    "adaptive/full": {
        "coefficients": {
            "depth_over_xi": [0.6668999669811673, 1.256289241717323, -0.7134135731771352],
            "gradient_scale": [2.1809230442284813, 3.8990111196675765, 0.3593088093127148],
            "log10_lr": [-2.5555555555555554, 1.0914934835771388, -0.4236664689652542],
            "reference_below_baseline": [
                0.40114940772704466,
                0.3842784029971144,
                0.33616920812129236,
            ],
            "signal_scale": [0.7482606272787256, 2.2003554131222742, -0.46418816834376586],
            "trial_accuracy_behind_reference": [
                0.12845068441164154,
                0.266420788234372,
                -0.37870651564397495,
            ],
            "trial_accuracy_gain": [0.26549795418062533, 0.27929821246368053, 1.638679801320986],
            "trial_behind_reference": [
                0.13599678582740382,
                0.43200885660835103,
                -0.45588277291611173,
            ],
            "trial_below_baseline": [0.26515262189964106, 0.39364213298159884, 0.8284884533024164],
            "trial_diverged": [0.0, 1.0, 0.0],
            "trial_improvement": [0.471181081359567, 0.39137492057409934, 0.5654901264494436],
        },
        "cv_agreement": 0.8611111111111112,
        "intercept": 1.6097732692846303,
        "n": 72,
    },
    "adaptive/theory": {
        "coefficients": {
            "depth_over_xi": [0.6668999669811673, 1.256289241717323, -1.80383923902149],
            "gradient_scale": [2.1809230442284813, 3.8990111196675765, 0.4178939939692349],
            "log10_lr": [-2.5555555555555554, 1.0914934835771388, -0.0362170115900348],
            "signal_scale": [0.7482606272787256, 2.2003554131222742, -1.035601960447517],
        },
        "cv_agreement": 0.7638888888888888,
        "intercept": 0.10240346123668652,
        "n": 72,
    },
    "sgd/full": {
        "coefficients": {
            "depth_over_xi": [1.5998901534214254, 2.3338746521982854, -1.2034433212457714],
            "gradient_scale": [4.657193669353887, 5.304057988209308, 0.42964478853112564],
            "log10_lr": [-2.4464285714285716, 1.1326272059928202, 0.16842659035551996],
            "reference_below_baseline": [
                0.1570729790104997,
                0.40893345550470145,
                0.285123652736672,
            ],
            "signal_scale": [1.3272831901755693, 3.0631177476983127, -0.724112129479036],
            "trial_accuracy_behind_reference": [
                0.11171896031496768,
                0.19951417451130488,
                -0.4539441620520445,
            ],
            "trial_accuracy_gain": [0.1302615547043252, 0.22395681195664868, 1.3622333536346194],
            "trial_behind_reference": [
                0.14608004721394158,
                0.3693380866782516,
                -0.0651758378219345,
            ],
            "trial_below_baseline": [0.010992931796558207, 0.3393452589948042, 0.4145292031343481],
            "trial_diverged": [0.017857142857142856, 0.13243211584099404, -0.05825475612192836],
            "trial_improvement": [0.1786882308154333, 0.2651327621711133, 0.9431879215527891],
        },
        "cv_agreement": 0.8571428571428571,
        "intercept": -0.4216814545402558,
        "n": 56,
    },
    "sgd/theory": {
        "coefficients": {
            "depth_over_xi": [1.5998901534214254, 2.3338746521982854, -1.6114449993392124],
            "gradient_scale": [4.657193669353887, 5.304057988209308, 0.3363293553965853],
            "log10_lr": [-2.4464285714285716, 1.1326272059928202, 0.8872983547064093],
            "signal_scale": [1.3272831901755693, 3.0631177476983127, -1.1206572818386957],
        },
        "cv_agreement": 0.7857142857142857,
        "intercept": -1.1718604246142568,
        "n": 56,
    },
}
#: Diagnosed tuning-half runs the models were fitted on.
TUNING_RUNS = 152
