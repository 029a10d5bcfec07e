"""The one retry policy (omni_core.retry) that the remote executors share."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from omni_core.retry import RetryLater, backoff_seconds, call_with_retries, parse_retry_after


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 31
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after(None) is None


def test_backoff_is_full_jitter_but_never_sooner_than_asked() -> None:
    for attempt in range(1, 8):
        assert 0 <= backoff_seconds(attempt, 0.5, 4.0) <= 4.0
    assert backoff_seconds(1, 0.01, 4.0, retry_after=3.0) >= 3.0
    assert backoff_seconds(1, 0.01, 4.0, min_wait=1.0) >= 1.0
    waits = {round(backoff_seconds(5, 1.0, 8.0), 3) for _ in range(50)}
    assert len(waits) > 10  # spread out, not in step


def test_call_with_retries_counts_attempts_and_gives_up() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RetryLater("not yet", retry_after=0.0)
        return "done"

    assert call_with_retries(flaky, max_retries=4, base=0.001, cap=0.01) == ("done", 3)

    def never() -> str:
        raise RetryLater("never")

    with pytest.raises(RetryLater) as info:
        call_with_retries(never, max_retries=2, base=0.001, cap=0.01)
    assert info.value.attempts == 3

    def final() -> str:
        raise ValueError("not a retry")

    with pytest.raises(ValueError, match="not a retry"):
        call_with_retries(final, max_retries=5, base=0.001, cap=0.01)
