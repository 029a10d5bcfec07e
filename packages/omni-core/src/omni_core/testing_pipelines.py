"""What calling diffusers directly gives, for tests that compare omni's path against it.

Loads the model with diffusers' own ``from_pretrained``, derives the
image-to-image or inpainting pipeline with ``AutoPipelineFor*.from_pipe``
and calls it the way a diffusers user would (PIL inputs, one generator per
image): omni's runner is not involved, so equal 8-bit images mean omni adds
nothing and loses nothing. Needs the ``[diffusers]`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from omni_core.images import ImageArray


def sample_image(seed: int, size: int = 64) -> ImageArray:
    """A smooth random RGB picture (noise upsampled), a stand-in for a user's photo."""
    from PIL import Image

    coarse = np.random.default_rng(seed).integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def sample_mask(size: int = 64) -> ImageArray:
    """A square hole in the middle: 255 (repaint) inside, 0 outside."""
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    return mask


def direct_images(
    model: str | Path,
    *,
    prompt: str,
    seed: int,
    image: ImageArray | None = None,
    mask_image: ImageArray | None = None,
    lora: str | Path | None = None,
    **arguments: Any,
) -> list[ImageArray]:
    """One image from the model's pipeline (derived for ``image``/``mask_image``), as 8-bit RGB."""
    import torch
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, DiffusionPipeline
    from PIL import Image

    pipeline = DiffusionPipeline.from_pretrained(str(model), local_files_only=True)
    if lora is not None:
        pipeline.load_lora_weights(str(lora))
    if mask_image is not None:
        pipeline = AutoPipelineForInpainting.from_pipe(pipeline)
        arguments["mask_image"] = [Image.fromarray(mask_image)]
    elif image is not None:
        pipeline = AutoPipelineForImage2Image.from_pipe(pipeline)
    if image is not None:
        arguments["image"] = [Image.fromarray(image)]
    pipeline.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        result = pipeline(
            prompt=[prompt], generator=[torch.Generator().manual_seed(seed)], output_type="np", **arguments
        )
    scaled = (np.clip(np.asarray(result.images), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return [np.ascontiguousarray(one) for one in scaled]
