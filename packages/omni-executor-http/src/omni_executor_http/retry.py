"""Which HTTP failures the executor may re-send (the timing is core's :mod:`omni_core.retry`).

Safe to retry: failures where the server cannot have started the request
(connection refused, connect timeout) and answers that say "not now"
(429, 503), after their ``Retry-After``. A request the server may already
be running (read timeout, connection dropped mid-response, 502/504) is
re-sent only if it carries a seed: then running it twice gives the same
images, so the retry is idempotent. Everything else is final.
"""

from __future__ import annotations

import httpx

from omni_core.executors import RetryLater

RETRY_NOW_STATUSES = frozenset({429, 503})
MAYBE_RAN_STATUSES = frozenset({502, 504})


class RetryableHTTPError(RetryLater):
    """A response or transport failure that may be retried; ``status`` if the server answered."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after, overloaded=status in RETRY_NOW_STATUSES)
        self.status = status


def never_reached_server(exc: httpx.TransportError) -> bool:
    """True if the request cannot have been processed (it never got through)."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
