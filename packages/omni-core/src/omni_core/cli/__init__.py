"""The ``omni`` command, and the door for packages that add subcommands to it.

Executor packages add subcommands through the ``omni.cli`` entry points; their flags come
from the same declarations as the config's (:mod:`omni_core.cli.flags`), through the names
below. Importing this package imports click, never torch.
"""

from omni_core.cli.flags import (
    ENGINE_FIELDS,
    config_from_flags,
    config_options,
    declared_options,
    engine_options,
    flag_of,
    parse_cli_size,
    parse_lora_flags,
    parse_options,
    values_from_flags,
)

__all__ = [
    "ENGINE_FIELDS",
    "config_from_flags",
    "config_options",
    "declared_options",
    "engine_options",
    "flag_of",
    "parse_cli_size",
    "parse_lora_flags",
    "parse_options",
    "values_from_flags",
]
