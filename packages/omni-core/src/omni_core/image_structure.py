"""A client image's container structure, walked before Pillow parses or decodes it.

Pillow reads PNG chunks and JPEG markers in Python and libjpeg makes one pass
over every coefficient per progressive scan, so an upload inside the pixel and
byte caps can still cost seconds of CPU: measured on a 2-core machine, 600 000
empty PNG chunks took 3.8 s to open, 2 000 000 JPEG comment markers 5.2 s, and a
1024x1024 progressive JPEG followed by 20 000 empty scans (230 KB) 4.0 s to
decode. Walking the structure here is bounded: it stops at the first count over
its cap, so refusing such a file costs microseconds, and what passes decodes in
time proportional to its pixels. Torch-free; raises
:class:`~omni_core.errors.RequestValidationError` naming the field.
"""

from __future__ import annotations

import re

from omni_core.errors import RequestValidationError

MAX_PNG_CHUNKS = 10_000
"""Chunks one PNG may hold: an 8 MiB image written in 1 KiB IDAT chunks has 8 000; real ones have tens."""
MAX_JPEG_MARKERS = 512
"""Segments one JPEG may hold (tables, metadata, scans): a phone photo has about 20, a progressive one 40."""
MAX_JPEG_SCANS = 100
"""Scans one JPEG may hold; encoders write 1 (baseline) or about 10 (progressive)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"
_JPEG_SOS = 0xDA
_JPEG_EOI = 0xD9
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RST0-7 carry no length
# The next marker after a scan's entropy-coded data: 0xFF not followed by a stuffed 0x00, a restart
# marker or another fill byte.
_MARKER_AFTER_SCAN = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")


def check_image_structure(data: bytes, field: str) -> None:
    """Refuse a PNG or JPEG whose structure would cost more to parse than its pixels justify.

    Also refuses 16-bit PNGs, which Pillow would silently cut to their high byte
    (omni's models take 8-bit images; convert the file, e.g. ``convert -depth 8``).
    Other formats (WebP) are parsed by libwebp in C, bounded by their pixels.
    """
    if data.startswith(PNG_SIGNATURE):
        _check_png(data, field)
    elif data.startswith(JPEG_SIGNATURE):
        _check_jpeg(data, field)


def _check_png(data: bytes, field: str) -> None:
    if len(data) >= 33 and data[12:16] == b"IHDR" and data[24] == 16:
        raise RequestValidationError(
            field, "is a 16-bit PNG; send an 8-bit image (omni would otherwise drop the low byte)"
        )
    position, chunks = len(PNG_SIGNATURE), 0
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise RequestValidationError(
                field, f"holds more than {MAX_PNG_CHUNKS} PNG chunks; re-save it with a standard encoder"
            )
        if kind == b"IEND":
            return
        position += 12 + length


def _check_jpeg(data: bytes, field: str) -> None:
    """Walk the first image's segments (an MPO's later frames are never decoded) and count them."""
    position, markers, scans = len(JPEG_SIGNATURE), 0, 0
    while position + 2 <= len(data):
        if data[position] != 0xFF:
            return  # not a marker where one must be: Pillow reports the corruption
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == _JPEG_EOI:
            return
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            raise RequestValidationError(
                field,
                f"holds more than {MAX_JPEG_MARKERS} JPEG segments; re-save it with a standard encoder",
            )
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == _JPEG_SOS:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise RequestValidationError(
                    field,
                    f"holds more than {MAX_JPEG_SCANS} JPEG scans (each costs a pass over every pixel); "
                    "re-save it with a standard encoder",
                )
            after = _MARKER_AFTER_SCAN.search(data, position)
            if after is None:
                return
            position = after.start()
