"""Request validation, shared by the runner, the CLI and the servers.

Torch-free so that a server can reject bad input before it reaches a model
(or even a process that has one). Every error names the field and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from omni_core.declared import is_finite_number
from omni_core.errors import RequestValidationError
from omni_core.pipeline_arguments import UNSUPPORTED_ARGUMENTS, check_step_lists
from omni_core.request import OmniDiffusionRequest

if TYPE_CHECKING:
    from omni_core.config import OmniDiffusionConfig

SIZE_MULTIPLE = 8
MAX_SEED = 2**63 - 1
MAX_EXTRA_JSON_BYTES = 16 * 1024
"""Pipeline arguments are knobs (numbers, short strings, small lists), never payloads."""
MAX_EXTRA_DEPTH = 8

OMNI_SET_ARGUMENTS = {
    "prompt": "use the request field prompt",
    "negative_prompt": "use the request field negative_prompt",
    "height": "use the request fields height/width (size)",
    "width": "use the request fields height/width (size)",
    "num_inference_steps": "use the request field num_inference_steps",
    "guidance_scale": "use the request field guidance_scale",
    "image": "use the request field image",
    "mask_image": "use the request field mask_image (mask)",
    "strength": "use the request field strength",
    "num_images_per_prompt": "use num_outputs_per_prompt (n)",
    "generator": "omni seeds one generator per image; use seed",
    "output_type": "omni always returns 8-bit images",
    "return_dict": "omni reads the pipeline's output itself",
    "callback_on_step_end": "omni uses it for progress and abort",
    "callback_on_step_end_tensor_inputs": "omni uses it for progress and abort",
    "callback": "omni uses callback_on_step_end for progress and abort",
    "callback_steps": "omni uses callback_on_step_end for progress and abort",
}
"""Pipeline arguments omni sets itself: a request's ``extra`` may never hold them."""

DEFAULT_EXTRA_DENIED = frozenset(
    {
        # Tensors and images: a JSON value cannot be one, and passing one through would fail deep
        # in the pipeline.
        "latents",
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
        "prompt_attention_mask",
        "negative_prompt_attention_mask",
        "ip_adapter_image",
        "ip_adapter_image_embeds",
        "negative_ip_adapter_image",
        "negative_ip_adapter_image_embeds",
        "control_image",
        "masked_image_latents",
        # Attention-processor kwargs carry LoRA scales; omni sets those from lora/lora_scale.
        "cross_attention_kwargs",
        "joint_attention_kwargs",
        "attention_kwargs",
    }
)
"""The config's default ``extra_denied``; an operator may replace it."""


MAX_PARTIAL_IMAGES = 3
"""Previews one request may ask for: OpenAI's limit for ``partial_images``."""


@dataclass(frozen=True)
class RequestLimits:
    """Caps a deployment puts on requests; built from the config's ``max_*`` fields."""

    max_image_pixels: int = 1024 * 1024
    max_num_inference_steps: int = 200
    max_outputs_per_prompt: int = 10
    max_prompt_length: int = 4000
    max_guidance_scale: float = 100.0
    """Far above any model's useful range (SD uses 1-20); 1e30 would only draw black."""
    max_input_images: int = 4
    """Images one edit request may send (each is edited, ``n`` times)."""
    max_lora_scale: float = 4.0
    """A request's ``lora_scale`` lies in [-this, this]: 1 is the adapter as trained, negative values
    steer away from it, and far past a few the images are noise (1e30 only draws NaN)."""
    extra_allowed: frozenset[str] | None = None
    """Pipeline arguments a request's ``extra`` may use; ``None``: any the pipeline accepts."""
    extra_denied: frozenset[str] = DEFAULT_EXTRA_DENIED
    """Pipeline arguments a request's ``extra`` may never use (besides :data:`OMNI_SET_ARGUMENTS`)."""
    lora_names: frozenset[str] | None = frozenset()
    """The LoRA adapters the operator configured; a request may name only these. ``None``: not
    known here (a client of remote workers, which check the name against their own config)."""

    @classmethod
    def from_config(cls, config: OmniDiffusionConfig) -> RequestLimits:
        allowed = config.extra_allowed
        return cls(
            max_image_pixels=config.max_image_pixels,
            max_num_inference_steps=config.max_num_inference_steps,
            max_outputs_per_prompt=config.max_outputs_per_prompt,
            max_prompt_length=config.max_prompt_length,
            max_guidance_scale=config.max_guidance_scale,
            max_input_images=config.max_input_images,
            max_lora_scale=config.max_lora_scale,
            extra_allowed=None if allowed is None else frozenset(allowed),
            extra_denied=frozenset(config.extra_denied),
            lora_names=frozenset(config.loras),
        )

    def for_remote_workers(self) -> RequestLimits:
        """These limits as a client checks them before sending: LoRA names are the workers' to check."""
        return dataclasses.replace(self, lora_names=None)

    def extra_usable(self, name: str) -> bool:
        """Whether a request's ``extra`` may set pipeline argument ``name`` here."""
        return (
            name not in OMNI_SET_ARGUMENTS
            and name not in UNSUPPORTED_ARGUMENTS
            and name not in self.extra_denied
            and (self.extra_allowed is None or name in self.extra_allowed)
        )


