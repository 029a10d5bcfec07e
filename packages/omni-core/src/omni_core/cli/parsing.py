"""Parsers for CLI values shared by subcommands (``omni serve`` reuses them)."""

from __future__ import annotations

import json
from typing import Any

import click


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` → (width, height), as OpenAI's ``size`` field writes it."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise click.BadParameter(f"{text!r} is not WIDTHxHEIGHT, e.g. 64x64", param_hint="--size")
    return int(parts[0]), int(parts[1])


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
