"""What clients and workers agree on: the broker, the topics, the message format.

Topics (names from :class:`KafkaSettings`):

- ``{request_topic}.p{level}``: requests, one topic per priority level (a request's
  ``priority`` clamped to ``0 .. priority_levels - 1``); workers take the lowest level first.
  Key: the request id; value: ``OmniDiffusionRequest.to_dict()`` as JSON.
- ``{result_topic}``: results, shared by every client. Key: the request id; value:
  ``DiffusionOutput.to_dict()`` as JSON (large images as S3 references). It is the record of
  what ran: a worker handed a request whose result is already there answers from it instead
  of running it again (a redelivery after a crash between the result and the commit).
- ``{control_topic}``: aborts. Key: the request id; value ``{"abort": true}``; every worker reads
  all of it, skips a queued request it names and stops a running one at its next step.

JSON only, never pickle: nothing read from a broker is unpickled.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from omni_core import ExecutorOptionsError
from omni_core.executors import at_least, declare

ABORT = {"abort": True}
LIBRDKAFKA_LOG = logging.getLogger("omni_executor_kafka.librdkafka")


@dataclass(frozen=True)
class KafkaSettings:
    """The broker and topics; ``omni kafka worker`` builds its flags from these declarations."""

    bootstrap_servers: str = field(
        default="127.0.0.1:9092",
        metadata=declare(
            help="the Kafka brokers, HOST:PORT[,HOST:PORT]", envvar="OMNI_KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
    request_topic: str = field(
        default="omni-requests", metadata=declare(help="requests go to NAME.p0, NAME.p1, ... by priority")
    )
    result_topic: str = field(default="omni-results", metadata=declare(help="the topic results come back on"))
    control_topic: str = field(default="omni-control", metadata=declare(help="the topic aborts travel on"))
    priority_levels: int = field(
        default=3, metadata=at_least(1, help="request topics, one per priority level")
    )
    partitions: int = field(
        default=4, metadata=at_least(1, help="partitions of topics omni creates (workers share them)")
    )
    fetch_wait_ms: int = field(
        default=5,
        metadata=at_least(
            0,
            help="longest a fetch waits for data (Kafka answers as soon as data arrives; a broker that "
            "waits it out, as Tansu does, adds up to this per hop)",
        ),
    )
    kafka_config: dict[str, Any] = field(
        default_factory=dict,
        metadata=declare(
            help="a librdkafka setting, e.g. security.protocol=SASL_SSL (repeatable)",
            flag="--kafka-option",
        ),
    )
    """librdkafka settings passed through as they are named there (SASL, TLS, client.id, ...)."""

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ExecutorOptionsError("name at least one broker, HOST:PORT", field="bootstrap_servers")
        for name in ("request_topic", "result_topic", "control_topic"):
            if not getattr(self, name):
                raise ExecutorOptionsError("a topic name cannot be empty", field=name)

    def request_topics(self) -> list[str]:
        """Highest priority first."""
        return [f"{self.request_topic}.p{level}" for level in range(self.priority_levels)]

    def topic_for(self, priority: int) -> str:
        return self.request_topics()[min(max(priority, 0), self.priority_levels - 1)]

    def level_of(self, topic: str) -> int:
        return self.request_topics().index(topic)

    def all_topics(self) -> list[str]:
        return [*self.request_topics(), self.result_topic, self.control_topic]

    def consumer_config(self, group: str, **extra: Any) -> dict[str, Any]:
        """A consumer's configuration: :meth:`client_config`, its group, no auto commit, the fetch wait."""
        return self.client_config(
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "fetch.wait.max.ms": self.fetch_wait_ms,
                **extra,
            }
        )

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka configuration: the brokers, the pass-through settings, then ``extra``.

        librdkafka's own log lines (a broker going away, reconnects) go to Python logging,
        and topic metadata is refreshed every few seconds, so topics made again after a
        broker lost them are found without a restart.
        """
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "logger": LIBRDKAFKA_LOG,
            "topic.metadata.refresh.interval.ms": 2000,
            **self.kafka_config,
            **extra,
        }


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def decode(raw: bytes | None) -> Any:
    """JSON from a message value; ``ValueError`` for anything else (never unpickled)."""
    if raw is None:
        raise ValueError("the message has no value")
    return json.loads(raw)


def ensure_topics(settings: KafkaSettings, timeout: float = 10.0) -> None:
    """Create omni's topics that do not exist yet (one that does is left as it is)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.client_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(t, num_partitions=settings.partitions) for t in settings.all_topics() if t not in existing
    ]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another process made it first
                raise ExecutorOptionsError(f"could not create topic {topic!r}: {exc.args[0].str()}") from exc


def assign_whole_topic(consumer: Any, topic: str, *, from_start: bool) -> None:
    """Read every partition of ``topic`` outside any group: from its start, or from its end now.

    "From its end now" is each partition's high watermark when this runs, so nothing written
    after it is missed (``OFFSET_END`` would resolve only at the first fetch).
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    starts = []
    for number in partitions:
        offset = OFFSET_BEGINNING
        if not from_start:
            _, offset = consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=10)
        starts.append(TopicPartition(topic, number, offset))
    consumer.assign(starts)