SIZE_PATTERN = re.compile(r"([0-9]{1,5})x([0-9]{1,5})", re.ASCII)


def parse_size(text: object) -> tuple[int, int]:
    """``"WxH"`` (OpenAI's ``size``, the CLI's ``--size``) → ``(height, width)``.

    The one parser of sizes: ASCII digits only (``str.isdigit`` accepts "²"),
    at most five each, so nothing reaches ``int`` that it cannot take.
    """
    if not isinstance(text, str):
        raise RequestValidationError("size", f"must be a string like '512x512', got {type(text).__name__}")
    found = SIZE_PATTERN.fullmatch(text.strip().lower())
    if found is None:
        raise RequestValidationError("size", f"{text!r} is not WIDTHxHEIGHT, e.g. '512x512'")
    return int(found.group(2)), int(found.group(1))


def validate_request(request: OmniDiffusionRequest, limits: RequestLimits) -> None:
    """Raise :class:`RequestValidationError` naming the first bad field."""
    if not isinstance(request.request_id, str) or not request.request_id:
        raise RequestValidationError("request_id", "must be a non-empty string")
    _check_text("prompt", request.prompt, limits.max_prompt_length, required=True)
    _check_text("negative_prompt", request.negative_prompt, limits.max_prompt_length, required=False)
    for name in ("height", "width"):
        value = getattr(request, name)
        if value is None:
            continue
        _check_int(name, value)
        if value <= 0 or value % SIZE_MULTIPLE:
            raise RequestValidationError(name, f"must be a positive multiple of {SIZE_MULTIPLE}, got {value}")
    check_pixels(request.height, request.width, limits)
    if request.num_inference_steps is not None:
        _check_int("num_inference_steps", request.num_inference_steps)
        if not 1 <= request.num_inference_steps <= limits.max_num_inference_steps:
            raise RequestValidationError(
                "num_inference_steps",
                f"must be between 1 and {limits.max_num_inference_steps}, got {request.num_inference_steps}",
            )
    if request.guidance_scale is not None:
        value = request.guidance_scale
        if not is_finite_number(value):
            raise RequestValidationError("guidance_scale", f"must be a finite number, got {value!r}")
        if not 0 <= value <= limits.max_guidance_scale:
            raise RequestValidationError(
                "guidance_scale",
                f"must be between 0 and {limits.max_guidance_scale:g} (config max_guidance_scale), "
                f"got {value}",
            )
    if request.seed is not None:
        _check_int("seed", request.seed)
        if not 0 <= request.seed <= MAX_SEED:
            raise RequestValidationError("seed", f"must be between 0 and 2**63-1, got {request.seed}")
    _check_int("num_outputs_per_prompt", request.num_outputs_per_prompt)
    if not 1 <= request.num_outputs_per_prompt <= limits.max_outputs_per_prompt:
        raise RequestValidationError(
            "num_outputs_per_prompt",
            f"must be between 1 and {limits.max_outputs_per_prompt}, got {request.num_outputs_per_prompt}",
        )
    validate_scheduling_fields(request)
    timeout = request.timeout
    if timeout is not None and (not is_finite_number(timeout) or timeout <= 0):
        raise RequestValidationError(
            "timeout", f"must be a positive number of seconds or None, got {timeout!r}"
        )
    if not isinstance(request.return_trajectory, bool):
        raise RequestValidationError("return_trajectory", "must be true or false")
    _check_int("partial_images", request.partial_images)
    if not 0 <= request.partial_images <= MAX_PARTIAL_IMAGES:
        raise RequestValidationError(
            "partial_images", f"must be between 0 and {MAX_PARTIAL_IMAGES}, got {request.partial_images}"
        )
    validate_conditioning(request, limits)
    validate_extra(request.extra, limits)
    validate_lora(request, limits)


