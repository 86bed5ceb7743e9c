"""Model families, one file each, registered by name; ``build_model(spec, ...)`` builds any."""

from depthlab.models import cnn1d, icnn, mlp, resmlp  # noqa: F401  (registers the families)
from depthlab.models.base import Parts, build_model, register_arch

__all__ = ["Parts", "build_model", "register_arch"]
