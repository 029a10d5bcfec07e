"""Options of the priority executor (``config.executor_options``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PriorityOptions:
    """Scheduling knobs; every default is safe for a single-GPU server."""

    inner: str | type = "mp"
    """The executor that runs requests: shorthand, dotted path or class."""
    inner_options: dict[str, Any] = field(default_factory=dict)
    """The inner executor's own ``executor_options``."""
    max_inflight: int = 1
    """The window: requests handed to the inner executor at once. Small keeps ordering meaningful."""
    max_queue_per_level: int = 10_000
    """Per priority level; past it a new request fails at once with ``QueueFull``."""
    aging_interval: float | None = 30.0
    """Every this many seconds of waiting improve a request's effective priority by one level
    (``None``: no aging). Keeps low priorities from starving under steady high-priority load."""
    max_wait: float | None = None
    """A request waiting this long runs next, whatever its level (``None``: no cap)."""
    tenant_rate: float | None = None
    """Requests per second each tenant may start (``None``: unlimited). A throttled tenant is
    skipped, never waited on."""
    tenant_burst: int = 1
    preemption: bool = True
    """Abort the lowest-priority running request for a strictly higher-priority arrival, if the
    inner executor can abort between steps; the preempted request is requeued."""
    max_preemptions: int = 2
    """How often one request may be preempted before it is left to finish."""

    def __post_init__(self) -> None:
        if self.max_inflight < 1 or self.max_queue_per_level < 1:
            raise ValueError("max_inflight and max_queue_per_level must be >= 1")
        for name in ("aging_interval", "max_wait", "tenant_rate"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 or None, got {value}")
        if self.tenant_burst < 1 or self.max_preemptions < 0:
            raise ValueError("tenant_burst must be >= 1 and max_preemptions >= 0")
