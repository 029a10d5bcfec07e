"""How a scheduled request can end without running."""

from __future__ import annotations

from omni_core.errors import OmniError


class QueueFull(OmniError, RuntimeError):
    """The request's priority level already holds ``max_queue_per_level`` requests."""


class DeadlineExceeded(OmniError, TimeoutError):
    """The request's deadline passed before it could start; it never ran."""
