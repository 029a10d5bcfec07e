"""The Celery app both sides build from the same settings: JSON only, at-least-once, priorities.

- JSON for tasks and results, and nothing else accepted: a broker is a network peer, and
  nothing received from one is unpickled.
- ``acks_late`` + ``reject_on_worker_lost``: a task whose worker dies is delivered again
  (with Redis after ``visibility_timeout``, with RabbitMQ when the channel closes); the
  worker returns a stored result for a request id it already finished, so the effect is
  exactly once.
- Prefetch 1 and one task at a time per worker process: a pipeline is not thread-safe,
  and a prefetched task would wait behind a long one while another worker idles.
- Priorities: RabbitMQ queues declared with ``x-max-priority``; Redis emulates them with
  one list per priority step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from celery import Celery
from kombu import Queue

from omni_core import ExecutorOptionsError
from omni_core.executors import above, declare

TASK_NAME = "omni.generate"
ABORT_COMMAND = "omni_abort"
MAX_PRIORITY = 9
"""Celery priorities 0-9; for RabbitMQ higher runs first, so omni's ``priority`` (lower first) is mapped."""


@dataclass(frozen=True)
class CelerySettings:
    """What both the executor and ``omni celery worker`` must agree on."""

    broker_url: str = field(
        metadata=declare(
            help="redis://... or amqp://...", flag="--broker", envvar="OMNI_CELERY_BROKER", required=True
        )
    )
    result_backend: str | None = field(
        default=None,
        metadata=declare(
            help="key-value result store, e.g. redis://host:6379/1 "
            "[default: the Redis broker; RabbitMQ needs one]",
            flag="--backend",
            envvar="OMNI_CELERY_BACKEND",
        ),
    )
    """A key-value result store; ``None`` means the Redis broker itself. RabbitMQ needs one named."""
    queue: str = field(default="omni", metadata=declare(help="the queue workers consume and clients send to"))
    task_time_limit: float = field(
        default=600.0, metadata=above(0, help="seconds a request may run on a worker")
    )
    """Seconds a task may run before the worker kills it (the request fails as timed out)."""
    visibility_timeout: float = field(
        default=900.0,
        metadata=above(0, help="Redis: seconds before an unacknowledged task is delivered again"),
    )
    """Redis: seconds before an unacknowledged task is delivered again; keep it above the longest task."""
    result_expires: float = field(default=3600.0, metadata=above(0, help="seconds a result is kept"))
    """Seconds a result is kept for its client (and for deduplication)."""

    def __post_init__(self) -> None:
        self.backend()  # refuse a broker/backend pair that cannot work, before anything connects

    @property
    def redis_broker(self) -> bool:
        return self.broker_url.startswith(("redis://", "rediss://"))

    def backend(self) -> str:
        """The result backend's URL.

        Results must be readable by any client thread and by every worker (a worker checks
        whether a request id already has a result before running it), so Celery's
        ``rpc://`` backend (results as messages to the one sender) cannot serve.
        """
        backend = self.result_backend or (self.broker_url if self.redis_broker else None)
        if backend is None:
            raise ExecutorOptionsError(
                "a RabbitMQ broker has no result store; name one, for example "
                "result_backend='redis://127.0.0.1:6379/1' (omni reads results by request id, "
                "which Celery's rpc:// backend cannot do)",
                field="result_backend",
            )
        if backend.startswith("rpc://"):
            raise ExecutorOptionsError(
                f"{backend!r} cannot be read by request id; use a key-value store such as redis://host:6379/1",
                field="result_backend",
            )
        return backend


def make_app(settings: CelerySettings, *, name: str = "omni") -> Celery:
    app = Celery(name, broker=settings.broker_url, backend=settings.backend(), set_as_current=False)
    redis = settings.redis_broker
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_time_limit=settings.task_time_limit,
        result_expires=settings.result_expires,
        result_extended=False,
        task_default_queue=settings.queue,
        task_queues=[Queue(settings.queue, queue_arguments={"x-max-priority": MAX_PRIORITY})],
        task_queue_max_priority=MAX_PRIORITY,
        task_default_priority=MAX_PRIORITY // 2,
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        broker_transport_options=(
            {
                "visibility_timeout": settings.visibility_timeout,
                "priority_steps": list(range(MAX_PRIORITY + 1)),
                "sep": ":",
                "queue_order_strategy": "priority",
                # A worker without an event loop (the threads pool) polls Redis; kombu's 1 s
                # default adds up to a second to every task.
                "polling_interval": 0.01,
                # Look for tasks whose worker died (unacknowledged past visibility_timeout) often
                # enough that redelivery takes about visibility_timeout, not kombu's ~100 s sweep.
                "unacked_restore_interval": max(1.0, min(10.0, settings.visibility_timeout / 4)),
                "unacked_restore_throttle": 1,
            }
            if redis
            else {}
        ),
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout} if redis else {},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def celery_priority(omni_priority: int, redis: bool) -> int:
    """omni's ``priority`` (lower runs first, 0 default) as Celery's 0-9 for this broker."""
    middle = MAX_PRIORITY // 2
    level = max(0, min(MAX_PRIORITY, middle + omni_priority))  # lower = more urgent
    # RabbitMQ delivers higher numbers first; Redis' priority steps deliver lower numbers first.
    return level if redis else MAX_PRIORITY - level
