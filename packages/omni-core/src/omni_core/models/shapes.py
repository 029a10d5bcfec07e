"""``ShapesPipeline``: omni's built-in default model, colored shapes, digits and letters at 64x64.

A diffusion model in pixel space (no VAE: nothing blurs the output). The
prompt is read into a scene (:func:`~omni_core.models.shapes_vocabulary.read_prompt`:
subject, colors, size, position), and the denoiser
(:class:`~omni_core.models.shapes_denoiser.SceneUNet`) is conditioned on it:
labels for subject and colors, and the subject's placement in pixels. The
placement's small jitter (position, scale) is drawn from the request's
generator, so seeds differ; a prompt that names no subject gets one drawn from
the generator too, after a one-time warning saying what the model can draw.
Trained by :mod:`omni_core.models.train_shapes` on scenes rendered by Pillow.

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

from omni_core.models.shapes_denoiser import SceneUNet
from omni_core.models.shapes_render import jitter_from_uniform, placement
from omni_core.models.shapes_vocabulary import (
    CAN_DRAW,
    COLORS,
    SUBJECTS,
    Scene,
    named_attributes,
    read_prompt,
)

NATIVE_SIZE = 64
Images = Any  # a PIL image, a list of them, or an array, as diffusers' image pipelines accept
Generators = Any  # a torch.Generator, a list of them (one per image), or None
_COLOR_NAMES = list(COLORS)


def scene_labels(subject: str | None, color: str | None, background: str | None) -> list[int]:
    """The denoiser's labels for a scene; None (not said) is the index past the last."""
    return [
        SUBJECTS.index(subject) if subject else len(SUBJECTS),
        _COLOR_NAMES.index(color) if color else len(_COLOR_NAMES),
        _COLOR_NAMES.index(background) if background else len(_COLOR_NAMES),
    ]


@dataclass(frozen=True)
class SceneConditioning:
    """What the denoiser is told about each row: labels (B, 3) and placement (B, 3)."""

    labels: torch.Tensor
    placement: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def cat(self, other: SceneConditioning) -> SceneConditioning:
        """``self`` then ``other`` along the batch (unconditional first, for guidance)."""
        return SceneConditioning(
            torch.cat([self.labels, other.labels]), torch.cat([self.placement, other.placement])
        )


def _uniforms(rows: int, count: int, generator: Generators) -> torch.Tensor:
    """(rows, count) uniforms in [0, 1), each row from its own generator where a list is given."""
    if isinstance(generator, list):
        return torch.stack([torch.rand(count, generator=g, device=g.device).cpu() for g in generator])
    if generator is not None:
        return torch.rand(rows, count, generator=generator, device=generator.device).cpu()
    return torch.rand(rows, count)


def warn_if_undrawable(prompts: list[str]) -> None:
    """The one-time warning (Python shows a warning from one place once) naming what can be drawn."""
    undrawable = next((t for t in prompts if t.strip() and named_attributes(t)[0] is None), None)
    if undrawable is not None:
        warnings.warn(
            f"the built-in shapes model cannot draw {undrawable!r}; it draws {CAN_DRAW}. "
            "A prompt that names no subject gets one at random. "
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

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents"]  # noqa: RUF012 - diffusers' own convention

    def __init__(self, unet: SceneUNet, scheduler: Any) -> None:
        # diffusers loads the ``unet`` component only from a module already imported: this one's import.
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
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

    def encode_prompt(self, prompts: list[str], generator: Generators = None) -> SceneConditioning:
        """Each prompt's scene as labels and a placement (jitter, and any missing subject, drawn
        from ``generator``)."""
        draws = _uniforms(len(prompts), 4, generator)
        labels, placements = [], []
        for text, (u_subject, *u_jitter) in zip(prompts, draws.tolist(), strict=True):
            scene = read_prompt(text)
            if not scene.subject:
                subject = SUBJECTS[min(int(u_subject * len(SUBJECTS)), len(SUBJECTS) - 1)]
                scene = Scene(subject, scene.color, scene.background, scene.size, scene.position)
            labels.append(scene_labels(scene.subject, scene.color, scene.background))
            placements.append(placement(scene, jitter_from_uniform((u_jitter[0], u_jitter[1], u_jitter[2]))))
        return SceneConditioning(
            torch.tensor(labels, device=self.device), torch.tensor(placements, device=self.device)
        )

    def _unconditional(self, negatives: list[str], conditional: SceneConditioning) -> SceneConditioning:
        """Guidance's other half: what each negative prompt names, "not said" for the rest, same placement."""
        labels = [scene_labels(*named_attributes(text)) for text in negatives]
        return SceneConditioning(torch.tensor(labels, device=self.device), conditional.placement)

    def __call__(
        self,
        prompt: str | list[str],
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 4,
        guidance_scale: float = 1.0,
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
                prompt, negative_prompt, num_images_per_prompt, guidance_scale, generator
            )
            shape = (len(prompts), 3, NATIVE_SIZE, NATIVE_SIZE)
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
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
        generator: Generators,
    ) -> tuple[list[str], SceneConditioning]:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        warn_if_undrawable(prompts)
        prompts = [p for p in prompts for _ in range(num_images_per_prompt)]
        negatives = negative_prompt if negative_prompt is not None else ""
        negatives = (
            [negatives] * len(prompts)
            if isinstance(negatives, str)
            else [n for n in negatives for _ in range(num_images_per_prompt)]
        )
        embeddings = self.encode_prompt(prompts, generator)
        if guidance_scale > 1.0:
            embeddings = self._unconditional(negatives, embeddings).cat(embeddings)
        return prompts, embeddings

    def _denoise(
        self,
        latents: torch.Tensor,
        embeddings: SceneConditioning,
        timesteps: torch.Tensor,
        guidance_scale: float,
        callback_on_step_end: Callable[..., dict[str, Any]] | None,
        keep: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The sampling loop.

        ``keep`` is (original, mask of what to keep, noise) when inpainting.
        """
        use_guidance = guidance_scale > 1.0
        self._num_timesteps = len(timesteps)
        for index, timestep in enumerate(timesteps):
            model_input = torch.cat([latents, latents]) if use_guidance else latents
            model_input = self.scheduler.scale_model_input(model_input, timestep)
            predicted = self.unet(
                model_input, timestep, labels=embeddings.labels, placement=embeddings.placement
            ).sample
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
        """The x0 estimate as 64x64 RGB in [0, 1]: exact (the model works on pixels)."""
        return np.asarray((x0 / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy())

    def _output(
        self,
        latents: torch.Tensor,
        height: int | None,
        width: int | None,
        output_type: str,
        return_dict: bool,
    ) -> Any:
        pixels = (latents / 2 + 0.5).clamp(0, 1)
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
        guidance_scale: float = 1.0,
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
                prompt, negative_prompt, num_images_per_prompt, guidance_scale, generator
            )
            original = _as_pixels(image, len(prompts), mask=False, device=self.device)
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
        guidance_scale: float = 1.0,
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
                prompt, negative_prompt, num_images_per_prompt, guidance_scale, generator
            )
            original = _as_pixels(image, len(prompts), mask=False, device=self.device)
            repaint = _as_pixels(mask_image, len(prompts), mask=True, device=self.device)
            kept = 1.0 - repaint.expand(-1, 3, -1, -1)
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
