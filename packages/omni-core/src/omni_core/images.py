"""Image and array encodings used on every wire (HTTP, Lambda, JSON files).

Images travel as PNG (lossless, so the 8-bit determinism guarantee survives
any executor) and arrays as raw little-endian bytes with dtype and shape:
both are plain data. Nothing here ever unpickles.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

ImageArray = npt.NDArray[np.uint8]
"""An 8-bit image, shape (height, width, channels)."""

_ALLOWED_ARRAY_DTYPES = frozenset({"float16", "float32", "float64", "uint8", "int64", "int32"})


def to_pil(image: ImageArray) -> Image.Image:
    """Wrap an 8-bit (H, W, C) array as a PIL image."""
    return Image.fromarray(np.ascontiguousarray(image))


def encode_png(image: ImageArray) -> bytes:
    """Encode an 8-bit (H, W, C) array as PNG bytes."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> ImageArray:
    """Decode PNG (or any format Pillow reads) to an 8-bit RGB array."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def encode_png_b64(image: ImageArray) -> str:
    """PNG as base64 text, the form OpenAI's ``b64_json`` uses."""
    return base64.b64encode(encode_png(image)).decode("ascii")


def decode_png_b64(text: str) -> ImageArray:
    """Inverse of :func:`encode_png_b64`."""
    return decode_png(base64.b64decode(text, validate=True))


def array_to_dict(array: npt.NDArray[Any]) -> dict[str, Any]:
    """A numeric array as JSON-safe data: dtype, shape and base64 raw bytes."""
    contiguous = np.ascontiguousarray(array)
    little = contiguous.astype(contiguous.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": str(contiguous.dtype),
        "shape": list(contiguous.shape),
        "data": base64.b64encode(little.tobytes()).decode("ascii"),
    }


def array_from_dict(data: dict[str, Any]) -> npt.NDArray[Any]:
    """Inverse of :func:`array_to_dict`; refuses dtypes outside a numeric allow-list."""
    dtype_name = str(data["dtype"])
    if dtype_name not in _ALLOWED_ARRAY_DTYPES:
        raise ValueError(
            f"array dtype {dtype_name!r} is not allowed; expected one of {sorted(_ALLOWED_ARRAY_DTYPES)}"
        )
    shape = tuple(int(n) for n in data["shape"])
    raw = base64.b64decode(data["data"], validate=True)
    dtype = np.dtype(dtype_name).newbyteorder("<")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.dtype(dtype_name)).copy()
