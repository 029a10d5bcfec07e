"""Moving a batch's images from a worker to the parent.

``shm``: the worker writes every image of a batch into one POSIX shared
memory block and sends only its name and layout; the parent copies the
images out and unlinks the block. ``pipe``: the arrays are pickled through
the worker's pipe. Both are same-machine only and between omni's own
processes (never a network peer). ``benchmarks/bench_multiproc.py``
measures both: the pipe wins below about 1 MB a batch (no block to create
and map), shared memory wins 2-3x above, so ``auto`` picks by size (see
docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from typing import Any

import numpy as np

from omni_core.executors import ImageArray


@dataclass(frozen=True)
class ImageLayout:
    shape: tuple[int, ...]
    offset: int


@dataclass(frozen=True)
class SharedImages:
    """What crosses the pipe for a shared-memory batch: a block name and where each image is."""

    name: str
    layouts: list[list[ImageLayout]]
    """Per output, its images' layouts."""


@dataclass(frozen=True)
class PipedImages:
    images: list[list[ImageArray]]


PackedImages = SharedImages | PipedImages


SHM_THRESHOLD_BYTES = 1 << 20
"""``auto`` uses shared memory from this batch size up; below it, creating a block costs more."""


def pack_images(per_output: list[list[ImageArray]], transport: str) -> PackedImages:
    """Worker side: put a batch's images where the parent will find them."""
    total = sum(image.nbytes for images in per_output for image in images)
    if transport == "pipe" or total == 0 or (transport == "auto" and total < SHM_THRESHOLD_BYTES):
        return PipedImages(per_output)
    block = shared_memory.SharedMemory(create=True, size=total)
    # The parent unlinks the block once it copied the images out. Workers are not
    # multiprocessing children, so this process's own resource tracker would otherwise
    # "clean up" (and warn about) a block the parent already freed.
    resource_tracker.unregister(block._name, "shared_memory")  # type: ignore[attr-defined]
    try:
        offset = 0
        layouts: list[list[ImageLayout]] = []
        for images in per_output:
            placed = []
            for image in images:
                target: np.ndarray[Any, Any] = np.ndarray(
                    image.shape, dtype=np.uint8, buffer=block.buf, offset=offset
                )
                target[...] = image
                placed.append(ImageLayout(tuple(image.shape), offset))
                offset += image.nbytes
            layouts.append(placed)
        return SharedImages(block.name, layouts)
    finally:
        block.close()


def unpack_images(packed: PackedImages) -> list[list[ImageArray]]:
    """Parent side: copy the images out and free the shared block."""
    if isinstance(packed, PipedImages):
        return packed.images
    block = shared_memory.SharedMemory(name=packed.name)
    try:
        result: list[list[ImageArray]] = []
        for layouts in packed.layouts:
            images = []
            for layout in layouts:
                view: np.ndarray[Any, Any] = np.ndarray(
                    layout.shape, dtype=np.uint8, buffer=block.buf, offset=layout.offset
                )
                images.append(view.copy())
                del view
            result.append(images)
        return result
    finally:
        block.close()
        block.unlink()
