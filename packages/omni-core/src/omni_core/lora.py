"""The LoRA adapters an operator offers, as the config names them.

A request names an adapter (``lora="sketch"``); the file it loads is always
the operator's (``OmniDiffusionConfig.loras``), never a path from a request.
Torch-free: the config and the servers check names without loading anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omni_core.declared import is_finite_number


@dataclass(frozen=True)
class LoraAdapter:
    """One configured adapter: what ``load_lora_weights`` reads and its default weight."""

    name: str
    path: str
    """A folder (or file) ``load_lora_weights`` accepts."""
    scale: float = 1.0
    """The weight used when a request gives no ``lora_scale``."""
    weight_name: str | None = None
    """The file inside ``path``, when the folder holds several."""


def parse_loras(raw: Mapping[str, Any]) -> dict[str, LoraAdapter]:
    """``config.loras`` (name → path, or name → ``{"path", "scale", "weight_name"}``) as adapters.

    Raises ``ValueError`` naming the entry and the fix.
    """
    if not isinstance(raw, Mapping):
        raise TypeError(f"loras must be a dict of name -> path, got {type(raw).__name__}")
    adapters: dict[str, LoraAdapter] = {}
    for name, spec in raw.items():
        where = f"loras[{name!r}]"
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: adapter names must be non-empty strings")
        if isinstance(spec, str):
            spec = {"path": spec}
        if not isinstance(spec, Mapping):
            raise ValueError(f"{where} must be a path or a dict with 'path' (and 'scale', 'weight_name')")
        unknown = sorted(set(spec) - {"path", "scale", "weight_name"})
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; use 'path', 'scale', 'weight_name'")
        path, scale, weight_name = spec.get("path"), spec.get("scale", 1.0), spec.get("weight_name")
        if not isinstance(path, str) or not path:
            raise ValueError(f"{where}: 'path' must be a folder or file load_lora_weights can read")
        if not is_finite_number(scale):
            raise ValueError(f"{where}: 'scale' must be a finite number, got {scale!r}")
        if weight_name is not None and not isinstance(weight_name, str):
            raise ValueError(f"{where}: 'weight_name' must be a file name or None")
        adapters[name] = LoraAdapter(name, path, float(scale), weight_name)
    return adapters


def parse_lora_option(text: str) -> tuple[str, dict[str, Any]]:
    """A command line's ``NAME=PATH[@SCALE]`` as a ``loras`` entry (``omni serve --lora``)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"--lora {text!r}: write NAME=PATH or NAME=PATH@SCALE")
    path, at, scale = rest.rpartition("@") if "@" in rest else (rest, "", "")
    spec: dict[str, Any] = {"path": path}
    if at:
        try:
            spec["scale"] = float(scale)
        except ValueError:
            raise ValueError(f"--lora {text!r}: the scale after '@' must be a number") from None
    return name, spec
