"""Command-line flags built from declared settings, as vLLM's ``EngineArgs`` builds them.

A command names the settings it exposes; each flag's type, range, default and help come
from the field's declaration (:mod:`omni_core.declared`), so ``omni generate``, ``omni serve``
and the worker commands cannot drift from the config or from each other::

    @click.command()
    @config_options("model_name_or_path", "executor_class", "executor_options", "max_batch_size")
    def run(**params):
        config = config_from_flags(params)

A flag's destination is the field's name; the value parsed from the command line is
turned into the field's value here (``--option KEY=VALUE`` into a dict, ``--lora
NAME=PATH@SCALE`` into the LoRA table, a repeated flag into a list).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, Union

import click

from omni_core.declared import declared_fields
from omni_core.errors import ConfigError, ExecutorOptionsError, RequestValidationError
from omni_core.lora import parse_lora_option
from omni_core.validation import parse_size

CommandT = TypeVar("CommandT", bound=Callable[..., Any])

ENGINE_FIELDS = ("model_name_or_path", "model_class_name", "executor_class", "executor_options")
"""The settings every command that builds an engine takes (which model, which executor)."""


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs → dict; values are JSON when they parse as JSON, else strings."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--option")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def parse_lora_flags(texts: Iterable[str]) -> dict[str, Any]:
    """``--lora NAME=PATH[@SCALE]`` (repeated) → the config's LoRA table."""
    try:
        return dict(parse_lora_option(text) for text in texts)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lora") from exc


def parse_cli_size(text: str) -> tuple[int, int]:
    """``--size WxH`` → (width, height), through core's one size parser."""
    try:
        height, width = parse_size(text)
    except RequestValidationError as exc:
        raise click.BadParameter(exc.reason, param_hint="--size") from None
    return width, height


# Fields whose flag text needs more than a type to become the field's value (any other dict
# field is a repeatable KEY=VALUE flag, values read as JSON where they parse).
TEXT_PARSERS: dict[str, tuple[str, Callable[[Iterable[str]], Any]]] = {
    "loras": ("NAME=PATH[@SCALE]", parse_lora_flags),
}
KEY_VALUE = ("KEY=VALUE", parse_options)


def _text_parser(name: str, hint: Any) -> tuple[str, Callable[[Iterable[str]], Any]] | None:
    if name in TEXT_PARSERS:
        return TEXT_PARSERS[name]
    if typing.get_origin(_unwrap(hint)) is dict or _unwrap(hint) is dict:
        return KEY_VALUE
    return None


def flag_of(cls: type, name: str) -> str:
    """The flag that sets field ``name`` of ``cls`` (``--max-steps``, or ``--name-with-dashes``)."""
    flag = declared_fields(cls)[name].metadata.get("flag")
    return str(flag) if flag else "--" + name.replace("_", "-")


def declared_options(cls: type, *names: str) -> Callable[[CommandT], CommandT]:
    """A decorator adding one click option per named field of dataclass ``cls``."""
    fields = declared_fields(cls)
    hints = typing.get_type_hints(cls)

    def decorate(command: CommandT) -> CommandT:
        for name in reversed(names):
            command = _option(cls, fields[name], hints[name])(command)
        return command

    return decorate


def config_options(*names: str) -> Callable[[CommandT], CommandT]:
    """:func:`declared_options` of :class:`~omni_core.config.OmniDiffusionConfig`."""
    from omni_core.config import OmniDiffusionConfig

    return declared_options(OmniDiffusionConfig, *names)


def engine_options(command: CommandT) -> CommandT:
    """``--model``, ``--model-class``, ``--executor``, ``--option``: how a command builds its engine."""
    return config_options(*ENGINE_FIELDS)(command)


def values_from_flags(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """Take ``cls``'s fields out of a command's ``params`` (removed there), as field values.

    A flag left at its default is left out, so the dataclass's own default applies.
    """
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for name in declared_fields(cls):
        if name not in params:
            continue
        value = params.pop(name)
        if isinstance(value, tuple) and not value:
            continue  # a repeatable flag not given: the field's own default
        parser = _text_parser(name, hints[name])
        if parser is not None:
            value = parser[1](value)
        elif isinstance(value, tuple):
            value = list(value)
        values[name] = value
    return values


def config_from_flags(params: dict[str, Any], config_class: type | None = None, **fixed: Any) -> Any:
    """The config a command's flags describe (its fields taken out of ``params``), plus ``fixed``.

    A value the config refuses is a usage error naming the flag, as a bad flag value is.
    """
    from omni_core.config import OmniDiffusionConfig

    cls = config_class or OmniDiffusionConfig
    values = {**values_from_flags(cls, params), **fixed}
    try:
        return cls(**values)
    except ConfigError as exc:
        if exc.field is not None and exc.field in declared_fields(cls):
            raise click.BadParameter(exc.message, param_hint=flag_of(cls, exc.field)) from exc
        raise click.ClickException(str(exc)) from exc
    except (ExecutorOptionsError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc


def _option(cls: type, f: dataclasses.Field[Any], hint: Any) -> Callable[[CommandT], CommandT]:
    metadata: Mapping[str, Any] = f.metadata
    flag = flag_of(cls, f.name)
    default = None if f.default is dataclasses.MISSING else f.default
    kwargs: dict[str, Any] = {
        "help": metadata.get("help"),
        "envvar": metadata.get("envvar"),
        "required": bool(metadata.get("required")),
    }
    parser = _text_parser(f.name, hint)
    if parser is not None:
        return click.option(flag, f.name, multiple=True, metavar=parser[0], **kwargs)
    base = _unwrap(hint)
    origin = typing.get_origin(base)
    if origin in (list, tuple, set, frozenset):
        return click.option(flag, f.name, multiple=True, metavar="NAME", **kwargs)
    if base is bool:
        negative = "--no-" + flag.removeprefix("--")
        return click.option(f"{flag}/{negative}", f.name, default=default, show_default=True, **kwargs)
    kwargs["type"] = _click_type(base, metadata)
    return click.option(flag, f.name, default=default, show_default=default is not None, **kwargs)


def _unwrap(hint: Any) -> Any:
    """The type a flag's text becomes: ``X | None`` → X; ``str | type | None`` (the executor) → str."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if args else str
    return hint


def _click_type(base: Any, metadata: Mapping[str, Any]) -> Any:
    if typing.get_origin(base) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(base)])
    if base is int:
        low = metadata.get("min")
        if "gt" in metadata:
            low = int(metadata["gt"]) + 1
        return click.IntRange(min=low) if low is not None else int
    if base is float:
        if "gt" in metadata:
            return click.FloatRange(min=metadata["gt"], min_open=True)
        return click.FloatRange(min=metadata["min"]) if "min" in metadata else float
    return str
