"""How a response is delivered: OpenAI's output fields, parsed once and applied in one place.

``output_format`` (png, jpeg, webp) with ``output_compression`` (0-100, jpeg
and webp only; png is lossless and ignores it), ``background`` (``auto`` and
``opaque``; ``transparent`` is refused because omni's models draw no alpha
channel, never answered with a silent opaque image), ``quality`` (mapped to a
step count, see :data:`QUALITY_STEPS`), ``response_format`` (``b64_json`` or
``url``), ``stream`` with ``partial_images`` (0-3), and ``moderation``
(``auto`` or ``low``: accepted as OpenAI documents it; omni runs no
moderation model, docs/reference/http-api.md says so). Torch-free.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

from omni_core import OmniDiffusionRequest
from omni_core.validation import MAX_PARTIAL_IMAGES

OUTPUT_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
BACKGROUNDS = ("auto", "opaque")
QUALITY_STEPS: dict[str, int | None] = {
    "auto": None,  # the model's own default
    "low": 4,
    "medium": 12,
    "high": 25,
    "xhigh": 40,
    "max": 50,
    "standard": 12,  # DALL-E's names, as the openai client still sends them
    "hd": 25,
}
"""``quality`` → ``num_inference_steps`` (an explicit ``num_inference_steps`` wins)."""
MODERATION_LEVELS = ("auto", "low")
RESPONSE_FORMATS = ("b64_json", "url")
DEFAULT_COMPRESSION = 100
PROMPT_TOKENS_PER_WORD = 1
OUTPUT_TOKEN_PIXELS = 32 * 32
"""``usage``: one output token per 32x32 pixels of image made, and one input token per prompt
word and per 32x32 pixels of input image. A diffusion model has no tokens; this is a stable,
documented measure of work that clients reading OpenAI's ``usage`` can sum."""


@dataclass(frozen=True)
class OutputOptions:
    """The delivery fields of one request, validated."""

    output_format: str = "png"
    output_compression: int = DEFAULT_COMPRESSION
    background: str = "auto"
    quality: str = "auto"
    response_format: str = "b64_json"
    stream: bool = False
    partial_images: int = 0

    @property
    def media_type(self) -> str:
        return OUTPUT_FORMATS[self.output_format]

    def encode(self, image: Any, *, preview: bool = False) -> bytes:
        """An 8-bit RGB array as this format's bytes (Pillow). A ``preview`` PNG is compressed
        at zlib level 1: it is seen for a moment, and level 6 made 3 previews cost 12 % of a
        256x256 request (benchmarks/bench_streaming.py)."""
        from PIL import Image

        buffer = io.BytesIO()
        picture = Image.fromarray(image)
        if self.output_format == "png":
            picture.save(buffer, format="PNG", compress_level=1 if preview else 6)
        elif self.output_format == "jpeg":
            picture.save(buffer, format="JPEG", quality=max(1, self.output_compression))
        else:
            lossless = self.output_compression >= 100
            picture.save(buffer, format="WEBP", quality=self.output_compression, lossless=lossless)
        return buffer.getvalue()

    def encode_b64(self, image: Any, *, preview: bool = False) -> str:
        return base64.b64encode(self.encode(image, preview=preview)).decode("ascii")


OUTPUT_FIELDS = frozenset(
    {
        "output_format",
        "output_compression",
        "background",
        "quality",
        "response_format",
        "stream",
        "partial_images",
        "moderation",
    }
)


def parse_output_options(body: dict[str, Any], invalid: Any) -> OutputOptions:
    """The delivery fields of ``body`` (a JSON body or a typed form); ``invalid(param, message)``
    builds the 400 (the protocol's, so every refusal has one shape)."""
    output_format = _choice(body, "output_format", tuple(OUTPUT_FORMATS), "png", invalid)
    compression = body.get("output_compression")
    if compression is None:
        compression = DEFAULT_COMPRESSION
    elif isinstance(compression, bool) or not isinstance(compression, int) or not 0 <= compression <= 100:
        raise invalid(
            "output_compression", f"output_compression must be an integer 0-100, got {compression!r}"
        )
    background = body.get("background") or "auto"
    if background == "transparent":
        raise invalid(
            "background",
            "background 'transparent' needs a model that draws an alpha channel; this one draws opaque "
            "images: use 'auto' or 'opaque'",
        )
    background = _choice(body, "background", BACKGROUNDS, "auto", invalid)
    quality = _choice(body, "quality", tuple(QUALITY_STEPS), "auto", invalid)
    _choice(body, "moderation", MODERATION_LEVELS, "auto", invalid)
    response_format = _choice(body, "response_format", RESPONSE_FORMATS, "b64_json", invalid)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", f"stream must be true or false, got {stream!r}")
    partial = body.get("partial_images")
    if partial is None:
        partial = 0
    elif isinstance(partial, bool) or not isinstance(partial, int) or not 0 <= partial <= MAX_PARTIAL_IMAGES:
        raise invalid(
            "partial_images", f"partial_images must be an integer 0-{MAX_PARTIAL_IMAGES}, got {partial!r}"
        )
    if partial and not stream:
        raise invalid("partial_images", "partial_images needs stream=true (previews arrive as stream events)")
    if stream and response_format == "url":
        raise invalid(
            "response_format", "a stream carries the images themselves; use b64_json with stream=true"
        )
    return OutputOptions(
        output_format=output_format,
        output_compression=compression,
        background=background,
        quality=quality,
        response_format=response_format,
        stream=bool(stream),
        partial_images=partial,
    )


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str, invalid: Any) -> str:
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        shown = repr(value)[:60]
        raise invalid(name, f"{name} must be one of {', '.join(allowed)}; got {shown}")
    return str(value)


def usage_for(request: OmniDiffusionRequest, height: int, width: int, images: int) -> dict[str, Any]:
    """OpenAI's ``usage`` object for one request (see :data:`OUTPUT_TOKEN_PIXELS`)."""
    text_tokens = len(request.prompt.split()) * PROMPT_TOKENS_PER_WORD
    image_tokens = sum(
        math.ceil(image.shape[0] * image.shape[1] / OUTPUT_TOKEN_PIXELS) for image in request.images
    )
    output_tokens = images * math.ceil(height * width / OUTPUT_TOKEN_PIXELS)
    return {
        "input_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens": output_tokens,
        "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0},
        "total_tokens": text_tokens + image_tokens + output_tokens,
    }
