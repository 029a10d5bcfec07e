"""Image-to-image, inpainting, pipeline arguments and a LoRA adapter, through one engine.

The built-in digits model draws from text only, so this builds omni's tiny
Stable Diffusion pipeline (random weights, the real diffusers classes) and a
LoRA adapter for it in a temporary folder; point ``model_name_or_path`` and
``loras`` at your own (e.g. a Stable Diffusion 1.5 folder and a LoRA file)
and nothing else changes.

Run: python examples/edit_inpaint_lora.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.models.tiny import build_tiny_lora, build_tiny_pipeline


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    model = build_tiny_pipeline(folder / "model")
    lora = build_tiny_lora(folder / "sketch-lora", model)

    # --8<-- [start:config]
    config = OmniDiffusionConfig(
        model_name_or_path=str(model),
        executor_class="inproc",  # or "mp" (the default), "http", "ray", "celery", ...: same requests
        loras={"sketch": {"path": str(lora), "scale": 0.8}},  # requests name adapters, never paths
        extra_allowed=["eta", "guidance_rescale"],  # optional: the only pipeline arguments requests may set
    )
    # --8<-- [end:config]
    photo = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # your image, 8-bit RGB
    hole = np.zeros((64, 64), dtype=np.uint8)
    hole[16:48, 16:48] = 255  # 255 = repaint, 0 = keep (diffusers' convention)

    # --8<-- [start:requests]
    requests = [
        OmniDiffusionRequest("a 7", image=photo, strength=0.6, seed=1, num_inference_steps=4),
        OmniDiffusionRequest("a 7", image=photo, mask_image=hole, seed=2, num_inference_steps=4),
        OmniDiffusionRequest("a 7", height=64, width=64, seed=3, extra={"eta": 1.0}),
        OmniDiffusionRequest("a 7", height=64, width=64, seed=4, lora="sketch", lora_scale=0.5),
    ]
    with DiffusionEngine(config) as engine:
        outputs = [output.raise_for_error() for output in engine.step(requests)]
    # --8<-- [end:requests]
    for request, output in zip(requests, outputs, strict=True):
        kind = (
            "inpaint" if request.mask_image is not None else "edit" if request.image is not None else "text"
        )
        print(f"{kind:8} extra={request.extra} lora={request.lora}: {output.output[0].shape}")


if __name__ == "__main__":
    main()
