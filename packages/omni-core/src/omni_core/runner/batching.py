"""Which requests may share one pipeline call.

A diffusers call shares height, width, step count and guidance scale across
its whole batch (``pipe([p1, p2], ...)``), so only requests that agree on
those four batch together. Each image still gets its own generator, so a
request's images do not depend on what it was batched with (beyond the
last-bit float noise of batched matmuls; see DESIGN.md, Determinism).
Torch-free, so it is cheap to test and reuse in schedulers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omni_core.request import OmniDiffusionRequest


@dataclass(frozen=True)
class PlannedRequest:
    """A validated request with every default filled in."""

    index: int
    """Position in the caller's list, so outputs go back in order."""
    request: OmniDiffusionRequest
    height: int | None
    width: int | None
    num_inference_steps: int | None
    guidance_scale: float | None
    seed: int

    @property
    def batch_key(self) -> tuple[int | None, int | None, int | None, float | None]:
        return (self.height, self.width, self.num_inference_steps, self.guidance_scale)

    @property
    def num_images(self) -> int:
        return self.request.num_outputs_per_prompt


def plan_batches(planned: Sequence[PlannedRequest], max_batch_images: int) -> list[list[PlannedRequest]]:
    """Group compatible requests, in arrival order, into batches of at most ``max_batch_images``.

    A request asking for more images than the cap runs alone rather than
    being refused: the cap bounds batching, not what a request may ask for.
    """
    groups: dict[tuple[int | None, int | None, int | None, float | None], list[list[PlannedRequest]]] = {}
    order: list[list[PlannedRequest]] = []
    for item in planned:
        batches = groups.setdefault(item.batch_key, [])
        current = batches[-1] if batches else None
        if current is None or sum(p.num_images for p in current) + item.num_images > max_batch_images:
            current = []
            batches.append(current)
            order.append(current)
        current.append(item)
    return order
