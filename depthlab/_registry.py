"""One generic registry. A miss lists the valid names; registering a name twice is an error.

Every kind of component (architectures, activations, initialisers, norms, datasets, techniques,
probes, claims) has one module-level ``Registry`` here, filled by ``@register_*`` decorators in the
files that define the components.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from depthlab.exceptions import DepthlabError, UnknownComponentError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → component map for one kind of component."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, item: T, doc: str = "") -> T:
        if not name or name != name.strip():
            raise DepthlabError(f"invalid {self.kind} name {name!r}")
        if name in self._items:
            raise DepthlabError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        self._docs[name] = doc or _first_line(getattr(item, "__doc__", None))
        return item

    def decorator(self, name: str, doc: str = "") -> Callable[[T], T]:
        def wrap(item: T) -> T:
            return self.register(name, item, doc)

        return wrap

    def get(self, name: str, field: str = "") -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownComponentError(self.kind, name, self._items, field) from None

    def doc(self, name: str) -> str:
        return self._docs.get(name, "")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""


ARCHS: Registry = Registry("architecture")
ACTIVATIONS: Registry = Registry("activation")
INITS: Registry = Registry("initialiser")
NORMS: Registry = Registry("norm")
DATASETS: Registry = Registry("dataset")
TECHNIQUES: Registry = Registry("technique")
PROBES: Registry = Registry("probe")
CLAIMS: Registry = Registry("claim")
