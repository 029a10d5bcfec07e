"""What the HTTP executor retries, and how long it waits.

Safe to retry: failures where the server cannot have started the request
(connection refused, connect timeout) and answers that say "not now"
(429, 503), after their ``Retry-After``. A request the server may already
be running (read timeout, connection dropped mid-response, 502/504) is
re-sent only if it carries a seed: then running it twice gives the same
images, so the retry is idempotent. Everything else is final.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

RETRY_NOW_STATUSES = frozenset({429, 503})
MAYBE_RAN_STATUSES = frozenset({502, 504})


class RetryableHTTPError(Exception):
    """A response or transport failure that may be retried."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def never_reached_server(exc: httpx.TransportError) -> bool:
    """True if the request cannot have been processed (it never got through)."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def backoff_seconds(attempt: int, base: float, cap: float, retry_after: float | None) -> float:
    """Full-jitter exponential backoff, but never sooner than the server asked."""
    jittered = random.uniform(0, min(cap, base * (2 ** (attempt - 1))))
    if retry_after is not None:
        return min(max(retry_after, jittered), max(cap, retry_after))
    return jittered
