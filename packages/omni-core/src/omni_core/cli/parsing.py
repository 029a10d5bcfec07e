"""Parsers for CLI values shared by subcommands (``omni serve`` reuses them)."""

from __future__ import annotations

import json
from typing import Any

import click

from omni_core.errors import RequestValidationError
from omni_core.validation import parse_size


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
