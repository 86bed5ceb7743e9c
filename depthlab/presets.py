"""Named families of run specs that ship with depthlab (the demo's comparison among them)."""

from __future__ import annotations

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


PRESETS = {"deep-mlp-mnist1d": deep_mlp_mnist1d}


def preset(name: str) -> list[RunSpec]:
    """The run specs of a named preset, at its default sizes."""
    if name not in PRESETS:
        raise UnknownComponentError("preset", name, PRESETS, field="preset")
    return PRESETS[name]()
