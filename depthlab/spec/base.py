"""The shared machinery of every spec: strict dict/YAML round-trip, type checks, a stable hash.

A spec is a frozen dataclass whose fields are plain values (int, float, bool, str, tuples of
them, nested specs) or, for component fields such as ``act``, a callable. ``from_dict`` rejects
unknown keys by listing the valid ones, and every check raises ``SpecError`` naming the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from depthlab.exceptions import SpecError

S = TypeVar("S", bound="Spec")

_HINTS: dict[type, dict[str, Any]] = {}


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, reading ``1e-3`` and ``1.0e9`` as numbers (as YAML 1.2 does).

    PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent (``1.0e+9``), so
    ``lr: 1e-3`` would arrive as the string ``"1e-3"``.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def callable_name(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of an importable callable, the form specs store callables in."""
    return f"{fn.__module__}:{fn.__qualname__}"


def import_callable(path: str, field: str) -> Callable[..., Any]:
    """Import ``module:attr`` (the form a YAML file names a user's callable in)."""
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SpecError(field, f"cannot import {path!r}: {exc}") from None
    if not callable(obj):
        raise SpecError(field, f"{path!r} is not callable")
    return typing.cast(Callable[..., Any], obj)


@dataclasses.dataclass(frozen=True)
class Spec:
    """Base class of all specs. Subclasses add fields and override ``_check``."""

    _section: ClassVar[str] = ""
    #: Fields that say where a spec runs, not what it computes: left out of ``content_hash``
    #: (the same run on another device is the same run, and a resumed sweep does not redo it).
    UNHASHED: ClassVar[tuple[str, ...]] = ()
    #: Fields added after specs were already stored: left out of ``content_hash`` while they hold
    #: their default, so adding a field never changes the id of a run stored before it existed
    #: (a resumed sweep, or a calibration split by run id, sees the same runs).
    HASHED_WHEN_SET: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            checked = _check_type(value, _hints(type(self))[f.name], f.name)
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        self._check()

    def _check(self) -> None:
        """Range and choice checks beyond types; raise ``SpecError(field, message)``."""

    # -- dict / YAML ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any] | None) -> S:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SpecError("", f"expected a mapping of fields, got {type(data).__name__} {data!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            raise SpecError(str(unknown[0]), f"unknown key; valid keys: {', '.join(sorted(names))}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            hint = _hints(cls)[key]
            sub = _spec_class(hint)
            if value is None and _admits_none(hint):
                kwargs[key] = None  # ``X | None``: null means no X, not a default X
                continue
            if sub is not None and not isinstance(value, Spec):
                try:
                    value = sub.from_dict(value)
                except SpecError as err:
                    raise err.under(key) from None
            elif _is_spec_tuple(hint) and isinstance(value, list | tuple):
                value = tuple(_spec_item(hint, key, i, v) for i, v in enumerate(value))
            kwargs[key] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-safe); callables become their ``module:qualname``."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_yaml(cls: type[S], text: str) -> S:
        try:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SpecError("", f"malformed YAML{where}: {problem}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls: type[S], path: str | Path) -> S:
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise SpecError("", f"spec file not found: {str(p)!r}") from None
        except OSError as exc:
            raise SpecError("", f"cannot read spec file {str(p)!r}: {exc.strerror}") from None
        try:
            return cls.from_yaml(text)
        except SpecError as err:
            raise SpecError(err.field, f"{err.detail} (in {p})") from None

    def content_hash(self) -> str:
        """A stable 16-hex-digit hash of the spec's content (same spec, same hash, any process)."""
        blob = json.dumps(_identity(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(field, f"{value!r} is not valid; choices: {', '.join(choices)}")


def check_range(
    field: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """``lo <= value <= hi`` (open ends where asked), or a ``SpecError`` stating the range."""
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (
        hi is not None and (value >= hi if hi_open else value > hi)
    )
    if bad:
        left = "" if lo is None else f"{lo} {'<' if lo_open else '<='} "
        right = "" if hi is None else f" {'<' if hi_open else '<='} {hi}"
        raise SpecError(field, f"{value!r} is not valid; expected {left}value{right}")


def check_min(field: str, value: float, minimum: float, hint: str = "") -> None:
    """``value >= minimum`` or a ``SpecError`` saying so (``hint`` adds what a value means)."""
    if value < minimum:
        extra = f" {hint}" if hint else ""
        raise SpecError(field, f"{value!r} is not valid; expected >= {minimum}{extra}")


def check_positive_ints(field: str, value: int | tuple[int, ...], minimum: int = 1) -> None:
    items = value if isinstance(value, tuple) else (value,)
    if not items:
        raise SpecError(field, "is an empty list; give at least one value")
    for v in items:
        if v < minimum:
            raise SpecError(field, f"{v!r} is not valid; expected an integer >= {minimum}")


# -- helpers ----------------------------------------------------------------------------------
def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _spec_class(hint: Any) -> type[Spec] | None:
    for h in (hint, *typing.get_args(hint)):
        if isinstance(h, type) and issubclass(h, Spec):
            return h
    return None


def _admits_none(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(hint)
    )


def _is_spec_tuple(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple and any(
        _is_mapping_hint(a) for a in typing.get_args(hint)
    )


def _is_mapping_hint(h: Any) -> bool:
    return typing.get_origin(h) in (dict, Mapping) or h in (dict, Mapping)


def _spec_item(hint: Any, key: str, i: int, value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise SpecError(f"{key}[{i}]", f"expected a mapping, got {value!r}")


def plain(value: Any) -> Any:
    """Plain YAML/JSON data: specs become dicts, tuples lists, callables ``module:qualname``."""
    if isinstance(value, Spec):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if callable(value):
        return callable_name(value)
    return value


def _at_default(spec: Spec, f: dataclasses.Field[Any]) -> bool:
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        return False
    return bool(getattr(spec, f.name) == default)


def _identity(value: Any) -> Any:
    """``plain(value)`` without any spec's ``UNHASHED`` fields, nor its ``HASHED_WHEN_SET``
    fields at their default, at any depth."""
    if isinstance(value, Spec):
        return {
            f.name: _identity(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in value.UNHASHED
            and not (f.name in value.HASHED_WHEN_SET and _at_default(value, f))
        }
    if isinstance(value, tuple | list):
        return [_identity(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _identity(v) for k, v in value.items()}
    return plain(value)


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if isinstance(hint, type):
        return {
            "int": "an integer",
            "float": "a number",
            "bool": "true/false",
            "str": "a string",
        }.get(hint.__name__, hint.__name__)
    origin = typing.get_origin(hint)
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is Callable or origin is Callable or origin is typing.get_origin(Callable[..., Any]):
        return "a callable"
    return str(hint)


def _check_type(value: Any, hint: Any, field: str) -> Any:
    """Return ``value`` (coerced where lossless: int→float, list→tuple) or raise ``SpecError``."""
    ok, out = _match(value, hint)
    if not ok:
        raise SpecError(field, f"{value!r} is not valid; expected {_type_name(hint)}")
    return out


def _match(value: Any, hint: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, out = _match(value, arg)
            if ok:
                return True, out
        return False, value
    if hint is Any:
        return True, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, value
        return math.isfinite(value), float(value)
    if hint is str:
        return isinstance(value, str), value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        (item,) = typing.get_args(hint)[:1]
        out = []
        for v in value:
            ok, o = _match(v, item)
            if not ok:
                return False, value
            out.append(o)
        return True, tuple(out)
    if _is_mapping_hint(hint):
        return isinstance(value, Mapping), value
    if origin is not None and origin is typing.get_origin(Callable[..., Any]):
        return callable(value) and not isinstance(value, str), value
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return False, value
