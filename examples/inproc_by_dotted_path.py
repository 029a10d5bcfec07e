"""Select an executor by dotted path (any DiffusionExecutor subclass works the same way).

Run: python examples/inproc_by_dotted_path.py
"""

from __future__ import annotations

from omni_core import DiffusionEngine, OmniDiffusionConfig


def main() -> None:
    config = OmniDiffusionConfig(executor_class="omni_core.executors.inproc:InProcDiffusionExecutor")
    with DiffusionEngine(config) as engine:
        output = engine.generate("a handwritten 3", height=64, width=64, num_inference_steps=4, seed=1)
    print(f"{type(engine.executor).__name__}: {output.output[0].shape}, seed {output.seed}")


if __name__ == "__main__":
    main()
