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

from omni_core.errors import RequestValidationError
from omni_core.image_structure import check_image_structure

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


INPUT_IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "MPO"})
"""What OpenAI's edits endpoint accepts (PNG, JPEG, WebP), and all omni decodes from a client. MPO is
the JPEG most phones write (a JPEG with a second, depth or preview, image after it): its first frame,
the photo, is what is decoded."""
INPUT_IMAGE_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P"})
"""8-bit modes; 16-bit, float and CMYK images are refused rather than silently rescaled."""
DECODE_PIXEL_CAP = 64 * 1024 * 1024
"""The most pixels any input image may declare before a deployment's own cap is known (a bomb guard)."""


def open_input_image(data: bytes, field: str, *, max_pixels: int = DECODE_PIXEL_CAP) -> Image.Image:
    """A client's image bytes, opened from the header only: format, size, mode and structure checked.

    Pillow reads the header lazily, so the declared size is checked against
    ``max_pixels`` before a single pixel is decompressed: a tiny PNG that
    declares 20000x20000 (a decompression bomb) is refused, not inflated. The
    container is walked first (:func:`~omni_core.image_structure.check_image_structure`)
    so that neither opening nor decoding costs more than the pixels justify.
    Every failure is a :class:`RequestValidationError` naming ``field``;
    :func:`load_input_image` decodes what passed.
    """
    check_image_structure(data, field)
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise RequestValidationError(
            field, f"declares more than {max_pixels} pixels; send a smaller image"
        ) from None
    except Exception:  # noqa: BLE001 - UnidentifiedImageError and parser errors alike
        raise RequestValidationError(
            field, "is not an image Pillow can read; send a PNG, JPEG or WebP file"
        ) from None
    width, height = image.size
    if image.format not in INPUT_IMAGE_FORMATS:
        raise RequestValidationError(field, f"is a {image.format} file; send PNG, JPEG or WebP")
    if width * height > max_pixels:
        raise RequestValidationError(
            field,
            f"declares {width}x{height} = {width * height} pixels, over the cap of {max_pixels}; "
            "send a smaller image (or raise max_image_pixels)",
        )
    if image.mode not in INPUT_IMAGE_MODES:
        raise RequestValidationError(
            field, f"has pixel mode {image.mode!r}; send an 8-bit RGB, RGBA or grayscale image"
        )
    return image


def load_input_image(image: Image.Image, field: str) -> Image.Image:
    """Decode an image :func:`open_input_image` passed (its first frame, for MPO and animations)."""
    try:
        image.load()
    except Exception as exc:  # noqa: BLE001 - truncated data raises OSError, bad chunks SyntaxError
        raise RequestValidationError(
            field, f"is truncated or corrupt ({type(exc).__name__}); send the whole file"
        ) from None
    return image


def decode_input_image(data: bytes, field: str, *, max_pixels: int = DECODE_PIXEL_CAP) -> Image.Image:
    """:func:`open_input_image` then :func:`load_input_image`: one image, fully checked and decoded."""
    return load_input_image(open_input_image(data, field, max_pixels=max_pixels), field)


def image_to_rgb_array(image: Image.Image) -> ImageArray:
    """An input image as the (H, W, 3) 8-bit array requests hold."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def image_to_mask_array(image: Image.Image) -> ImageArray:
    """A mask as an (H, W) 8-bit array, 255 where the model repaints (diffusers' convention).

    A mask with transparency is read the OpenAI way (fully transparent pixels
    are the ones to edit); an opaque one the diffusers way (white repaints).
    """
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA"), dtype=np.uint8)[:, :, 3]
        return np.where(alpha == 0, 255, 0).astype(np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8).copy()


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
