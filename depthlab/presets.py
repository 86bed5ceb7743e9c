"""Named families of run specs that ship with depthlab (the demo's comparison among them)."""

from __future__ import annotations

import dataclasses

from depthlab.exceptions import UnknownComponentError
from depthlab.spec import ArchSpec, DataSpec, RunSpec, TrainSpec

DEEP_MLP_INITS = (
    ("relu+he", "relu", "he"),
    ("relu+lecun", "relu", "lecun"),
    ("tanh+critical", "tanh", "critical"),
    ("selu+lecun", "selu", "lecun"),
)


def deep_mlp_mnist1d(depth: int = 32, width: int = 128, epochs: int = 10) -> list[RunSpec]:
    """The same deep MLP on MNIST-1D under four activation/init pairs.

    ReLU+He and tanh at its critical init sit on the edge of chaos; ReLU+LeCun halves the
    signal's second moment at every layer (it vanishes as 2^-depth); SELU+LeCun is
    self-normalizing. tanh uses σ_b = 0.05 so its critical point has a non-trivial q*.
    """
    data = DataSpec(name="mnist1d", seed=0, val_fraction=0.1)
    train = TrainSpec(optimizer="adam", lr=1e-3, epochs=epochs, batch_size=64, seed=0)
    return [
        RunSpec(
            name=name,
            arch=ArchSpec(
                family="mlp",
                depth=depth,
                width=width,
                act=act,
                init=init,
                sigma_b=0.05 if init == "critical" else 0.0,
            ),
            data=data,
            train=train,
        )
        for name, act, init in DEEP_MLP_INITS
    ]


def shallow_reference(spec: RunSpec) -> RunSpec:
    """The shallow net a run is held against: a 2-hidden-layer ReLU/He MLP of width 128 on the
    same data, trained with the same setup (what *trains* is measured against)."""
    arch = ArchSpec(family="mlp", depth=2, width=128, act="relu", init="he")
    return dataclasses.replace(spec, name="reference-2x128-relu-he", arch=arch)


# Greydanus 2020, MNIST-1D: test accuracies of the reference models (percent).
MNIST1D_REFERENCE = {"logistic": 32.0, "mlp": 68.0, "cnn": 94.0}


def mnist1d_reference(seed: int = 0, shuffled: bool = False) -> list[RunSpec]:
    """The MNIST-1D reference models: logistic regression, MLP (2×100) and CNN (5,210 params).

    Trained on all 4,000 training samples with Adam, batch 50, and a cosine schedule; the
    reference accuracies are 32 %, 68 % and 94 % (Greydanus 2020). ``shuffled`` uses the
    sequence-shuffled variant, where the CNN's spatial prior no longer helps.
    """
    data = DataSpec(name="mnist1d_shuffled" if shuffled else "mnist1d", seed=seed, val_fraction=0.0)

    def train(lr: float, epochs: int) -> TrainSpec:
        return TrainSpec(
            optimizer="adam", lr=lr, epochs=epochs, batch_size=50, schedule="cosine", seed=seed
        )

    return [
        RunSpec(
            name="logistic",
            arch=ArchSpec(family="mlp", depth=0, init="he"),
            data=data,
            train=train(1e-2, 20),
        ),
        RunSpec(
            name="mlp",
            arch=ArchSpec(family="mlp", depth=2, width=100, init="he"),
            data=data,
            train=train(1e-2, 40),
        ),
        RunSpec(
            name="cnn",
            arch=ArchSpec(
                family="cnn1d", depth=3, width=25, kernel=(5, 3, 3), stride=2, padding=1, init="he"
            ),
            data=data,
            train=train(2e-2, 40),
        ),
    ]


PRESETS = {"deep-mlp-mnist1d": deep_mlp_mnist1d, "mnist1d-reference": mnist1d_reference}


def preset(name: str) -> list[RunSpec]:
    """The run specs of a named preset, at its default sizes."""
    if name not in PRESETS:
        raise UnknownComponentError("preset", name, PRESETS, field="preset")
    return PRESETS[name]()
