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

MODELS: dict[str, dict[str, Any]] = {
    "adaptive/full": {
        "coefficients": {
            "depth_over_xi": [0.6699480444683652, 1.2548674514568534, -0.7138212995263109],
            "gradient_scale": [2.1809230442284813, 3.8990111196675765, 0.3591113797904841],
            "log10_lr": [-2.5555555555555554, 1.0914934835771388, -0.42396678175707453],
            "reference_below_baseline": [
                0.40114940772704466,
                0.3842784029971144,
                0.33657251342195355,
            ],
            "signal_scale": [0.7482606272787256, 2.2003554131222742, -0.4636486361611029],
            "trial_accuracy_behind_reference": [
                0.12845068441164154,
                0.266420788234372,
                -0.37917216007473,
            ],
            "trial_accuracy_gain": [0.26549795418062533, 0.27929821246368053, 1.6399065588980066],
            "trial_behind_reference": [
                0.13599678582740382,
                0.43200885660835103,
                -0.45581085999190973,
            ],
            "trial_below_baseline": [0.26515262189964106, 0.39364213298159884, 0.8288032430221036],
            "trial_diverged": [0.0, 1.0, 0.0],
            "trial_improvement": [0.471181081359567, 0.39137492057409934, 0.5655157408642848],
        },
        "cv_agreement": 0.8611111111111112,
        "intercept": 1.6100755489763057,
        "n": 72,
    },
    "adaptive/theory": {
        "coefficients": {
            "depth_over_xi": [0.6699480444683652, 1.2548674514568534, -1.7981447413940321],
            "gradient_scale": [2.1809230442284813, 3.8990111196675765, 0.415134915103801],
            "log10_lr": [-2.5555555555555554, 1.0914934835771388, -0.03807384149651174],
            "signal_scale": [0.7482606272787256, 2.2003554131222742, -1.0372059150802175],
        },
        "cv_agreement": 0.7638888888888888,
        "intercept": 0.1026872996011836,
        "n": 72,
    },
    "sgd/full": {
        "coefficients": {
            "depth_over_xi": [1.6003894774190428, 2.3335352736621413, -1.2052514795510816],
            "gradient_scale": [4.657193669353887, 5.304057988209308, 0.4296767790433815],
            "log10_lr": [-2.4464285714285716, 1.1326272059928202, 0.1692924114452004],
            "reference_below_baseline": [
                0.1570729790104997,
                0.40893345550470145,
                0.28517148721688623,
            ],
            "signal_scale": [1.3272831901755693, 3.0631177476983127, -0.7238201975296011],
            "trial_accuracy_behind_reference": [
                0.11171896031496768,
                0.19951417451130488,
                -0.4535681286274922,
            ],
            "trial_accuracy_gain": [0.1302615547043252, 0.22395681195664868, 1.3616126781733575],
            "trial_behind_reference": [
                0.14608004721394158,
                0.3693380866782516,
                -0.06502958943991816,
            ],
            "trial_below_baseline": [0.010992931796558207, 0.3393452589948042, 0.4144276723853716],
            "trial_diverged": [0.017857142857142856, 0.13243211584099404, -0.05844266683330335],
            "trial_improvement": [0.1786882308154333, 0.2651327621711133, 0.9425393806043486],
        },
        "cv_agreement": 0.8571428571428571,
        "intercept": -0.42242908400158574,
        "n": 56,
    },
    "sgd/theory": {
        "coefficients": {
            "depth_over_xi": [1.6003894774190428, 2.3335352736621413, -1.6146422637437734],
            "gradient_scale": [4.657193669353887, 5.304057988209308, 0.3367685675654862],
            "log10_lr": [-2.4464285714285716, 1.1326272059928202, 0.8882129215404916],
            "signal_scale": [1.3272831901755693, 3.0631177476983127, -1.120371699770758],
        },
        "cv_agreement": 0.7857142857142857,
        "intercept": -1.173166766778628,
        "n": 56,
    },
}
#: Diagnosed tuning-half runs the models were fitted on.
TUNING_RUNS = 152
