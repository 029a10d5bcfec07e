"""Which requests may share one pipeline call.

A diffusers call shares height, width, step count and guidance scale across
its whole batch (``pipe([p1, p2], ...)``), and the pipeline itself (text,
image-to-image or inpainting), ``strength``, every ``extra`` argument and the
active LoRA adapter, so only requests that agree on all of them batch
together. Each image still gets its own generator, so a request's images
do not depend on what it was batched with (beyond the last-bit float noise
of batched matmuls; see docs/architecture.md, Determinism).
Torch-free, so it is cheap to test and reuse in schedulers.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from omni_core.request import OmniDiffusionRequest

BatchKey = tuple[object, ...]
"""What requests must share to run in one pipeline call."""


def task_of(request: OmniDiffusionRequest) -> str:
    """Which pipeline a request needs: ``"text"``, ``"image"`` (image-to-image) or ``"inpaint"``."""
    if request.image is None:
        return "text"
    return "image" if request.mask_image is None else "inpaint"


def conditioning_key(request: OmniDiffusionRequest) -> BatchKey:
    """What else one call shares: the pipeline, input size, strength, extras and LoRA."""
    images = request.images
    shape = getattr(images[0], "shape", None) if images else None
    input_size = tuple(shape[:2]) if isinstance(shape, tuple) else None
    # default=repr: a key is computed before validation and must never raise; a bad value is
    # refused later, by the runner.
    extra = json.dumps(request.extra, sort_keys=True, default=repr) if request.extra else ""
    return (task_of(request), input_size, request.strength, extra, request.lora, request.lora_scale)


def batch_key(
    height: int | None,
    width: int | None,
    num_inference_steps: int | None,
    guidance_scale: float | None,
    conditioning: BatchKey,
) -> BatchKey:
    """The one definition of batch compatibility: a pipeline call shares all of these."""
    return (height, width, num_inference_steps, guidance_scale, conditioning)


def request_batch_key(request: OmniDiffusionRequest) -> BatchKey:
    """A queued request's key, before the model fills its defaults (queues group by it)."""
    return batch_key(
        request.height,
        request.width,
        request.num_inference_steps,
        request.guidance_scale,
        conditioning_key(request),
    )


@dataclass(frozen=True)
class PlannedRequest:
    """A validated request with every default filled in."""

    index: int
    """Position in the caller's list, so outputs go back in order."""
    request: OmniDiffusionRequest
    height: int | None
    width: int | None
    num_inference_steps: int | None
    guidance_scale: float | None
    seed: int

    @property
    def batch_key(self) -> BatchKey:
        """The key with the model's defaults filled in (the runner groups by it)."""
        return batch_key(
            self.height,
            self.width,
            self.num_inference_steps,
            self.guidance_scale,
            conditioning_key(self.request),
        )

    @property
    def num_images(self) -> int:
        """Images this request makes: ``n`` per input image (``n`` for text-to-image)."""
        return self.request.num_outputs_per_prompt * max(1, len(self.request.images))


def plan_batches(planned: Sequence[PlannedRequest], max_batch_images: int) -> list[list[PlannedRequest]]:
    """Group compatible requests, in arrival order, into batches of at most ``max_batch_images``.

    A request asking for more images than the cap runs alone rather than
    being refused: the cap bounds batching, not what a request may ask for.
    """
    groups: dict[BatchKey, list[list[PlannedRequest]]] = {}
    order: list[list[PlannedRequest]] = []
    for item in planned:
        batches = groups.setdefault(item.batch_key, [])
        current = batches[-1] if batches else None
        if current is None or sum(p.num_images for p in current) + item.num_images > max_batch_images:
            current = []
            batches.append(current)
            order.append(current)
        current.append(item)
    return order


# ---------------------------------------------------------------- batching mode

STEP_BATCHING_PIPELINES = frozenset(
    {
        "StableDiffusionPipeline",
        "StableDiffusionImg2ImgPipeline",
        "StableDiffusionInpaintPipeline",
        "StableDiffusionXLPipeline",
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
        "StableDiffusion3Pipeline",
        "StableDiffusion3Img2ImgPipeline",
        "StableDiffusion3InpaintPipeline",
        "FluxPipeline",
        "FluxImg2ImgPipeline",
        "FluxInpaintPipeline",
        "PixArtAlphaPipeline",
        "PixArtSigmaPipeline",
        "DigitsPipeline",
        "ShapesPipeline",
        "ShapesImg2ImgPipeline",
        "ShapesInpaintPipeline",
    }
)
"""Pipelines whose rows are independent through the denoiser (each row is its own image), so their
denoiser forwards may be merged across requests. A custom pipeline joins by naming its denoiser
in a class attribute ``omni_step_denoiser = "unet"`` (see docs/batching.md)."""
DENOISER_ATTRIBUTES = ("unet", "transformer")
Batching = Literal["step", "request"]
BATCHING_MODES: tuple[str, ...] = typing.get_args(Batching)


@dataclass(frozen=True)
class BatchingMode:
    """How a loaded model batches, and why (``describe`` reports it)."""

    mode: str
    """``"step"`` (requests join and leave at every denoising step) or ``"request"``."""
    denoiser: str | None
    """The pipeline attribute whose forwards are merged, in step mode."""
    reason: str


def choose_batching(requested: str, pipelines: dict[str, object]) -> BatchingMode:
    """The one place that decides the mode: step where asked and every task's pipeline allows it."""
    if requested == "request":
        return BatchingMode("request", None, "config.batching is 'request'")
    names: set[str] = set()
    for task, pipeline in pipelines.items():
        declared = getattr(pipeline, "omni_step_denoiser", None)
        if isinstance(declared, str):
            names.add(declared)
            continue
        cls = type(pipeline).__name__
        if cls not in STEP_BATCHING_PIPELINES:
            return BatchingMode("request", None, f"{cls} ({task}) is not a family omni decomposes into steps")
        found = next((n for n in DENOISER_ATTRIBUTES if getattr(pipeline, n, None) is not None), None)
        if found is None:
            return BatchingMode("request", None, f"{cls} has no unet or transformer to batch by step")
        names.add(found)
    if len(names) != 1:
        return BatchingMode(
            "request", None, f"the model's pipelines disagree on their denoiser: {sorted(names)}"
        )
    denoiser = names.pop()
    return BatchingMode("step", denoiser, f"every task's pipeline batches by step through its {denoiser}")
