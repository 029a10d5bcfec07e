"""How a scheduled request can end without running."""

from __future__ import annotations

from omni_core import OverloadedError, RequestTimeoutError


class QueueFull(OverloadedError):
    """The request's priority level already holds ``max_queue_per_level`` requests (core's overloaded)."""


class DeadlineExceeded(RequestTimeoutError):
    """The request's deadline passed before it could start; it never ran (core's timed out)."""

    default_retryable = False
