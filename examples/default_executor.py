"""Generate one image with the default executor and the built-in model.

Run: python examples/default_executor.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.images import to_pil


def main() -> None:
    config = OmniDiffusionConfig(executor_options={"num_workers": 1})  # executor_class=None → "mp"
    with DiffusionEngine(config) as engine:
        output = engine.step([OmniDiffusionRequest(prompt="a handwritten 7", num_inference_steps=4, seed=0)])[
            0
        ]
        output.raise_for_error()
    target = Path(tempfile.mkdtemp()) / "default.png"
    to_pil(output.output[0]).save(target)
    print(f"{type(engine.executor).__name__} wrote {target} with seed {output.seed}")


if __name__ == "__main__":
    main()
