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
from typing import Any, TypeVar

from omni_core.declared import above, at_least, check_values, declared_fields
from omni_core.errors import ExecutorOptionsError, OmniError

__all__ = ["NoOptions", "above", "at_least", "parse_executor_options"]

OptionsT = TypeVar("OptionsT")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of an executor that takes none."""


def parse_executor_options(
    options_class: type[OptionsT], values: dict[str, Any], *, executor_name: str
) -> OptionsT:
    """Build ``options_class`` from ``values``, rejecting unknown keys, wrong types and ranges."""
    if not dataclasses.is_dataclass(options_class):
        raise TypeError(f"{executor_name}.options_class must be a dataclass")
    fields = declared_fields(options_class)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        first = unknown[0]
        close = difflib.get_close_matches(first, list(fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        valid = ", ".join(sorted(fields)) or "(this executor takes no options)"
        raise ExecutorOptionsError(
            f"unknown executor option(s) {unknown} for {executor_name}; valid options: {valid}{hint}"
        )
    defaults = {
        name: f.default
        for name, f in fields.items()
        if name not in values and f.default is not dataclasses.MISSING
    }
    found = check_values(options_class, {**values, **defaults})
    if found is not None:
        name, problem = found
        raise ExecutorOptionsError(f"executor option {name!r} of {executor_name} {problem}", field=name)
    try:
        return options_class(**values)
    except OmniError as exc:  # the options' own check, naming its option
        where = f"option {exc.field!r} " if exc.field else ""
        raise ExecutorOptionsError(
            f"invalid {where}for {executor_name}: {exc.message}", field=exc.field
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ExecutorOptionsError(f"invalid options for {executor_name}: {exc}") from exc
