"""Each published claim depthlab relies on, as a runnable experiment with its pass criterion.

``depthlab claims`` lists them; ``depthlab reproduce NAME [--quick]`` runs one. Every claim is a
module here; importing this package registers them all.
"""

from depthlab.claims.base import (
    Check,
    Claim,
    ClaimResult,
    Context,
    Evidence,
    claim_names,
    get_claim,
    register_claim,
    reproduce,
)


def _register_all() -> None:
    """Import every claim module in this package (each registers itself)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base", "docs", "common"):
            importlib.import_module(f"{__name__}.{info.name}")


_register_all()

__all__ = [
    "Check",
    "Claim",
    "ClaimResult",
    "Context",
    "Evidence",
    "claim_names",
    "get_claim",
    "register_claim",
    "reproduce",
]
