"""Executor-specific options: each executor declares a dataclass, core checks it.

An executor sets ``options_class`` to a dataclass; the user's
``config.executor_options`` dict is checked against it: an unknown key is an
error listing the valid ones (with the closest match), and a value of the
wrong type names the option and the expected type. Keeping the schema a
dataclass means the defaults are documented where they are defined.

Ranges are declared on the field, not hand-checked in each executor::

    workers: int | None = field(default=None, metadata=at_least(1))
    timeout: float = field(default=5.0, metadata=above(0))

and enforced here, so every executor says the same thing about them.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, TypeVar, Union

from omni_core.errors import ExecutorOptionsError

OptionsT = TypeVar("OptionsT")


def at_least(minimum: float) -> dict[str, float]:
    """Field metadata: the option must be >= ``minimum`` (``None`` is always allowed)."""
    return {"min": minimum}


def above(bound: float) -> dict[str, float]:
    """Field metadata: the option must be > ``bound`` (``None`` is always allowed)."""
    return {"gt": bound}


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of an executor that takes none."""


def parse_executor_options(
    options_class: type[OptionsT], values: dict[str, Any], *, executor_name: str
) -> OptionsT:
    """Build ``options_class`` from ``values``, rejecting unknown keys and wrong types."""
    if not dataclasses.is_dataclass(options_class):
        raise TypeError(f"{executor_name}.options_class must be a dataclass")
    fields = {f.name: f for f in dataclasses.fields(options_class) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        first = unknown[0]
        close = difflib.get_close_matches(first, list(fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        valid = ", ".join(sorted(fields)) or "(this executor takes no options)"
        raise ExecutorOptionsError(
            f"unknown executor option(s) {unknown} for {executor_name}; valid options: {valid}{hint}"
        )
    hints = typing.get_type_hints(options_class)
    for name, value in values.items():
        expected = hints.get(name, Any)
        if not _matches(value, expected):
            raise ExecutorOptionsError(
                f"executor option {name!r} of {executor_name} must be {_describe(expected)}, "
                f"got {type(value).__name__} {value!r}"
            )
    for name, value in values.items():
        _check_range(name, value, fields[name].metadata, executor_name)
    for name, f in fields.items():
        if name not in values and f.default is not dataclasses.MISSING:
            _check_range(name, f.default, f.metadata, executor_name)
    try:
        return options_class(**values)
    except (TypeError, ValueError) as exc:
        raise ExecutorOptionsError(f"invalid options for {executor_name}: {exc}") from exc


def _check_range(name: str, value: Any, metadata: Any, executor_name: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if "min" in metadata and value < metadata["min"]:
        raise ExecutorOptionsError(
            f"executor option {name!r} of {executor_name} must be >= {metadata['min']}, got {value!r}"
        )
    if "gt" in metadata and value <= metadata["gt"]:
        raise ExecutorOptionsError(
            f"executor option {name!r} of {executor_name} must be > {metadata['gt']}, got {value!r}"
        )


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
    if origin is not None:
        expected = origin
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True


def _describe(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(expected))
    if expected is type(None):
        return "None"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(expected))
    return getattr(expected, "__name__", str(expected))
