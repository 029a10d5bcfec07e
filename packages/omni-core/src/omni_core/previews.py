"""Preview images: what a request looks like part-way through denoising.

A request asks for ``partial_images`` previews (OpenAI's name and range,
0-3); the runner sends them at evenly spaced steps, each decoded from the
model's current estimate of the final image (x0), and executors pass them on
as :class:`~omni_core.executors.ProgressEvent` ``preview``. This module is the
torch-free half (the schedule and the data); the runner's half, capturing x0
and decoding it cheaply, is :mod:`omni_core.runner.previews`.
"""

from __future__ import annotations

from dataclasses import dataclass

from omni_core.images import ImageArray


@dataclass(frozen=True)
class Preview:
    """One preview of one request: ``index`` counts from 0 (OpenAI's ``partial_image_index``)."""

    index: int
    images: tuple[ImageArray, ...]
    """One 8-bit RGB array per image the request makes (``n``), at the requested size."""


def preview_steps(total_steps: int, count: int) -> list[int]:
    """The steps (counted from 1) after which to send ``count`` previews of a ``total_steps`` run.

    Evenly spaced and strictly before the last step (the last step's image is the result
    itself): 20 steps and 3 previews give steps 5, 10 and 15. A run with fewer steps than
    previews sends fewer, as OpenAI's API may ("you may receive fewer partial images").
    """
    if count <= 0 or total_steps <= 1:
        return []
    steps = sorted({max(1, (total_steps * i) // (count + 1)) for i in range(1, count + 1)})
    return [step for step in steps if step < total_steps]
