"""``ShapesPipeline``: omni's built-in default model, colored shapes, digits and letters at 64x64.

A diffusion model that works on the image itself, losslessly folded: each 4x4
block of RGB pixels becomes 48 channels of a 16x16 grid (``pixel_unshuffle``),
so the UNet runs at 16x16 (cheap on a CPU) and nothing blurs the output the way
a small VAE would; unfolding is exact. The prompt is read by a word-level
tokenizer and a small CLIP text encoder, trained with the UNet by
:mod:`omni_core.models.train_shapes` on scenes rendered by Pillow
(:mod:`omni_core.models.shapes_render`).

Three pipelines share the components, as diffusers' ``from_pipe`` family does:
text-to-image, image-to-image (``image``, ``strength``) and inpainting
(``mask_image``: white is repainted, black kept exactly). Each is a real
diffusers pipeline (``save_pretrained`` / ``from_pretrained``) whose denoiser
forwards omni may merge across requests (step batching).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from omni_core.models.shapes_vocabulary import CAN_DRAW, parse_prompt

NATIVE_SIZE = 64
FOLD = 4
"""``pixel_unshuffle`` factor: 3x64x64 pixels <-> 48x16x16 UNet input."""
PROMPT_TOKENS = 16
"""Prompts are a few words; 16 tokens keeps the text encoder cheap."""

Images = Any  # a PIL image, a list of them, or an array, as diffusers' image pipelines accept


def fold(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, 64, 64) in [-1, 1] -> (B, 48, 16, 16)."""
    return functional.pixel_unshuffle(pixels, FOLD)


def unfold(latents: torch.Tensor) -> torch.Tensor:
    """(B, 48, 16, 16) -> (B, 3, 64, 64)."""
    return functional.pixel_shuffle(latents, FOLD)


LATENT_CHANNELS = 3 * FOLD * FOLD
LATENT_SIDE = NATIVE_SIZE // FOLD


@dataclass(frozen=True)
class PromptEncoding:
    """What the UNet is told about a prompt, three ways, each learned fast for a different thing.

    ``hidden``: the text encoder's states, for cross-attention. ``summary``: its last position
    (the encoder is causal and prompts are padded to one length, so it has seen every word),
    added to the timestep embedding (``class_embed_type="projection"``): every block knows
    what to draw. ``canvas``: the summary projected linearly onto a 16x16 map (the encoder's
    ``text_projection``, reshaped) and fed to the UNet as extra input channels, so where and
    how large a shape is has weights of its own at every position: drawing a layout from a
    global vector alone is what a small UNet learns slowest.
    """

    hidden: torch.Tensor
    summary: torch.Tensor
    canvas: torch.Tensor | None

    @property
    def dtype(self) -> torch.dtype:
        return self.hidden.dtype

    def __len__(self) -> int:
        return len(self.hidden)

    def cat(self, other: PromptEncoding) -> PromptEncoding:
        """``self`` then ``other`` along the batch (unconditional first, for guidance)."""
        canvas = (
            None if self.canvas is None or other.canvas is None else torch.cat([self.canvas, other.canvas])
        )
        return PromptEncoding(
            torch.cat([self.hidden, other.hidden]), torch.cat([self.summary, other.summary]), canvas
        )


def encode_tokens(text_encoder: Any, input_ids: torch.Tensor) -> PromptEncoding:
    """A batch of token ids as a :class:`PromptEncoding` (shared by the pipelines and the trainer)."""
    out = text_encoder(input_ids)
    hidden = out.last_hidden_state
    projected = getattr(out, "text_embeds", None)
    canvas = None if projected is None else projected.reshape(len(hidden), -1, LATENT_SIDE, LATENT_SIDE)
    return PromptEncoding(hidden, hidden[:, -1], canvas)


def predict_clean(unet: Any, latents: torch.Tensor, timestep: Any, prompt: PromptEncoding) -> torch.Tensor:
    """The UNet's estimate of the clean (folded) image (shared by the pipelines and the trainer)."""
    inputs = (
        latents if prompt.canvas is None else torch.cat([latents, prompt.canvas.to(latents.dtype)], dim=1)
    )
    return unet(inputs, timestep, encoder_hidden_states=prompt.hidden, class_labels=prompt.summary).sample


def warn_if_undrawable(prompts: list[str]) -> None:
    """The one-time warning (Python shows a warning from one place once) naming what can be drawn."""
    undrawable = next((text for text in prompts if text.strip() and parse_prompt(text) is None), None)
    if undrawable is not None:
        warnings.warn(
            f"the built-in shapes model cannot draw {undrawable!r}; it draws {CAN_DRAW}. "
            "Pass your own model (model_name_or_path / --model) for anything else",
            UserWarning,
            stacklevel=3,
        )


