"""Settings declared once, on the dataclass field, and checked by one parser.

omni's settings are dataclasses: the engine's config (:class:`~omni_core.config.OmniDiffusionConfig`),
each executor's options, a server's settings. A field says what it takes in its annotation
(``int``, ``float | None``, ``Literal[...]``, ``list[str]``) and its constraints and help in
its metadata::

    max_batch_size: int = field(default=8, metadata=at_least(1, help="images one batch may hold"))
    request_timeout: float | None = field(default=None, metadata=above(0, flag="--timeout"))

:func:`check_values` holds every value to its declaration (the same words for every
setting: ``"must be int >= 1, got 0"``), and :mod:`omni_core.cli.flags` builds a command's
flags from the same declarations, so a default, a range or a help text is written once.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeGuard, Union


def declare(
    *, help: str | None = None, flag: str | None = None, envvar: str | None = None, **constraints: Any
) -> dict[str, Any]:
    """Field metadata: ``help`` for ``--help``, ``flag`` when the CLI spells it otherwise, the
    environment variable the flag also reads, ``required=True`` for a flag that must be given, and
    constraints (``min``, ``gt``)."""
    metadata: dict[str, Any] = dict(constraints)
    for key, value in (("help", help), ("flag", flag), ("envvar", envvar)):
        if value is not None:
            metadata[key] = value
    return metadata


def at_least(minimum: float, **declaration: Any) -> dict[str, Any]:
    """Field metadata: the value must be >= ``minimum`` (``None`` is allowed where the type allows it)."""
    return declare(min=minimum, **declaration)


def above(bound: float, **declaration: Any) -> dict[str, Any]:
    """Field metadata: the value must be > ``bound`` (and finite)."""
    return declare(gt=bound, **declaration)


def is_finite_number(value: object) -> TypeGuard[float]:
    """An int or float that is neither a bool, NaN nor infinite: what every numeric setting needs."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def declared_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """The init fields of a declared dataclass, by name."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def problem_with(value: Any, expected: Any, metadata: Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` for a field of type ``expected``, in words; ``None`` if nothing."""
    if not _matches(value, expected):
        return f"must be {describe_type(expected)}, got {type(value).__name__} {value!r}"
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if "min" in metadata and value < metadata["min"]:
        return f"must be >= {metadata['min']}, got {value!r}"
    if "gt" in metadata and value <= metadata["gt"]:
        return f"must be > {metadata['gt']}, got {value!r}"
    return None


def check_values(cls: type, values: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first ``(field, problem)`` among ``values`` for dataclass ``cls``; ``None`` if all hold."""
    fields = declared_fields(cls)
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        found = problem_with(value, hints.get(name, Any), fields[name].metadata if name in fields else {})
        if found is not None:
            return name, found
    return None


def describe_type(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin in (Union, types.UnionType):
        return " or ".join(describe_type(arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return "None"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(expected))
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(expected)
        return f"a list of {describe_type(args[0])}" if args else "a list"
    if origin is dict:
        return "a dict"
    return getattr(expected, "__name__", str(expected))


def _matches(value: Any, expected: Any) -> bool:
    if expected is Any:
        return True
    origin = typing.get_origin(expected)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    if origin in (list, tuple, set, frozenset):
        (item,) = typing.get_args(expected)[:1] or (Any,)
        return isinstance(value, (list, tuple, set, frozenset)) and all(_matches(v, item) for v in value)
    if origin is not None:
        expected = origin
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True
