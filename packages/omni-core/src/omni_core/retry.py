"""The one retry policy of omni's remote executors (http, lambda, and those to come).

A remote call is re-sent only when the failure proves it did not run, or
when running it twice is harmless; the executor decides that and raises
:class:`RetryLater`. This module decides *when*: full-jitter exponential
backoff (so throttled callers spread out instead of retrying in step),
never sooner than the peer's ``Retry-After`` (seconds or an HTTP date) or a
floor the executor sets (``min_wait``), or exactly when the executor says
(``wait``: another server is free now). When the retries run out,
:func:`exhausted_retries_error` is the one rule for what the request fails
with. The loop itself is tenacity's.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar

import tenacity

from omni_core.errors import OmniError, OverloadedError, RemoteError

T = TypeVar("T")


class RetryLater(Exception):
    """The call did not run (or may safely run again): retry after a while.

    ``retry_after``: what the peer asked for, in seconds; ``min_wait``: a floor
    the executor knows about (e.g. a rate limit that refills each second);
    ``wait``: exactly this long, no backoff (the executor knows a peer that is
    free now). ``overloaded``: the peer said it is full (429, 503, throttled),
    so running out of retries is an :class:`~omni_core.errors.OverloadedError`.
    ``attempts`` is set when the retries are exhausted.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        min_wait: float = 0.0,
        wait: float | None = None,
        overloaded: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.min_wait = min_wait
        self.wait = wait
        self.overloaded = overloaded
        self.attempts = 0


def exhausted_retries_error(exc: RetryLater) -> OmniError:
    """What a request fails with when its retries ran out: overloaded if the peer said it was full."""
    message = f"{exc} (gave up after {exc.attempts} attempts)"
    if exc.overloaded:
        return OverloadedError(message, retry_after=exc.retry_after)
    return RemoteError(message, retryable=True)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def backoff_seconds(
    attempt: int, base: float, cap: float, *, retry_after: float | None = None, min_wait: float = 0.0
) -> float:
    """Full-jitter backoff for ``attempt`` (from 1), never below ``min_wait`` or ``retry_after``.

    Past ``retry_after`` a little jitter (up to ``base``) is added, so callers
    told the same time do not all come back at once.
    """
    wait = max(random.uniform(0.0, min(cap, base * 2 ** (attempt - 1))), min_wait)
    if retry_after is not None:
        wait = max(wait, retry_after + random.uniform(0.0, base))
    return wait


def call_with_retries(
    call: Callable[[], T],
    *,
    max_retries: int,
    base: float,
    cap: float,
    sleep: Callable[[float], None] | None = None,
) -> tuple[T, int]:
    """Run ``call``, retrying on :class:`RetryLater` up to ``max_retries`` times; returns (result, attempts).

    When the retries run out the last :class:`RetryLater` is raised with ``attempts`` set.
    ``sleep`` waits between attempts (an executor passes one that raises when it shuts down).
    """
    attempts = 0

    def attempt() -> T:
        nonlocal attempts
        attempts += 1
        return call()

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        retry_after = error.retry_after if isinstance(error, RetryLater) else None
        min_wait = error.min_wait if isinstance(error, RetryLater) else 0.0
        if isinstance(error, RetryLater) and error.wait is not None:
            return error.wait
        return backoff_seconds(state.attempt_number, base, cap, retry_after=retry_after, min_wait=min_wait)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max_retries + 1),
        wait=wait,
        retry=tenacity.retry_if_exception_type(RetryLater),
        reraise=True,
        sleep=sleep if sleep is not None else tenacity.nap.sleep,
    )
    try:
        return retrying(attempt), attempts
    except RetryLater as exc:
        exc.attempts = attempts
        raise
