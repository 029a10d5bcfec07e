"""A non-blocking per-key GCRA rate limiter.

GCRA (the generic cell rate algorithm) is a token bucket expressed as one
timestamp per key: cheap, exact, and it answers "allowed now, or retry in
N seconds" without sleeping, so a dispatcher can skip a throttled tenant
and serve another instead of blocking (no head-of-line blocking). The
libraries that offer it either block, are asyncio-only or change API each
major version (see docs/architecture.md), so it is written here in 30 lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class GCRALimiter:
    """``rate`` requests per second per key, with bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.interval = 1.0 / rate
        self.tolerance = self.interval * (burst - 1)
        self.clock = clock
        self._tat: dict[str, float] = {}  # theoretical arrival time per key

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may go (0.0: now). Does not consume."""
        now = self.clock() if now is None else now
        tat = max(self._tat.get(key, now), now)
        return max(0.0, tat - self.tolerance - now)

    def consume(self, key: str, now: float | None = None) -> None:
        """Record one request for ``key`` (call after :meth:`retry_after` said 0)."""
        now = self.clock() if now is None else now
        tat = max(self._tat.get(key, now), now)
        self._tat[key] = tat + self.interval
