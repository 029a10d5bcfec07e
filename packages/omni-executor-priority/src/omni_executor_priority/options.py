"""Options of the priority executor (``config.executor_options``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omni_core.executors import above, at_least


@dataclass(frozen=True)
class PriorityOptions:
    """Scheduling knobs; every default is safe for a single-GPU server."""

    inner: str | type = "mp"
    """The executor that runs requests: shorthand, dotted path or class."""
    inner_options: dict[str, Any] = field(default_factory=dict)
    """The inner executor's own ``executor_options``."""
    max_inflight: int | None = field(default=None, metadata=at_least(1))
    """The window: requests handed to the inner executor at once. Small keeps ordering meaningful.
    ``None``: what the inner executor runs at once, its step-batching window where its slots batch
    by step (so an urgent request joins the running batch at the next step instead of preempting
    one), else 1."""
    max_queue_per_level: int = field(default=10_000, metadata=at_least(1))
    """Per priority level; past it a new request fails at once with ``QueueFull``."""
    aging_interval: float | None = field(default=30.0, metadata=above(0))
    """Every this many seconds of waiting improve a request's effective priority by one level
    (``None``: no aging). Keeps low priorities from starving under steady high-priority load."""
    max_wait: float | None = field(default=None, metadata=above(0))
    """A request waiting this long runs next, whatever its level (``None``: no cap)."""
    tenant_rate: float | None = field(default=None, metadata=above(0))
    """Requests per second each tenant may start (``None``: unlimited). A throttled tenant is
    skipped, never waited on."""
    tenant_burst: int = field(default=1, metadata=at_least(1))
    preemption: bool = True
    """Abort the lowest-priority running request for a strictly higher-priority arrival, if the
    inner executor can abort between steps; the preempted request is requeued."""
    max_preemptions: int = field(default=2, metadata=at_least(0))
    """How often one request may be preempted before it is left to finish."""
