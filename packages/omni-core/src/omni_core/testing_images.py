"""Image comparisons for tests: 8-bit images, compared the way docs/architecture.md promises."""

from __future__ import annotations

import numpy as np

from omni_core.images import ImageArray


def fraction_of_pixels_off_by_more_than(a: ImageArray, b: ImageArray, levels: int) -> float:
    """Share of channel values differing by more than ``levels`` 8-bit steps."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float((diff > levels).mean())
