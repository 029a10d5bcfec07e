"""The scheduler's queues: one per priority level, fair across tenants inside a level.

Not thread-safe by itself; the executor holds its lock around every call.
Removal (cancellation, deadline) is lazy: the entry is marked and skipped
when it reaches a queue's head, so cancelling is O(1). Order is by arrival
sequence number, never by clock, so two requests in the same microsecond
still keep their order.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal

from omni_core import DiffusionOutput, OmniDiffusionRequest
from omni_executor_priority.ratelimit import GCRALimiter

State = Literal["queued", "running", "done"]


@dataclass(eq=False)
class Entry:
    seq: int
    request: OmniDiffusionRequest
    future: Future[DiffusionOutput]
    enqueued: float
    deadline: float | None = None
    """Monotonic-clock deadline."""
    state: State = "queued"
    preemptions: int = 0
    preempting: bool = False
    waited: float = 0.0

    @property
    def priority(self) -> int:
        return self.request.priority

    @property
    def tenant(self) -> str:
        return self.request.tenant or ""


@dataclass
class Level:
    """One priority level: a FIFO per tenant and a round-robin over tenants."""

    tenants: dict[str, deque[Entry]] = field(default_factory=dict)
    rotation: deque[str] = field(default_factory=deque)
    size: int = 0

    def push(self, entry: Entry, *, front: bool = False) -> None:
        queue = self.tenants.get(entry.tenant)
        if queue is None:
            queue = self.tenants[entry.tenant] = deque()
            self.rotation.append(entry.tenant)
        if front:
            queue.appendleft(entry)
        else:
            queue.append(entry)
        self.size += 1

    def _head(self, tenant: str) -> Entry | None:
        queue = self.tenants[tenant]
        while queue and queue[0].state != "queued":
            queue.popleft()
        return queue[0] if queue else None

    def oldest(self) -> Entry | None:
        """The longest-waiting live entry (the oldest of the tenants' heads)."""
        best: Entry | None = None
        for tenant in list(self.rotation):
            head = self._head(tenant)
            if head is None:
                self._drop_tenant(tenant)
            elif best is None or head.seq < best.seq:
                best = head
        return best

    def _drop_tenant(self, tenant: str) -> None:
        del self.tenants[tenant]
        self.rotation.remove(tenant)

    def take(self, entry: Entry) -> None:
        queue = self.tenants[entry.tenant]
        queue.popleft()
        self.size -= 1
        if not queue:
            self._drop_tenant(entry.tenant)

    def pop_fair(self, limiter: GCRALimiter | None, now: float) -> tuple[Entry | None, float | None]:
        """Next tenant in rotation that is not throttled; (entry, earliest retry if none)."""
        retry: float | None = None
        for _ in range(len(self.rotation)):
            tenant = self.rotation[0]
            self.rotation.rotate(-1)
            head = self._head(tenant)
            if head is None:
                self._drop_tenant(tenant)
                continue
            if limiter is not None:
                wait = limiter.retry_after(tenant, now)
                if wait > 0:
                    retry = wait if retry is None else min(retry, wait)
                    continue
                limiter.consume(tenant, now)
            self.take(head)
            return head, None
        return None, retry


class PriorityQueues:
    """All levels; picks the next request by effective priority, then fairly within a level."""

    def __init__(
        self, aging_interval: float | None, max_wait: float | None, limiter: GCRALimiter | None
    ) -> None:
        self.levels: dict[int, Level] = {}
        self.aging_interval = aging_interval
        self.max_wait = max_wait
        self.limiter = limiter

    def depth(self, priority: int) -> int:
        level = self.levels.get(priority)
        return level.size if level else 0

    def depths(self) -> dict[int, int]:
        return {p: level.size for p, level in sorted(self.levels.items()) if level.size}

    def push(self, entry: Entry, *, front: bool = False) -> None:
        self.levels.setdefault(entry.priority, Level()).push(entry, front=front)

    def discard(self, entry: Entry) -> None:
        """Mark a queued entry removed (cancelled or expired); O(1)."""
        if entry.state == "queued":
            entry.state = "done"
            self.levels[entry.priority].size -= 1

    def effective_priority(self, entry: Entry, now: float) -> float:
        waited = now - entry.enqueued
        if self.max_wait is not None and waited >= self.max_wait:
            return -math.inf
        if self.aging_interval is None:
            return entry.priority
        return entry.priority - math.floor(waited / self.aging_interval)

    def pop(self, now: float) -> tuple[Entry | None, float | None]:
        """The next entry to run, or (None, seconds until a throttled tenant may go)."""
        candidates: list[tuple[float, int, int, Entry]] = []
        for priority, level in list(self.levels.items()):
            if level.size == 0:
                del self.levels[priority]  # only removed entries left in it
                continue
            oldest = level.oldest()
            if oldest is None:
                continue
            candidates.append((self.effective_priority(oldest, now), oldest.seq, priority, oldest))
        candidates.sort(key=lambda c: (c[0], c[1]))
        retry: float | None = None
        for effective, _, priority, oldest in candidates:
            level = self.levels[priority]
            if effective == -math.inf:
                # Past max_wait: exactly the oldest request goes, not just its level.
                wait = self.limiter.retry_after(oldest.tenant, now) if self.limiter else 0.0
                if wait <= 0:
                    if self.limiter:
                        self.limiter.consume(oldest.tenant, now)
                    level.take(oldest)
                    return oldest, None
                retry = wait if retry is None else min(retry, wait)
                continue
            entry, wait_for = level.pop_fair(self.limiter, now)
            if entry is not None:
                return entry, None
            if wait_for is not None:
                retry = wait_for if retry is None else min(retry, wait_for)
        return None, retry
