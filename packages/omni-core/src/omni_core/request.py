"""The plain data that crosses every executor boundary.

``OmniDiffusionRequest`` uses diffusers' parameter names so that a user of
``pipe(prompt=..., num_inference_steps=...)`` recognises every field, plus
the scheduling fields a scheduler needs (``priority``, ``deadline``,
``tenant``). Both types round-trip through JSON-safe dicts (``to_dict`` /
``from_dict``) so that HTTP, Lambda and worker processes never need pickle:
input images travel as PNG, like output images.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from omni_core.errors import (
    OmniError,
    OverloadedError,
    RequestValidationError,
    classify_exception,
    failure_from_fields,
)
from omni_core.images import (
    ImageArray,
    array_from_dict,
    array_to_dict,
    decode_input_image,
    decode_png_b64,
    encode_png_b64,
    image_to_mask_array,
    image_to_rgb_array,
)


def new_request_id() -> str:
    """A random request id; random, not sequential, so ids never collide across processes."""
    return uuid.uuid4().hex


@dataclass(eq=False)
class OmniDiffusionRequest:
    """One text-to-image, image-to-image or inpainting request.

    ``None`` for a generation parameter means "the model's default", exactly
    as when the argument is left out of a diffusers pipeline call. ``seed``
    ``None`` means a random seed, which the runner chooses and reports in
    :attr:`DiffusionOutput.seed`. With ``image`` the request is image-to-image,
    with ``image`` and ``mask_image`` inpainting; the runner picks the pipeline.
    """

    prompt: str
    negative_prompt: str | None = None
    height: int | None = None
    width: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    num_outputs_per_prompt: int = 1
    return_trajectory: bool = False
    partial_images: int = 0
    """Previews to send while denoising (OpenAI's ``partial_images``), at evenly spaced steps; each
    is the model's current estimate of the final image. They arrive as :class:`ProgressEvent`
    ``preview`` (``engine.submit(request, on_progress=...)``). Fewer come when there are fewer steps."""
    request_id: str = field(default_factory=new_request_id)
    # Scheduling: lower priority runs first; deadline is a Unix time in seconds.
    priority: int = 0
    deadline: float | None = None
    tenant: str | None = None
    timeout: float | None = None
    """Seconds from submission after which the request fails with ``RequestTimeoutError`` and is
    aborted (``None``: the config's ``request_timeout``, if any)."""
    # Conditioning and pipeline arguments.
    image: ImageArray | list[ImageArray] | None = None
    """8-bit RGB (H, W, 3) array(s) to start from; several are edited side by side, ``n`` each."""
    mask_image: ImageArray | None = None
    """8-bit (H, W) array the image's size: 255 repaints, 0 keeps (diffusers' convention)."""
    strength: float | None = None
    """How far from ``image`` to go, in (0, 1]; ``None`` is the pipeline's default."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further keyword arguments for the pipeline call (JSON values), checked against its signature."""
    lora: str | None = None
    """The name of a LoRA adapter the operator configured (``OmniDiffusionConfig.loras``)."""
    lora_scale: float | None = None
    """The adapter's weight; ``None`` is the scale the operator configured for it."""

    @property
    def images(self) -> list[ImageArray]:
        """``image`` as a list (empty for text-to-image)."""
        if self.image is None:
            return []
        return list(self.image) if isinstance(self.image, list) else [self.image]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field; input images as base64 PNG."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["extra"] = dict(self.extra)
        if isinstance(self.image, list):
            data["image"] = [encode_png_b64(image) for image in self.image]
        elif self.image is not None:
            data["image"] = encode_png_b64(self.image)
        if self.mask_image is not None:
            data["mask_image"] = encode_png_b64(self.mask_image)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OmniDiffusionRequest:
        """Build from :meth:`to_dict`'s output (or any wire's JSON); raises only
        :class:`RequestValidationError`, naming the field (an unknown key names itself).

        Input images are decoded with :func:`~omni_core.images.decode_input_image`'s
        checks (a bad one names ``image`` or ``mask_image``). Every worker that reads
        requests from a wire (Lambda, Celery) calls this, so they answer alike.
        """
        if not isinstance(data, dict):
            raise RequestValidationError("request", f"must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in set(data) - names)
        if unknown:
            raise RequestValidationError(
                unknown[0], f"is not a request field; valid fields are {', '.join(sorted(names))}"
            )
        values = dict(data)
        image = values.get("image")
        if isinstance(image, list):
            values["image"] = [_decode_field(text, "image", image_to_rgb_array) for text in image]
        elif image is not None:
            values["image"] = _decode_field(image, "image", image_to_rgb_array)
        if values.get("mask_image") is not None:
            values["mask_image"] = _decode_field(values["mask_image"], "mask_image", image_to_mask_array)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:  # __post_init__'s own checks
            raise RequestValidationError("request", f"is not a valid request: {exc}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OmniDiffusionRequest):
            return NotImplemented
        arrays = ("image", "mask_image")
        if len(self.images) != len(other.images) or not all(
            np.array_equal(a, b) for a, b in zip(self.images, other.images, strict=True)
        ):
            return False
        mine, theirs = self.mask_image, other.mask_image
        if mine is None or theirs is None:
            if mine is not theirs:
                return False
        elif not np.array_equal(mine, theirs):
            return False
        return all(
            getattr(self, f.name) == getattr(other, f.name)
            for f in dataclasses.fields(self)
            if f.name not in arrays
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass
class DiffusionOutput:
    """The result of one request: its images or its error, never both lost.

    Field names follow vllm-omni's ``DiffusionOutput`` (``output``,
    ``error``, ``trajectory_latents``, ``trajectory_timesteps``) so code
    written for it reads naturally here. ``output`` holds 8-bit RGB arrays of
    shape (height, width, 3), one per image.
    """

    request_id: str
    output: list[ImageArray] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    """The failure's class, a name in :data:`omni_core.errors.FAILURE_CLASSES`."""
    error_field: str | None = None
    """The request field at fault, for a validation error."""
    retryable: bool | None = None
    """Whether sending the same request again can help; ``None`` on success."""
    retry_after: float | None = None
    """For an overloaded executor: seconds after which a retry is likely to be admitted."""
    seed: int | None = None
    trajectory_latents: npt.NDArray[Any] | None = None
    trajectory_timesteps: list[float] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent per phase, e.g. ``queue``, ``inference``, ``total``."""

    @property
    def ok(self) -> bool:
        """True when the request produced images."""
        return self.error is None

    @property
    def images(self) -> list[ImageArray]:
        """Alias of ``output`` for readers used to ``pipe(...).images``."""
        return self.output

    def raise_for_error(self) -> DiffusionOutput:
        """Raise the failure's own class (httpx style), else return self.

        A validation error raises :class:`~omni_core.errors.RequestValidationError`
        with its ``field``; a dead worker :class:`~omni_core.errors.WorkerDiedError`,
        and so on, whichever executor or wire the output came through.
        """
        if self.error is not None:
            raise self.exception()
        return self

    def exception(self) -> OmniError:
        """The failure as an exception of its class (call only when ``error`` is set)."""
        if self.error is None:
            raise ValueError(f"request {self.request_id} did not fail")
        failure = failure_from_fields(self.error_type, self.error, self.error_field, self.retryable)
        if isinstance(failure, OverloadedError):
            failure.retry_after = self.retry_after
        return failure

    @classmethod
    def failure(cls, request_id: str, error: BaseException) -> DiffusionOutput:
        """An output that carries ``error`` instead of images.

        omni's failure classes travel as they are; any other exception (one the
        pipeline raised) becomes a :class:`~omni_core.errors.ModelError` whose
        message keeps the original type and text.
        """
        failure = classify_exception(error)
        retry_after = getattr(failure, "retry_after", None)
        return cls(
            request_id=request_id,
            error=failure.message or type(failure).__name__,  # the field travels as error_field
            error_type=type(failure).__name__,
            error_field=failure.field,
            retryable=failure.retryable,
            retry_after=float(retry_after) if isinstance(retry_after, (int, float)) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: images as base64 PNG, latents as typed raw bytes."""
        return {
            "request_id": self.request_id,
            "output": [encode_png_b64(image) for image in self.output],
            "error": self.error,
            "error_type": self.error_type,
            "error_field": self.error_field,
            "retryable": self.retryable,
            "retry_after": self.retry_after,
            "seed": self.seed,
            "trajectory_latents": (
                None if self.trajectory_latents is None else array_to_dict(self.trajectory_latents)
            ),
            "trajectory_timesteps": self.trajectory_timesteps,
            "timings": dict(self.timings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffusionOutput:
        """Inverse of :meth:`to_dict`."""
        values = _known_fields(cls, data)
        values["output"] = [decode_png_b64(text) for text in values.get("output") or []]
        latents = values.get("trajectory_latents")
        values["trajectory_latents"] = None if latents is None else array_from_dict(latents)
        return cls(**values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DiffusionOutput):
            return NotImplemented
        if len(self.output) != len(other.output):
            return False
        same_images = all(np.array_equal(a, b) for a, b in zip(self.output, other.output, strict=True))
        return same_images and (
            self.request_id,
            self.error,
            self.error_type,
            self.error_field,
            self.retryable,
            self.seed,
        ) == (other.request_id, other.error, other.error_type, other.error_field, other.retryable, other.seed)

    __hash__ = None  # type: ignore[assignment]


def _decode_field(text: Any, name: str, convert: Any) -> ImageArray:
    if not isinstance(text, str):
        raise RequestValidationError(name, f"must be base64 PNG text, got {type(text).__name__}")
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise RequestValidationError(name, "is not valid base64; send the PNG file base64-encoded") from None
    result: ImageArray = convert(decode_input_image(raw, name))
    return result


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; valid fields are {sorted(names)}")
    return dict(data)
