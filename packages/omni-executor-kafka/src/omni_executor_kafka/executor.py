"""``KafkaDiffusionExecutor``: requests to ``omni kafka worker`` processes through Kafka topics.

Built on core's remote base (validation before sending, ``max_pending``, abort, timings, S3
restore, shutdown): what is its own is the send and the answers. ``_dispatch`` produces the
request (key: its id) to the topic of its priority level; a broker that cannot be reached
fails the request at once with a retryable ``ExecutorDeadError`` naming the broker (nothing
waits in memory for it to come back). One thread reads the shared result topic from where it
stood when the executor started and finishes the requests it holds by id. ``abort`` ends a
request cancelled at once and tells every worker on the control topic.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from omni_core import DiffusionOutput, ExecutorDeadError
from omni_core.executors import PendingRequest, RemoteDiffusionExecutor, above, at_least
from omni_executor_kafka.settings import (
    ABORT,
    KafkaSettings,
    assign_whole_topic,
    decode,
    encode,
    ensure_topics,
)

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.1
PROBE_SECONDS = 1.0
"""While the brokers are down, how often the client asks whether they are back."""


@dataclass(frozen=True)
class KafkaOptions(KafkaSettings):
    """Options of the Kafka executor (``config.executor_options``): the shared settings, plus the client's."""

    max_pending: int = field(default=10_000, metadata=at_least(1))
    """Requests awaiting results at once; more fail at once with ``OverloadedError``."""
    delivery_timeout: float = field(default=5.0, metadata=above(0))
    """Seconds a request may take to reach the broker; past it, a retryable ``ExecutorDeadError``."""
    health_timeout: float = field(default=2.0, metadata=above(0))
    """Seconds ``check_health`` waits for the broker's metadata."""
    create_topics: bool = True
    """Create omni's topics if they do not exist (turn off where the cluster forbids it)."""
    s3_endpoint_url: str | None = None
    """Where workers started with ``--s3-bucket`` put large images (``None``: AWS or ``AWS_ENDPOINT_URL``)."""

    def settings(self) -> KafkaSettings:
        return KafkaSettings(**{name: getattr(self, name) for name in KafkaSettings.__dataclass_fields__})


class KafkaDiffusionExecutor(RemoteDiffusionExecutor):
    """Client of ``omni kafka worker`` processes through a Kafka cluster."""

    options_class = KafkaOptions
    options: KafkaOptions

    @property
    def remote_name(self) -> str:  # type: ignore[override]
        return f"the Kafka brokers {self.options.bootstrap_servers}"

    def _init_remote(self) -> None:
        from confluent_kafka import Consumer, Producer

        self.settings = self.options.settings()
        if self.options.create_topics:
            try:
                ensure_topics(self.settings, timeout=self.options.health_timeout + 8)
            except Exception as exc:
                raise ExecutorDeadError(
                    f"{self.remote_name} cannot be reached: {exc}", retryable=True
                ) from exc
        self._broker_down: str | None = None
        timeout_ms = int(self.options.delivery_timeout * 1000)
        self.producer = Producer(
            self.settings.client_config(
                **{"message.timeout.ms": timeout_ms, "linger.ms": 1, "error_cb": self._on_client_error}
            )
        )
        group = f"omni-client-{uuid.uuid4().hex}"  # never commits: it only reads from where it started
        # Where a broker lost its log (a restart without storage), read the topic again from its
        # start: results already delivered are ignored by id.
        self.results = Consumer(self.settings.consumer_config(group, **{"auto.offset.reset": "earliest"}))
        assign_whole_topic(self.results, self.settings.result_topic, from_start=False)
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_results, name="omni-kafka-results", daemon=True)
        self._reader.start()

    @property
    def max_pending(self) -> int:
        return self.options.max_pending

    # -------------------------------------------------------------- send

    def _dispatch(self, batch: list[PendingRequest]) -> None:
        down = self._broker_down
        for item in batch:
            request = item.request
            if down is not None:
                self._finish(
                    request.request_id, DiffusionOutput.failure(request.request_id, self._down(down))
                )
                continue
            self.producer.produce(
                self.settings.topic_for(request.priority),
                key=request.request_id.encode(),
                value=encode(request.to_dict()),
                on_delivery=self._on_delivery,
            )
        self.producer.poll(0)

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is None:
            self._broker_down = None
            return
        request_id = (message.key() or b"").decode(errors="replace")
        self._finish(request_id, DiffusionOutput.failure(request_id, self._down(error.str())))

    def _on_client_error(self, error: Any) -> None:
        from confluent_kafka import KafkaError

        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._broker_down = error.str()

    def _down(self, why: str) -> ExecutorDeadError:
        return ExecutorDeadError(f"{self.remote_name} cannot be reached: {why}", retryable=True)

    # ------------------------------------------------------------ answers

    def _read_results(self) -> None:
        last_probe = 0.0
        while not self._stop.is_set():
            self.producer.poll(0)  # delivery reports
            if self._broker_down is not None and time.monotonic() - last_probe > PROBE_SECONDS:
                last_probe = time.monotonic()
                with contextlib.suppress(Exception):  # still down: the next probe tries again
                    self.producer.list_topics(timeout=PROBE_SECONDS)
                    if self.options.create_topics:
                        ensure_topics(self.settings, timeout=5)  # a broker that lost them
                    # A broker back without its log numbers offsets from 0 again: a position kept
                    # from before could skip new results. Read the topic again from its start
                    # (results already delivered are ignored by id).
                    assign_whole_topic(self.results, self.settings.result_topic, from_start=True)
                    self._broker_down = None
            message = self.results.poll(POLL_SECONDS)
            if message is None or message.error() is not None:
                continue
            request_id = (message.key() or b"").decode(errors="replace")
            try:
                raw = decode(message.value())
            except ValueError as exc:
                logger.warning("unreadable result for %s on %s: %s", request_id, message.topic(), exc)
                continue
            self._finish(request_id, self._restore_output(request_id, raw))

    def _make_s3_client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.options.s3_endpoint_url)

    # --------------------------------------------------- abort, health, stop

    def _abort_remote(self, request_id: str) -> None:
        """Every worker reads the control topic: a queued request is skipped, a running one stopped."""
        self.producer.produce(self.settings.control_topic, key=request_id.encode(), value=encode(ABORT))
        self.producer.poll(0)

    def _check_remote(self) -> None:
        try:
            self.producer.list_topics(timeout=self.options.health_timeout)
        except Exception as exc:
            self._broker_down = str(exc)  # sends fail at once until the reader's probe finds it back
            raise self._down(str(exc)) from exc

    def _close_remote(self) -> None:
        self._stop.set()
        self._reader.join()
        self.producer.flush(2)
        self.results.close()
