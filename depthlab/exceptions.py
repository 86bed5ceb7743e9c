"""One error hierarchy. Every message quotes the bad value and, where there is a list, the choices.

The CLI turns any ``DepthlabError`` into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "DepthlabError",
    "SpecError",
    "UnknownComponentError",
    "DataError",
    "ProbeError",
    "StoreError",
    "MissingDependencyError",
]


class DepthlabError(Exception):
    """Root of every error depthlab raises on purpose."""


class SpecError(DepthlabError):
    """A spec field holds a value that is not allowed.

    ``field`` is the dotted path of the field (``arch.width``), set as the error travels up
    through nested specs, so the message always names where the bad value sits.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.detail = message
        super().__init__(f"{field}: {message}" if field else message)

    def under(self, prefix: str) -> SpecError:
        """The same error with ``prefix`` prepended to the field path."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        err = type(self).__new__(type(self))
        SpecError.__init__(err, field, self.detail)
        for k, v in self.__dict__.items():
            if k not in ("field", "detail"):
                setattr(err, k, v)
        return err


class UnknownComponentError(SpecError):
    """A name that no registry holds. A spec error too: a bad name in a spec is a bad value."""

    def __init__(self, kind: str, name: object, choices: Iterable[str], field: str = "") -> None:
        self.kind = kind
        self.name = name
        self.choices = sorted(choices)
        super().__init__(
            field, f"unknown {kind} {name!r}; choices: {', '.join(self.choices) or '(none)'}"
        )


class DataError(DepthlabError):
    """Data that cannot be used: missing file, wrong shape, NaN values, mismatched lengths."""


class ProbeError(DepthlabError):
    """A probe cannot run on the given model or data."""


class StoreError(DepthlabError):
    """The run store cannot be read or written."""


class MissingDependencyError(DepthlabError):
    """An optional package (an extra such as ``depthlab[graph]``) is needed and not installed."""