def _as_pixels(images: Images, count: int, *, mask: bool, device: torch.device) -> torch.Tensor:
    """Input images (or masks) as (count, C, 64, 64) floats: [-1, 1] images, {0, 1} masks."""
    items = images if isinstance(images, list) else [images]
    tensors = []
    for item in items:
        picture = item if isinstance(item, Image.Image) else Image.fromarray(np.asarray(item))
        picture = picture.convert("L" if mask else "RGB")
        if picture.size != (NATIVE_SIZE, NATIVE_SIZE):
            picture = picture.resize(
                (NATIVE_SIZE, NATIVE_SIZE), Image.Resampling.NEAREST if mask else Image.Resampling.LANCZOS
            )
        array = np.asarray(picture, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array)
        tensors.append((tensor > 0.5).float()[None] if mask else tensor.permute(2, 0, 1) * 2.0 - 1.0)
    if len(tensors) == 1 and count > 1:
        tensors = tensors * count
    if len(tensors) != count:
        raise ValueError(f"got {len(tensors)} {'masks' if mask else 'images'} for {count} images")
    return torch.stack(tensors).to(device)


class ShapesPipeline(DiffusionPipeline):  # type: ignore[misc]
    """Text -> a colored shape or glyph; ``pipe("a red circle on a blue background")``."""

    model_cpu_offload_seq = "text_encoder->unet"
    _callback_tensor_inputs = ["latents"]  # noqa: RUF012 - diffusers' own convention

    def __init__(self, unet: Any, text_encoder: Any, tokenizer: Any, scheduler: Any) -> None:
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        # Read by omni's runner to pick the default size, as for Stable Diffusion.
        self.default_sample_size = NATIVE_SIZE
        self.vae_scale_factor = 1
        self._num_timesteps = 0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    def omni_task_pipelines(self) -> dict[str, DiffusionPipeline]:
        """The image-to-image and inpainting pipelines over the same components (omni's runner asks)."""
        return {
            "image": ShapesImg2ImgPipeline(**self.components),
            "inpaint": ShapesInpaintPipeline(**self.components),
        }

    def encode_prompt(self, prompts: list[str]) -> PromptEncoding:
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=PROMPT_TOKENS, truncation=True, return_tensors="pt"
        )
        return encode_tokens(self.text_encoder, tokens.input_ids.to(self.device))

    def __call__(
        self,
        prompt: str | list[str],
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 4,
        guidance_scale: float = 2.0,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Any:
        with torch.no_grad():
            prompts, embeddings = self._prompts(
                prompt, negative_prompt, num_images_per_prompt, guidance_scale
            )
            shape = (len(prompts), LATENT_CHANNELS, LATENT_SIDE, LATENT_SIDE)
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=embeddings.dtype)
            self.scheduler.set_timesteps(num_inference_steps, device=self.device)
            latents = latents * self.scheduler.init_noise_sigma
            latents = self._denoise(
                latents, embeddings, self.scheduler.timesteps, guidance_scale, callback_on_step_end
            )
            return self._output(latents, height, width, output_type, return_dict)

    # ------------------------------------------------------------------ shared by the three tasks

    def _prompts(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None,
        num_images_per_prompt: int,
        guidance_scale: float,
    ) -> tuple[list[str], PromptEncoding]:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        warn_if_undrawable(prompts)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        negatives = negative_prompt if negative_prompt is not None else ""
        negatives = (
            [negatives] * len(prompts)
            if isinstance(negatives, str)
            else [n for n in negatives for _ in range(num_images_per_prompt)]
        )
        embeddings = self.encode_prompt(prompts)
        if guidance_scale > 1.0:
            embeddings = self.encode_prompt(negatives).cat(embeddings)
        return prompts, embeddings

    def _denoise(
        self,
        latents: torch.Tensor,
        embeddings: PromptEncoding,
        timesteps: torch.Tensor,
        guidance_scale: float,
        callback_on_step_end: Callable[..., dict[str, Any]] | None,
        keep: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The sampling loop.

        ``keep`` is (folded original, folded mask of what to keep, noise) when inpainting.
        """
        use_guidance = guidance_scale > 1.0
        self._num_timesteps = len(timesteps)
        for index, timestep in enumerate(timesteps):
            model_input = torch.cat([latents, latents]) if use_guidance else latents
            model_input = self.scheduler.scale_model_input(model_input, timestep)
            predicted = predict_clean(self.unet, model_input, timestep, embeddings)
            if use_guidance:
                unconditional, conditional = predicted.chunk(2)
                predicted = unconditional + guidance_scale * (conditional - unconditional)
            latents = self.scheduler.step(predicted, timestep, latents).prev_sample
            if keep is not None:
                original, kept, noise = keep
                if index + 1 < len(timesteps):
                    original = self.scheduler.add_noise(original, noise, timesteps[index + 1 : index + 2])
                latents = kept * original + (1.0 - kept) * latents
            if callback_on_step_end is not None:
                outputs = callback_on_step_end(self, index, timestep, {"latents": latents})
                latents = outputs.pop("latents", latents)
        return latents

    def _edit_timesteps(self, num_inference_steps: int, strength: float) -> torch.Tensor:
        """diffusers' img2img rule: run the last ``int(steps * strength)`` of ``steps`` timesteps."""
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        run = min(int(num_inference_steps * strength), num_inference_steps)
        return self.scheduler.timesteps[num_inference_steps - run :]

    def omni_preview(self, x0: torch.Tensor) -> np.ndarray[Any, Any]:
        """The x0 estimate as 64x64 RGB in [0, 1]: exact (the model works on folded pixels)."""
        return np.asarray((unfold(x0) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy())

    def _output(
        self,
        latents: torch.Tensor,
        height: int | None,
        width: int | None,
        output_type: str,
        return_dict: bool,
    ) -> Any:
        pixels = (unfold(latents) / 2 + 0.5).clamp(0, 1)
        height, width = height or NATIVE_SIZE, width or NATIVE_SIZE
        if (height, width) != (NATIVE_SIZE, NATIVE_SIZE):
            # The model draws at 64x64 only; another size is that image resized.
            pixels = functional.interpolate(pixels, size=(height, width), mode="bicubic", align_corners=False)
        array = pixels.clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
        images: Any = self.numpy_to_pil(array) if output_type == "pil" else np.asarray(array)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


class ShapesImg2ImgPipeline(ShapesPipeline):
    """Image -> image: noise the input to ``strength`` and redraw it as the prompt says."""

    def __call__(  # type: ignore[override]
        self,
        prompt: str | list[str],
        image: Images = None,
        strength: float = 0.6,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 8,
        guidance_scale: float = 2.0,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Any:
        if image is None:
            raise ValueError("image is required for image-to-image")
        with torch.no_grad():
            prompts, embeddings = self._prompts(
                prompt, negative_prompt, num_images_per_prompt, guidance_scale
            )
            original = fold(_as_pixels(image, len(prompts), mask=False, device=self.device))
            timesteps = self._edit_timesteps(num_inference_steps, strength)
            noise = randn_tensor(
                original.shape, generator=generator, device=self.device, dtype=original.dtype
            )
            latents = self.scheduler.add_noise(original, noise, timesteps[:1]) if len(timesteps) else original
            latents = self._denoise(latents, embeddings, timesteps, guidance_scale, callback_on_step_end)
            return self._output(latents, height, width, output_type, return_dict)


class ShapesInpaintPipeline(ShapesPipeline):
    """Inpainting: white in ``mask_image`` is redrawn as the prompt says, black kept pixel for pixel."""

    def __call__(  # type: ignore[override]
        self,
        prompt: str | list[str],
        image: Images = None,
        mask_image: Images = None,
        strength: float = 1.0,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 8,
        guidance_scale: float = 2.0,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> Any:
        if image is None or mask_image is None:
            raise ValueError("image and mask_image are required for inpainting")
        with torch.no_grad():
            prompts, embeddings = self._prompts(
                prompt, negative_prompt, num_images_per_prompt, guidance_scale
            )
            original = fold(_as_pixels(image, len(prompts), mask=False, device=self.device))
            repaint = _as_pixels(mask_image, len(prompts), mask=True, device=self.device)
            kept = fold(1.0 - repaint.expand(-1, 3, -1, -1))
            timesteps = self._edit_timesteps(num_inference_steps, strength)
            noise = randn_tensor(
                original.shape, generator=generator, device=self.device, dtype=original.dtype
            )
            if strength >= 1.0:
                latents = noise * self.scheduler.init_noise_sigma
            else:
                latents = self.scheduler.add_noise(original, noise, timesteps[:1])
            latents = self._denoise(
                latents,
                embeddings,
                timesteps,
                guidance_scale,
                callback_on_step_end,
                keep=(original, kept, noise),
            )
            return self._output(latents, height, width, output_type, return_dict)
