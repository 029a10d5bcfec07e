"""Select an executor by passing its class: no registry, no string, checked by your type checker.

Run: python examples/executor_by_class.py
"""

from __future__ import annotations

from omni_core import DiffusionEngine, OmniDiffusionConfig
from omni_core.executors.inproc import InProcDiffusionExecutor


def main() -> None:
    config = OmniDiffusionConfig(executor_class=InProcDiffusionExecutor)
    with DiffusionEngine(config) as engine:
        output = engine.generate("a handwritten 5", height=64, width=64, seed=3).raise_for_error()
    print(f"{type(engine.executor).__name__}: {output.output[0].shape}, seed {output.seed}")


if __name__ == "__main__":
    main()