def validate_conditioning(request: OmniDiffusionRequest, limits: RequestLimits) -> None:
    """``image``, ``mask_image`` and ``strength``: types, shapes, sizes and the pixel cap."""
    image: object = request.image
    if image is None:
        for name in ("mask_image", "strength"):
            if getattr(request, name) is not None:
                raise RequestValidationError(name, "needs an image to apply to; set image as well")
        return
    images = image if isinstance(image, list) else [image]
    if not images:
        raise RequestValidationError("image", "is an empty list; send at least one image or None")
    if len(images) > limits.max_input_images:
        raise RequestValidationError(
            "image",
            f"holds {len(images)} images, over the limit of {limits.max_input_images} "
            "(config max_input_images)",
        )
    height, width = _check_image_array("image", images[0], channels=3, limits=limits)
    for other in images[1:]:
        if _check_image_array("image", other, channels=3, limits=limits) != (height, width):
            raise RequestValidationError("image", "images of one request must all have the same size")
    total = len(images) * request.num_outputs_per_prompt
    if total > limits.max_outputs_per_prompt:
        raise RequestValidationError(
            "num_outputs_per_prompt",
            f"{len(images)} images x {request.num_outputs_per_prompt} outputs each is {total} images, "
            f"over the limit of {limits.max_outputs_per_prompt}; send fewer images or a smaller n",
        )
    if request.mask_image is not None:
        mask_size = _check_image_array("mask_image", request.mask_image, channels=None, limits=limits)
        if mask_size != (height, width):
            raise RequestValidationError(
                "mask_image",
                f"is {mask_size[1]}x{mask_size[0]} but the image is {width}x{height}; "
                "send a mask the image's size",
            )
    strength: object = request.strength
    if strength is not None and not (is_finite_number(strength) and 0 < strength <= 1):
        raise RequestValidationError("strength", f"must be a number in (0, 1], got {strength!r}")


def _check_image_array(
    name: str, value: object, *, channels: int | None, limits: RequestLimits
) -> tuple[int, int]:
    """(height, width) of an 8-bit image array; ``channels=None`` is a one-channel mask."""
    if not isinstance(value, np.ndarray):
        raise RequestValidationError(
            name, f"must be a numpy uint8 array (or PNG over the wire), got {type(value).__name__}"
        )
    expected = "(height, width, 3)" if channels else "(height, width)"
    if value.dtype != np.uint8:
        raise RequestValidationError(name, f"must have dtype uint8 (8-bit pixels), got {value.dtype}")
    if (channels and (value.ndim != 3 or value.shape[2] != channels)) or (not channels and value.ndim != 2):
        raise RequestValidationError(name, f"must have shape {expected}, got {tuple(value.shape)}")
    height, width = int(value.shape[0]), int(value.shape[1])
    if height < SIZE_MULTIPLE or width < SIZE_MULTIPLE:
        raise RequestValidationError(
            name, f"is {width}x{height}; send at least {SIZE_MULTIPLE}x{SIZE_MULTIPLE}"
        )
    if height * width > limits.max_image_pixels:
        raise RequestValidationError(
            name,
            f"is {width}x{height} = {height * width} pixels, over this deployment's cap of "
            f"{limits.max_image_pixels} (config max_image_pixels); send a smaller image",
        )
    return height, width


def validate_extra(extra: object, limits: RequestLimits) -> None:
    """A request's ``extra``: a dict of pipeline argument names to JSON values, none of them refused.

    Whether the loaded pipeline accepts each name is :func:`check_extra_names`,
    which needs the pipeline; this part needs nothing, so servers run it first.
    """
    if not isinstance(extra, dict):
        raise RequestValidationError(
            "extra", f"must be a dict of pipeline arguments, got {type(extra).__name__}"
        )
    for name, value in extra.items():
        if not isinstance(name, str):
            raise RequestValidationError("extra", f"argument names must be strings, got {name!r}")
        if name in OMNI_SET_ARGUMENTS:
            raise RequestValidationError(f"extra.{name}", f"is set by omni: {OMNI_SET_ARGUMENTS[name]}")
        if name in UNSUPPORTED_ARGUMENTS:
            raise RequestValidationError(
                f"extra.{name}", f"is not supported by omni: {UNSUPPORTED_ARGUMENTS[name]}"
            )
        if not limits.extra_usable(name):
            raise RequestValidationError(
                f"extra.{name}", "is not allowed on this deployment (config extra_allowed / extra_denied)"
            )
        _check_json_value(f"extra.{name}", value, 0)
    check_step_lists(extra, limits.max_num_inference_steps)  # before the size: it names the field
    try:
        size = len(json.dumps(extra, allow_nan=False))
    except (TypeError, ValueError) as exc:  # unreachable after the walk, but never a 500
        raise RequestValidationError("extra", f"is not JSON: {exc}") from None
    if size > MAX_EXTRA_JSON_BYTES:
        raise RequestValidationError(
            "extra", f"is {size} bytes as JSON, over the limit of {MAX_EXTRA_JSON_BYTES}"
        )


