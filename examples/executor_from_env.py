"""Choose the executor from the environment, so one program runs anywhere (laptop, GPU box, Lambda).

``OMNI_EXECUTOR`` holds a shorthand or dotted path and ``OMNI_EXECUTOR_OPTIONS``
a JSON object; ``omni generate`` and ``omni serve`` read ``OMNI_EXECUTOR`` too.
Unset, the config's default applies (``None`` means ``"mp"``).

Run: OMNI_EXECUTOR=inproc python examples/executor_from_env.py
"""

from __future__ import annotations

import json
import os

from omni_core import DiffusionEngine, OmniDiffusionConfig


# --8<-- [start:config]
def config_from_environment() -> OmniDiffusionConfig:
    options = json.loads(os.environ.get("OMNI_EXECUTOR_OPTIONS", "{}"))
    if not isinstance(options, dict):
        raise ValueError("OMNI_EXECUTOR_OPTIONS must be a JSON object, e.g. '{\"num_workers\": 2}'")
    return OmniDiffusionConfig(executor_class=os.environ.get("OMNI_EXECUTOR"), executor_options=options)


# --8<-- [end:config]


def main() -> None:
    os.environ.setdefault("OMNI_EXECUTOR", "inproc")  # so the example runs the same everywhere
    with DiffusionEngine(config_from_environment()) as engine:
        output = engine.generate("a handwritten 2", height=64, width=64, seed=4).raise_for_error()
    name = type(engine.executor).__name__
    print(f"OMNI_EXECUTOR={os.environ['OMNI_EXECUTOR']!r} -> {name}, seed {output.seed}")


if __name__ == "__main__":
    main()
