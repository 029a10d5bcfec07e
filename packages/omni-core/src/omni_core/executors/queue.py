"""The request queue every queued executor shares, and how a batch is taken from it.

Torch-free and lock-free by itself (the executor holds its lock around
it). A batch is the oldest waiting request plus later ones that can share
its pipeline call (same :func:`~omni_core.runner.batching.request_batch_key`),
up to a number of images: oldest-first keeps latency fair, and compatible
followers fill the batch.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from omni_core.request import DiffusionOutput, OmniDiffusionRequest
from omni_core.runner.batching import BatchKey, request_batch_key


@dataclass(eq=False)
class QueuedRequest:
    """A submitted request, its future and when it was queued and dispatched."""

    request: OmniDiffusionRequest
    future: Future[DiffusionOutput]
    enqueued: float = field(default_factory=time.perf_counter)
    dispatched: float | None = None
    started: bool = False
    """Its slot reported a denoising step (a step-batching slot holds requests it has not started)."""

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def claim(self) -> bool:
        """Mark the future running (False if its caller cancelled it); a requeued one already is."""
        return self.future.running() or self.future.set_running_or_notify_cancel()

    @property
    def images(self) -> int:
        """Images the request makes (``n`` per input image)."""
        return self.request.num_outputs_per_prompt * max(1, len(self.request.images))

    @property
    def key(self) -> BatchKey:
        return request_batch_key(self.request)


class RequestQueue:
    """FIFO of submitted requests; cancelled futures are dropped lazily."""

    def __init__(self) -> None:
        self._items: deque[QueuedRequest] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: QueuedRequest) -> None:
        self._items.append(item)

    def push_front(self, items: list[QueuedRequest]) -> None:
        """Put requests back at the head, in order (their slot died before starting them)."""
        self._items.extendleft(reversed(items))

    def remove(self, request_id: str) -> QueuedRequest | None:
        """Take a queued request out (abort before it ran); None if not queued."""
        for item in self._items:
            if item.request_id == request_id:
                self._items.remove(item)
                return item
        return None

    def drain(self) -> list[QueuedRequest]:
        items = list(self._items)
        self._items.clear()
        return items

    def take_batch(self, max_images: int, *, same_key: bool = True) -> list[QueuedRequest]:
        """Oldest live request plus compatible followers, marked running; [] if none.

        ``same_key=False`` takes followers of any key (for a slot whose runner batches by step)."""
        head: QueuedRequest | None = None
        while self._items and head is None:
            candidate = self._items.popleft()
            if candidate.claim():
                head = candidate
        if head is None:
            return []
        batch = [head]
        key = head.key
        images = head.images
        kept: deque[QueuedRequest] = deque()
        while self._items:
            if images >= max_images:
                kept.extend(self._items)
                self._items.clear()
                break
            item = self._items.popleft()
            if item.future.cancelled():
                continue
            fits = images + item.images <= max_images
            if fits and (not same_key or item.key == key) and item.claim():
                batch.append(item)
                images += item.images
            else:
                kept.append(item)
        self._items = kept
        return batch