def _check_json_value(name: str, value: object, depth: int) -> None:
    if depth > MAX_EXTRA_DEPTH:
        raise RequestValidationError(name, f"nests deeper than {MAX_EXTRA_DEPTH} levels")
    if value is None or isinstance(value, (bool, str, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RequestValidationError(name, f"must be a finite number, got {value!r}")
        return
    if isinstance(value, list):
        for item in value:
            _check_json_value(name, item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise RequestValidationError(name, f"JSON object keys must be strings, got {key!r}")
            _check_json_value(name, item, depth + 1)
        return
    raise RequestValidationError(
        name, f"must be a JSON value (number, string, bool, null, list, dict), got {type(value).__name__}"
    )


def check_extra_names(
    extra: dict[str, Any], accepted: Collection[str], limits: RequestLimits, model: str
) -> None:
    """Every name in ``extra`` is a parameter of the pipeline that will run (``accepted``).

    ``model`` names the pipeline class, never its path: callers see this message.
    """
    for name in extra:
        if name not in accepted:
            usable = sorted(n for n in accepted if limits.extra_usable(n))
            raise RequestValidationError(
                f"extra.{name}",
                f"is not an argument of {model}'s call; it accepts: {', '.join(usable) or 'none'}",
            )


def validate_lora(request: OmniDiffusionRequest, limits: RequestLimits) -> None:
    """``lora`` names a configured adapter (never a path); ``lora_scale`` only with it."""
    lora: object = request.lora
    scale: object = request.lora_scale
    if lora is None:
        if scale is not None:
            raise RequestValidationError("lora_scale", "needs a lora to scale; set lora as well")
        return
    if not isinstance(lora, str) or (limits.lora_names is not None and lora not in limits.lora_names):
        offered = ", ".join(sorted(limits.lora_names or ())) or "none (config loras is empty)"
        raise RequestValidationError(
            "lora", f"{lora!r} is not a configured adapter; this deployment offers: {offered}"
        )
    if scale is None:
        return
    if not is_finite_number(scale):
        raise RequestValidationError("lora_scale", f"must be a finite number, got {scale!r}")
    if not -limits.max_lora_scale <= float(scale) <= limits.max_lora_scale:
        raise RequestValidationError(
            "lora_scale",
            f"must lie between -{limits.max_lora_scale:g} and {limits.max_lora_scale:g} "
            f"(config max_lora_scale), got {scale:g}",
        )


def validate_scheduling_fields(request: OmniDiffusionRequest) -> None:
    """Raise :class:`RequestValidationError` for a bad ``priority``, ``deadline`` or ``tenant``.

    Separate because a scheduler checks these three before it queues a request
    (they decide where it waits); the executor behind it checks the rest.
    """
    _check_int("priority", request.priority)
    deadline = request.deadline
    if deadline is not None and (not is_finite_number(deadline)):
        raise RequestValidationError("deadline", "must be a Unix time in seconds (a finite number) or None")
    tenant: object = request.tenant  # typed str | None, but requests can come from untyped JSON
    if tenant is not None and not isinstance(tenant, str):
        raise RequestValidationError("tenant", "must be a string or None")


def check_pixels(height: int | None, width: int | None, limits: RequestLimits) -> None:
    """The pixel cap, for a requested size or the model's default one."""
    if height is None or width is None:
        return
    pixels = height * width
    if pixels > limits.max_image_pixels:
        raise RequestValidationError(
            "size",
            f"{width}x{height} is {pixels} pixels, over this deployment's cap of {limits.max_image_pixels}; "
            "ask for a smaller size, or raise the cap with the config field max_image_pixels "
            "(omni serve --max-image-pixels)",
        )


def _check_text(name: str, value: Any, max_length: int, *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str):
        raise RequestValidationError(name, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise RequestValidationError(name, "must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestValidationError(
            name, "holds invalid Unicode (a lone surrogate); send valid UTF-8"
        ) from None
    if len(value) > max_length:
        raise RequestValidationError(
            name, f"is {len(value)} characters, over the limit of {max_length}; shorten it"
        )


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestValidationError(name, f"must be an integer, got {type(value).__name__} {value!r}")
