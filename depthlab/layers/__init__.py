"""Building blocks selectable by name or callable: activations, inits, norms, residual, dropout."""

from depthlab.layers import pairnorm, powernorm  # noqa: F401
from depthlab.layers.activations import (
    SELU_ALPHA,
    SELU_LAMBDA,
    ActivationDef,
    resolve_activation,
)
from depthlab.layers.dropout import AlphaDropout, make_dropout
from depthlab.layers.inits import InitContext, critical_sigma_w2_for, init_model, resolve_init
from depthlab.layers.norms import resolve_norm
from depthlab.layers.residual import Residual, ResidualScale, residual_alpha

__all__ = [
    "SELU_ALPHA",
    "SELU_LAMBDA",
    "ActivationDef",
    "AlphaDropout",
    "InitContext",
    "Residual",
    "ResidualScale",
    "critical_sigma_w2_for",
    "init_model",
    "make_dropout",
    "resolve_activation",
    "resolve_init",
    "resolve_norm",
    "residual_alpha",
]
