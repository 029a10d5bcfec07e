"""Previews from inside the step loop: the model's x0 estimate, decoded cheaply.

x0 (the clean image the model predicts at this step) is what the scheduler
computes anyway: DDIM, Euler and their relatives return it as
``pred_original_sample``; flow-matching schedulers (SD3, Flux) do not, and
for them x0 is ``sample - sigma * velocity``. :class:`X0Capture` wraps one
pipeline call's scheduler ``step`` to keep the latest one, so no pipeline
needs to know about previews.

Decoding it goes by what the pipeline works on:

- a pipeline with ``omni_preview(x0)`` (omni's built-in models, which work on
  pixels) decodes it itself, exactly;
- a latent pipeline with a VAE gets a linear latent-to-RGB map (C+1 numbers
  per color), fitted once per VAE by least squares against one decode of
  random latents. A full VAE decode at 1024² costs about as much as several
  denoising steps; the linear map costs one small matrix product, and a
  preview is a preview (blurry at the latent's resolution, colors right);
- a pixel-space pipeline's x0 (1 or 3 channels in [-1, 1]) is the image;
- packed latents (Flux's sequence of patches) have no picture to show
  without the pipeline's own unpacking: no preview, and the request gets
  fewer partial images, as OpenAI's API allows.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from omni_core.images import ImageArray

FIT_LATENT_SIDE = 16
"""Side of the random latents the linear map is fitted on (256 pixels each, 4 of them)."""


class X0Capture:
    """Keeps the latest x0 estimate of one pipeline call's scheduler."""

    def __init__(self) -> None:
        self.latest: Any = None

    @contextmanager
    def installed(self, scheduler: Any) -> Iterator[X0Capture]:
        """Wrap ``scheduler.step`` (this instance only) for the duration of a pipeline call."""
        real_step = scheduler.step
        flow_matching = type(scheduler).__name__.startswith("FlowMatch")
        capture = self

        def step(this: Any, model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any) -> Any:
            result = real_step(model_output, timestep, sample, *args, **kwargs)
            x0 = getattr(result, "pred_original_sample", None)
            if x0 is None and isinstance(result, tuple) and len(result) > 1:
                x0 = result[1]
            if x0 is None and flow_matching and getattr(this, "step_index", None):
                x0 = sample - this.sigmas[this.step_index - 1] * model_output
            capture.latest = x0
            return result

        scheduler.__dict__["step"] = types.MethodType(step, scheduler)
        try:
            yield self
        finally:
            scheduler.__dict__.pop("step", None)


def decode_preview(pipeline: Any, x0: Any, height: int | None, width: int | None) -> list[ImageArray] | None:
    """``x0`` (a batch of latents or pixels) as 8-bit RGB images of ``height`` x ``width``; None if
    this pipeline's latents have no cheap picture (see the module's docstring)."""
    import torch

    if x0 is None or x0.ndim != 4:
        return None
    with torch.no_grad():
        if hasattr(pipeline, "omni_preview"):
            pixels = pipeline.omni_preview(x0)
        elif getattr(pipeline, "vae", None) is not None:
            pixels = _latent_rgb(pipeline.vae).apply(x0)
        elif x0.shape[1] in (1, 3):
            pixels = (
                (x0.float().clamp(-1, 1) / 2 + 0.5).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).cpu().numpy()
            )
        else:
            return None
    return [_resized(image, height, width) for image in np.asarray(pixels)]


def _resized(image: Any, height: int | None, width: int | None) -> ImageArray:
    """8-bit, at the requested size (``None``: the size the model drew)."""
    from PIL import Image

    array: ImageArray = np.clip(np.asarray(image, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if height is None or width is None or array.shape[:2] == (height, width):
        return array
    resized: ImageArray = np.asarray(
        Image.fromarray(array).resize((width, height), Image.Resampling.BILINEAR)
    )
    return resized


class LatentRGB:
    """A linear map from a VAE's latent channels to RGB in [0, 1]."""

    def __init__(self, weights: Any) -> None:
        self.weights = weights  # (channels + 1, 3): the last row is the bias

    def apply(self, latents: Any) -> Any:
        weights = self.weights.to(latents.device, latents.dtype)
        rgb = latents.permute(0, 2, 3, 1) @ weights[:-1] + weights[-1]
        return (rgb.float().clamp(-1, 1) / 2 + 0.5).cpu().numpy()

    @classmethod
    def fit(cls, vae: Any) -> LatentRGB:
        import torch
        import torch.nn.functional as functional

        parameter = next(vae.parameters())
        channels = int(vae.config.latent_channels)
        generator = torch.Generator().manual_seed(0)
        latents = torch.randn(4, channels, FIT_LATENT_SIDE, FIT_LATENT_SIDE, generator=generator)
        latents = latents.to(parameter.device, parameter.dtype)
        scale = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
        shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)
        decoded = vae.decode(latents / scale + shift).sample.float()
        factor = max(1, decoded.shape[-1] // FIT_LATENT_SIDE)
        pooled = functional.avg_pool2d(decoded, factor)
        inputs = latents.float().permute(0, 2, 3, 1).reshape(-1, channels)
        inputs = torch.cat([inputs, torch.ones(len(inputs), 1, device=inputs.device)], dim=1)
        targets = pooled.permute(0, 2, 3, 1).reshape(-1, 3)
        return cls(torch.linalg.lstsq(inputs.cpu(), targets.cpu()).solution)


def _latent_rgb(vae: Any) -> LatentRGB:
    """The VAE's map, fitted on first use and kept on the VAE (so it lives and dies with the model)."""
    fitted: LatentRGB | None = vae.__dict__.get("_omni_latent_rgb")
    if fitted is None:
        fitted = LatentRGB.fit(vae)
        vae.__dict__["_omni_latent_rgb"] = fitted
    return fitted
