"""Request validation, shared by the runner, the CLI and the servers.

Torch-free so that a server can reject bad input before it reaches a model
(or even a process that has one). Every error names the field and the fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omni_core.errors import RequestValidationError
from omni_core.request import OmniDiffusionRequest

if TYPE_CHECKING:
    from omni_core.config import OmniDiffusionConfig

SIZE_MULTIPLE = 8
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class RequestLimits:
    """Caps a deployment puts on requests; built from the config's ``max_*`` fields."""

    max_image_pixels: int = 1024 * 1024
    max_num_inference_steps: int = 200
    max_outputs_per_prompt: int = 10
    max_prompt_length: int = 4000
    max_guidance_scale: float = 100.0
    """Far above any model's useful range (SD uses 1-20); 1e30 would only draw black."""

    @classmethod
    def from_config(cls, config: OmniDiffusionConfig) -> RequestLimits:
        return cls(
            max_image_pixels=config.max_image_pixels,
            max_num_inference_steps=config.max_num_inference_steps,
            max_outputs_per_prompt=config.max_outputs_per_prompt,
            max_prompt_length=config.max_prompt_length,
            max_guidance_scale=config.max_guidance_scale,
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
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
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise RequestValidationError(
            "timeout", f"must be a positive number of seconds or None, got {timeout!r}"
        )
    if not isinstance(request.return_trajectory, bool):
        raise RequestValidationError("return_trajectory", "must be true or false")


def validate_scheduling_fields(request: OmniDiffusionRequest) -> None:
    """Raise :class:`RequestValidationError` for a bad ``priority``, ``deadline`` or ``tenant``.

    Separate because a scheduler checks these three before it queues a request
    (they decide where it waits); the executor behind it checks the rest.
    """
    _check_int("priority", request.priority)
    deadline = request.deadline
    if deadline is not None and (
        isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not math.isfinite(deadline)
    ):
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
