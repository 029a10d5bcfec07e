"""The parent's queue of submitted requests and how a batch is taken from it.

Torch-free and lock-free by itself (the executor holds its lock around
it). A batch is the oldest waiting request plus later ones that can share
its pipeline call (same size, steps, guidance), up to a number of images:
oldest-first keeps latency fair, and compatible followers fill the batch.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from omni_core.request import DiffusionOutput, OmniDiffusionRequest


@dataclass
class Pending:
    request: OmniDiffusionRequest
    future: Future[DiffusionOutput]
    enqueued: float = field(default_factory=time.perf_counter)
    dispatched: float | None = None

    @property
    def key(self) -> tuple[object, ...]:
        r = self.request
        return (r.height, r.width, r.num_inference_steps, r.guidance_scale)


class PendingQueue:
    """FIFO of submitted requests; cancelled futures are dropped lazily."""

    def __init__(self) -> None:
        self._items: deque[Pending] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: Pending) -> None:
        self._items.append(item)

    def remove(self, request_id: str) -> Pending | None:
        """Take a queued request out (abort before it ran); None if not queued."""
        for item in self._items:
            if item.request.request_id == request_id:
                self._items.remove(item)
                return item
        return None

    def drain(self) -> list[Pending]:
        items = list(self._items)
        self._items.clear()
        return items

    def take_batch(self, max_images: int) -> list[Pending]:
        """Oldest live request plus compatible followers, marked running; [] if none."""
        head: Pending | None = None
        while self._items and head is None:
            candidate = self._items.popleft()
            if candidate.future.set_running_or_notify_cancel():
                head = candidate
        if head is None:
            return []
        batch = [head]
        images = head.request.num_outputs_per_prompt
        kept: deque[Pending] = deque()
        while self._items:
            if images >= max_images:
                kept.extend(self._items)
                self._items.clear()
                break
            item = self._items.popleft()
            if item.future.cancelled():
                continue
            fits = images + item.request.num_outputs_per_prompt <= max_images
            if item.key == head.key and fits and item.future.set_running_or_notify_cancel():
                batch.append(item)
                images += item.request.num_outputs_per_prompt
            else:
                kept.append(item)
        self._items = kept
        return batch
