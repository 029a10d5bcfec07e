"""Hostile inputs, shared by every entry point's tests (HTTP, Lambda, Celery): one list, one answer.

Each case once reached a model or a parser it could hurt (a 500, a minute of CPU, a
silently truncated image). Every entry point must refuse each with a validation error
naming :attr:`HostileExtra.field` (core's name; the HTTP API writes ``extra`` as
``extra_params``).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from omni_core.engine import DiffusionEngine
from omni_core.errors import RequestValidationError
from omni_core.images import encode_png
from omni_core.request import DiffusionOutput, OmniDiffusionRequest


@dataclass(frozen=True)
class HostileExtra:
    label: str
    extra: dict[str, Any]
    field: str


HOSTILE_EXTRAS = [
    HostileExtra("padding_mask_crop", {"padding_mask_crop": 32}, "extra.padding_mask_crop"),
    HostileExtra("999 timesteps", {"timesteps": list(range(999, 0, -1))}, "extra.timesteps"),
    HostileExtra("999 sigmas", {"sigmas": [1.0 - i / 999 for i in range(999)]}, "extra.sigmas"),
    HostileExtra("timesteps empty", {"timesteps": []}, "extra.timesteps"),
    HostileExtra("timesteps negative", {"timesteps": [-5]}, "extra.timesteps"),
    HostileExtra("timesteps past training", {"timesteps": [1_000_000]}, "extra.timesteps"),
    HostileExtra("timesteps text", {"timesteps": ["x"]}, "extra.timesteps"),
    HostileExtra("timesteps not a list", {"timesteps": 5}, "extra.timesteps"),
    HostileExtra("clip_skip negative", {"clip_skip": -5}, "extra.clip_skip"),
    HostileExtra("clip_skip 1e9", {"clip_skip": 1e9}, "extra.clip_skip"),
    HostileExtra("clip_skip huge int", {"clip_skip": 10**9}, "extra.clip_skip"),
    HostileExtra("guidance_rescale text", {"guidance_rescale": "x"}, "extra.guidance_rescale"),
    HostileExtra("guidance_rescale 50", {"guidance_rescale": 50}, "extra.guidance_rescale"),
    HostileExtra("eta list", {"eta": [1, 2]}, "extra.eta"),
    HostileExtra("eta 5000 digits", {"eta": 10**4000}, "extra.eta"),
    HostileExtra("eta bool", {"eta": True}, "extra.eta"),
    HostileExtra("latents", {"latents": 1}, "extra.latents"),
    HostileExtra("unknown name", {"not_an_argument": 1}, "extra.not_an_argument"),
    HostileExtra("surrogate name", {"\ud800": 1}, "extra.\\ud800"),
    HostileExtra("nested 20 deep", {"eta": [[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]}, "extra.eta"),
]
"""Pipeline arguments (for a Stable Diffusion model) that must be refused before the model runs."""

HOSTILE_LORA_SCALES = [1e30, 1e300, 2**64, -1e9]
"""``lora_scale`` values past any configured range (with a configured ``lora``)."""


WIRE_GOOD: dict[str, Any] = {"prompt": "a 7", "num_inference_steps": 1, "height": 64, "width": 64, "seed": 1}


def hostile_wire_requests() -> list[tuple[dict[str, Any], str]]:
    """Requests as a worker reads them from a wire (``to_dict``'s JSON), each with the field its
    error must name: :data:`HOSTILE_EXTRAS`, hostile images, unknown keys, a lone ``lora_scale``."""
    image = _b64(encode_png(np.full((64, 64, 3), 128, np.uint8)))
    cases = [({**WIRE_GOOD, "extra": case.extra}, case.field) for case in HOSTILE_EXTRAS]
    cases += [
        ({**WIRE_GOOD, "image": _b64(png_16bit())}, "image"),
        ({**WIRE_GOOD, "image": image, "mask_image": _b64(png_16bit(channels=4))}, "mask_image"),
        ({**WIRE_GOOD, "image": _b64(progressive_jpeg_with_empty_scans(256, 5000))}, "image"),
        ({**WIRE_GOOD, "image": _b64(png_with_chunks(20_000))}, "image"),
        ({**WIRE_GOOD, "promt": "typo"}, "promt"),
        ({**WIRE_GOOD, "\ud800": 1}, "\\ud800"),
        ({**WIRE_GOOD, "lora_scale": 1e300}, "lora_scale"),
    ]
    return [({**request, "request_id": f"hostile-{i}"}, field) for i, (request, field) in enumerate(cases)]


def in_process_answer(engine: DiffusionEngine, wire: dict[str, Any]) -> DiffusionOutput:
    """What an in-process engine says to ``wire`` (a parse refusal included): the answer every
    worker reading the same JSON must give."""
    try:
        request = OmniDiffusionRequest.from_dict(json.loads(json.dumps(wire)))
    except RequestValidationError as exc:
        return DiffusionOutput.failure(str(wire.get("request_id")), exc)
    return engine.step([request])[0]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def progressive_jpeg_with_empty_scans(size: int = 1024, scans: int = 20_000) -> bytes:
    """A valid progressive JPEG of ``size`` x ``size`` followed by ``scans`` empty scans: without a
    scan cap, libjpeg makes a pass over every pixel per scan (4 s for 20 000 at 1024x1024)."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
        buffer, "JPEG", progressive=True, quality=50
    )
    data = buffer.getvalue()
    last_scan = data.rindex(b"\xff\xda")
    header_length = int.from_bytes(data[last_scan + 2 : last_scan + 4], "big")
    empty_scan = data[last_scan : last_scan + 2 + header_length] + b"\x00"
    end = data.rindex(b"\xff\xd9")
    return data[:end] + empty_scan * scans + b"\xff\xd9"


def png_with_chunks(chunks: int = 600_000, size: int = 64) -> bytes:
    """A small PNG with ``chunks`` empty private chunks before its data (Pillow parses each in Python)."""
    data = encode_png(np.zeros((size, size, 3), np.uint8))
    header_end = 8 + 25  # signature and IHDR
    return data[:header_end] + _png_chunk(b"zzZz", b"") * chunks + data[header_end:]


def jpeg_with_markers(markers: int = 2_000_000, size: int = 64) -> bytes:
    """A small JPEG with ``markers`` empty comment segments after its start marker."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    return data[:2] + b"\xff\xfe\x00\x02" * markers + data[2:]


def png_16bit(size: int = 64, channels: int = 3) -> bytes:
    """A 16-bit RGB (3) or RGBA (4) PNG, which Pillow opens as 8-bit modes by dropping the low byte."""
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 65535, (size, size, channels)).astype(">u2")
    color_type = {3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 16, color_type, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def mpo_jpeg(image: np.ndarray) -> bytes:
    """``image`` as an MPO file (a JPEG with a second frame, as phones write): omni reads the first."""
    buffer = io.BytesIO()
    first = Image.fromarray(image)
    first.save(buffer, "MPO", save_all=True, append_images=[first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )
