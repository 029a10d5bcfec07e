"""``CeleryDiffusionExecutor``: requests as Celery tasks over Redis or RabbitMQ.

``submit`` sends one task per request (JSON: the request dict in, the output dict out),
with the request id as the task id (so a request is deduplicated by the workers), its
priority mapped to the broker's, and its deadline as the task's ``expires``. A broker
that cannot be reached fails ``submit`` at once with a retryable ``ExecutorDeadError``:
nothing is queued in memory to be sent later. One thread reads the result backend for
every pending request (Celery's result consumers are not thread-safe) and resolves the
futures; ``abort`` revokes a queued task and asks the workers to stop a running one.
Validation, admission (``max_pending``), the pending table, abort and shutdown are core's
remote base (:class:`~omni_core.executors.RemoteDiffusionExecutor`).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from omni_core import DiffusionOutput, OmniDiffusionRequest
from omni_core.executors import (
    ExecutorDeadError,
    OffloadedImageError,
    PendingRequest,
    RemoteDiffusionExecutor,
    RemoteError,
    RequestCancelledError,
    RequestTimeoutError,
    above,
    at_least,
)
from omni_executor_celery.app import ABORT_COMMAND, TASK_NAME, CelerySettings, celery_priority, make_app

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.002
"""Between reads of the result backend while requests are pending (one MGET for all of them)."""
IDLE_SECONDS = 0.05


@dataclass(frozen=True)
class CeleryOptions(CelerySettings):
    """Options of the Celery executor (``config.executor_options``).

    What workers and clients must agree on is :class:`CelerySettings` (the worker command's
    flags come from the same fields); the client adds how long it waits and how much it holds.
    """

    broker_url: str = "redis://127.0.0.1:6379/0"
    """``redis://host:port/db`` or ``amqp://user:password@host:port/vhost`` (RabbitMQ)."""
    health_timeout: float = field(default=2.0, metadata=above(0))
    """Seconds ``check_health`` waits for the broker and a worker's ping."""
    max_pending: int = field(default=10_000, metadata=at_least(1))
    """Requests awaiting results at once; more fail at once with ``OverloadedError``."""
    s3_endpoint_url: str | None = None
    """Where workers started with ``--s3-bucket`` put large images (``None``: AWS or ``AWS_ENDPOINT_URL``)."""

    def settings(self) -> CelerySettings:
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(CelerySettings)}
        return CelerySettings(**shared)


