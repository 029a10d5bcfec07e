"""Parsers for CLI values shared by subcommands (``omni serve`` reuses them)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from omni_core.errors import RequestValidationError
from omni_core.validation import parse_size

CommandT = TypeVar("CommandT", bound=Callable[..., Any])


def engine_options(command: CommandT) -> CommandT:
    """``--model``, ``--model-class``, ``--executor``, ``--option``: how a command builds its engine."""
    for option in reversed(
        (
            click.option(
                "--model", default=None, help="diffusers model folder or hub id [default: built-in model]"
            ),
            click.option(
                "--model-class", default=None, help="diffusers pipeline class, e.g. StableDiffusionPipeline"
            ),
            click.option(
                "--executor",
                envvar="OMNI_EXECUTOR",
                default=None,
                help="shorthand or dotted path 'pkg.mod:Cls' [env: OMNI_EXECUTOR; default: mp]",
            ),
            click.option(
                "--option", "options", multiple=True, metavar="KEY=VALUE", help="executor option (repeatable)"
            ),
        )
    ):
        command = option(command)
    return command


def parse_cli_size(text: str) -> tuple[int, int]:
    """``--size WxH`` → (width, height), through core's one size parser."""
    try:
        height, width = parse_size(text)
    except RequestValidationError as exc:
        raise click.BadParameter(exc.reason, param_hint="--size") from None
    return width, height


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
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
