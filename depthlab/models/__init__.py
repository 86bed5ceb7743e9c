"""Model families, one file each, registered by name; ``build_model(spec, ...)`` builds any."""

from depthlab.models import (  # noqa: F401  (registers the families)
    cnn1d,
    dagnn,
    gnn,
    graph_transformer,
    hypernet,
    icnn,
    kan,
    mlp,
    resmlp,
    sheaf,
)
from depthlab.models.base import Parts, build_model, register_arch

__all__ = ["Parts", "build_model", "register_arch"]