class CeleryDiffusionExecutor(RemoteDiffusionExecutor):
    """Client of ``omni celery worker`` processes through a broker."""

    options_class = CeleryOptions
    options: CeleryOptions
    remote_name = "a Celery worker"

    def _init_remote(self) -> None:
        self.settings = self.options.settings()
        self.app = make_app(self.settings, name="omni-client")
        self._redis = self.settings.redis_broker
        self._give_up_after = self.options.task_time_limit + self.options.visibility_timeout
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_results, name="omni-celery-results", daemon=True)
        self._poller.start()

    @property
    def max_pending(self) -> int:
        return self.options.max_pending

    # --------------------------------------------------------------- submit

    def _dispatch(self, batch: list[PendingRequest]) -> None:
        """One task per request; a broker that cannot be reached fails it at once (nothing waits here)."""
        for item in batch:
            request = item.request
            expires = None
            if request.deadline is not None:
                expires = datetime.datetime.fromtimestamp(request.deadline, tz=datetime.timezone.utc)
            try:
                self.app.send_task(
                    TASK_NAME,
                    args=[request.to_dict()],
                    task_id=request.request_id,
                    queue=self.settings.queue,
                    priority=celery_priority(request.priority, self._redis),
                    expires=expires,
                    retry=False,  # fail fast: nothing waits in memory for the broker to come back
                )
            except Exception as exc:  # noqa: BLE001 - kombu/redis/amqp each raise their own
                error = ExecutorDeadError(
                    f"the broker {_redact(self.settings.broker_url)} is unreachable: "
                    f"{type(exc).__name__}: {exc}",
                    retryable=True,
                )
                self._finish(request.request_id, DiffusionOutput.failure(request.request_id, error))

    # -------------------------------------------------------------- results

    def _poll_results(self) -> None:
        """Read every pending request's state in one round trip, resolve the finished ones."""
        backend = self.app.backend
        while not self._stop.is_set():
            pending = self._pending_requests()
            if not pending:
                self._stop.wait(IDLE_SECONDS)
                continue
            try:
                keys = [backend.get_key_for_task(item.request.request_id) for item in pending]
                values = backend.mget(keys)
            except Exception as exc:  # noqa: BLE001 - the backend is down: keep waiting, say so
                logger.warning("result backend %s unreachable: %s", _redact(self.settings.backend()), exc)
                self._stop.wait(1.0)
                continue
            now = time.perf_counter()
            for item, value in zip(pending, values, strict=True):
                meta = backend.decode_result(value) if value else {}
                status = meta.get("status")
                if status in ("SUCCESS", "FAILURE", "REVOKED"):
                    self._resolve(item, status, meta.get("result"))
                elif status in (None, "PENDING") and _queued_past_deadline(item.request):
                    # RabbitMQ drops an expired message itself (Celery sets its TTL): no worker
                    # ever reports it, so the client says what happened.
                    late = RequestTimeoutError(
                        f"request {item.request.request_id} was still queued at its deadline"
                    )
                    self._finish(item.request_id, DiffusionOutput.failure(item.request_id, late))
                elif now - item.sent > self._give_up_after:
                    error = RequestTimeoutError(
                        f"no result within task_time_limit + visibility_timeout ({self._give_up_after:g} s)"
                    )
                    self._finish(item.request_id, DiffusionOutput.failure(item.request_id, error))
            self._stop.wait(POLL_SECONDS)

    def _resolve(self, item: PendingRequest, status: str, result: Any) -> None:
        request_id = item.request_id
        if status == "REVOKED":  # revoked by an abort, or dropped by a worker past its expires
            deadline = item.request.deadline
            if deadline is not None and time.time() >= deadline:
                late = RequestTimeoutError(f"request {request_id} was still queued at its deadline")
                self._finish(request_id, DiffusionOutput.failure(request_id, late))
            else:
                cancelled = RequestCancelledError(f"request {request_id} was revoked")
                self._finish(request_id, DiffusionOutput.failure(request_id, cancelled))
            return
        if status == "FAILURE":
            error = RemoteError(f"the worker failed: {result}")
            self._finish(request_id, DiffusionOutput.failure(request_id, error))
            return
        self._finish(request_id, self._restore_output(request_id, result))

    def _make_s3_client(self) -> Any:
        """boto3 is an optional extra here: say how to get it."""
        try:
            import boto3
        except ImportError as exc:
            raise OffloadedImageError(
                "a worker put images in S3, but boto3 is not installed here; "
                "pip install 'omni-executor-celery[s3]'"
            ) from exc
        return boto3.client("s3", endpoint_url=self.options.s3_endpoint_url)

    # ---------------------------------------------------------------- abort

    def _abort_remote(self, request_id: str) -> None:
        """Revoke the task if queued, stop it at the next step if running."""
        self.app.control.revoke(request_id)
        self.app.control.broadcast(ABORT_COMMAND, arguments={"request_id": request_id})

    # ----------------------------------------------------- rpc, health, stop

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        if method != "ping":
            raise AttributeError(f"collective_rpc: the Celery executor supports 'ping', not {method!r}")
        return list(self.app.control.ping(timeout=timeout or self.options.health_timeout))

    def _check_remote(self) -> None:
        broker = _redact(self.settings.broker_url)
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=self.options.health_timeout)
        except Exception as exc:
            raise ExecutorDeadError(f"the broker {broker} is unreachable: {exc}", retryable=True) from exc
        replies = self.app.control.ping(timeout=self.options.health_timeout)
        if not replies:
            raise ExecutorDeadError(
                f"no omni celery worker answered a ping on {broker} "
                f"within {self.options.health_timeout:g} s; "
                "start one with: omni celery worker --broker URL",
                retryable=True,
            )

    def _close_remote(self) -> None:
        self._stop.set()
        self._poller.join()
        self.app.close()


DEADLINE_GRACE_SECONDS = 1.0
"""How long past a deadline a task not yet started is given (a worker may be picking it up)."""


def _queued_past_deadline(request: OmniDiffusionRequest) -> bool:
    return request.deadline is not None and time.time() > request.deadline + DEADLINE_GRACE_SECONDS


def _redact(url: str) -> str:
    """A broker URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
