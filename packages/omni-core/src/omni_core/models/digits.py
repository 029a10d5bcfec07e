"""``DigitsPipeline``: omni's built-in text-to-image model of handwritten digits.

A small pixel-space diffusion model (no VAE: 8x8 grayscale is already
small) with a CLIP text encoder and the byte-level tokenizer, trained by
:mod:`omni_core.models.train_digits` on scikit-learn's bundled digits. It is
a real diffusers pipeline (``DiffusionPipeline`` subclass, saved with
``save_pretrained``, loaded with ``from_pretrained``) and speaks the usual
call signature, so every executor runs it like any other model. Images are
drawn at the data's own 8x8 and upscaled (bicubic) to the requested size.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from omni_core.models.digits_constants import NATIVE_SIZE, PROMPT_TOKENS, names_a_digit


class DigitsPipeline(DiffusionPipeline):  # type: ignore[misc]
    """Text → handwritten digit; ``pipe("a handwritten 7", height=64, width=64)``."""

    model_cpu_offload_seq = "text_encoder->unet"
    _callback_tensor_inputs = ["latents"]  # noqa: RUF012 - diffusers' own convention

    def __init__(self, unet: Any, text_encoder: Any, tokenizer: Any, scheduler: Any) -> None:
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        # Read by omni's runner to pick the default size, as for Stable Diffusion.
        self.default_sample_size = 64
        self.vae_scale_factor = 1
        self._num_timesteps = 0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=PROMPT_TOKENS, truncation=True, return_tensors="pt"
        )
        return self.text_encoder(tokens.input_ids.to(self.device))[0]

    def __call__(
        self,
        prompt: str | list[str],
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 8,
        guidance_scale: float = 1.5,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Any:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if any(not names_a_digit(text) for text in prompts if text.strip()):
            # One location, so Python's default filter shows it once per process, not per image.
            warnings.warn(
                "the built-in digits model draws only the digits 0-9; a prompt that names none "
                f"(such as {next(t for t in prompts if not names_a_digit(t))!r}) gets some digit. "
                "Name a digit ('7', 'seven', 'a handwritten 7') or pass your own model "
                "(model_name_or_path / --model)",
                UserWarning,
                stacklevel=2,
            )
        with torch.no_grad():
            return self._generate(
                prompt,
                height,
                width,
                num_inference_steps,
                guidance_scale,
                negative_prompt,
                num_images_per_prompt,
                generator,
                output_type,
                return_dict,
                callback_on_step_end,
            )

    def _generate(
        self,
        prompt: str | list[str],
        height: int | None,
        width: int | None,
        num_inference_steps: int,
        guidance_scale: float,
        negative_prompt: str | list[str] | None,
        num_images_per_prompt: int,
        generator: torch.Generator | list[torch.Generator] | None,
        output_type: str,
        return_dict: bool,
        callback_on_step_end: Callable[..., dict[str, Any]] | None,
    ) -> Any:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        height = height or self.default_sample_size
        width = width or self.default_sample_size
        negatives = negative_prompt if negative_prompt is not None else ""
        negatives = (
            [negatives] * len(prompts)
            if isinstance(negatives, str)
            else [n for n in negatives for _ in range(num_images_per_prompt)]
        )
        use_guidance = guidance_scale > 1.0
        embeddings = self.encode_prompt(prompts)
        if use_guidance:
            embeddings = torch.cat([self.encode_prompt(negatives), embeddings])
        shape = (len(prompts), self.unet.config.in_channels, NATIVE_SIZE, NATIVE_SIZE)
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=embeddings.dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        latents = latents * self.scheduler.init_noise_sigma
        for index, timestep in enumerate(timesteps):
            model_input = torch.cat([latents, latents]) if use_guidance else latents
            model_input = self.scheduler.scale_model_input(model_input, timestep)
            noise = self.unet(model_input, timestep, encoder_hidden_states=embeddings).sample
            if use_guidance:
                unconditional, conditional = noise.chunk(2)
                noise = unconditional + guidance_scale * (conditional - unconditional)
            latents = self.scheduler.step(noise, timestep, latents).prev_sample
            if callback_on_step_end is not None:
                outputs = callback_on_step_end(self, index, timestep, {"latents": latents})
                latents = outputs.pop("latents", latents)
        pixels = (latents / 2 + 0.5).clamp(0, 1)
        pixels = functional.interpolate(pixels, size=(height, width), mode="bicubic", align_corners=False)
        pixels = pixels.clamp(0, 1).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).float().cpu().numpy()
        if output_type == "pil":
            images: Any = self.numpy_to_pil(pixels)
        else:
            images = np.asarray(pixels)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
