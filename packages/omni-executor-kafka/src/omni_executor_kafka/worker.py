"""One ``omni kafka worker`` process: a consumer in the workers' group, the model loaded once.

Started by the command (``python -m omni_executor_kafka.worker``) with its settings in the
environment. It takes requests from the priority topics (the lowest level first among those
fetched), runs each through core's :class:`~omni_core.executors.RunnerHost`, writes the result
to the result topic, waits for the broker to acknowledge it, and only then commits the
request's offset: at least once. A worker that dies before the commit leaves the request to
the worker its partition moves to; that worker finds the result if it was written (it reads
the result topic from the start) and does not run the request again.

A message that is not JSON, or not a valid request, is answered with an error result naming
the field and committed, so it never blocks its partition. A request past its ``deadline`` is
answered as timed out without running; one named on the control topic is answered as
cancelled (queued) or stopped at its next denoising step (running).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from omni_core import DiffusionOutput, OmniDiffusionRequest, RequestCancelledError, RequestTimeoutError
from omni_core.errors import ModelError, RequestValidationError
from omni_core.executors import OffloadSettings, ResultOffloader, RunnerHost
from omni_executor_kafka.settings import KafkaSettings, assign_whole_topic, decode, encode, ensure_topics

logger = logging.getLogger("omni_executor_kafka.worker")

ENV_SETTINGS = "OMNI_KAFKA_SETTINGS"
ENV_CONFIG = "OMNI_KAFKA_CONFIG"
ENV_WORKER = "OMNI_KAFKA_WORKER"
"""JSON of :class:`WorkerSettings`."""
ENV_OFFLOAD = "OMNI_KAFKA_OFFLOAD"
ENV_RUN_LOG = "OMNI_KAFKA_RUN_LOG"
"""If set, a file each run of a request appends ``start|done ID PID`` lines to (tests count runs)."""

PREFETCH = 8
"""Requests a worker holds fetched but not started: priority applies among them."""
MAX_RESULT_BYTES = 900_000
"""A result message above this (Kafka's default message cap is 1 MB) needs the S3 offload."""
ABORTS_REMEMBERED = 10_000
MAX_REQUEST_SECONDS = 1800
"""Longest a request may run before the group counts its worker as stuck and moves its partitions."""


class WorkerSettings:
    """The group, and how fast the group notices a worker that died."""

    def __init__(self, group: str = "omni-workers", session_timeout: float = 6.0) -> None:
        self.group = group
        self.session_timeout = session_timeout


class TopicReader:
    """Reads one whole topic outside any group on a thread of its own, handing each key on."""

    def __init__(
        self, settings: KafkaSettings, topic: str, *, from_start: bool, on_key: Callable[[str], None]
    ) -> None:
        from confluent_kafka import Consumer

        self._consumer = Consumer(settings.consumer_config(f"omni-reader-{topic}"))
        assign_whole_topic(self._consumer, topic, from_start=from_start)
        self._on_key = on_key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"omni-kafka-{topic}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.2)
            if message is not None and message.error() is None and message.key():
                self._on_key(message.key().decode(errors="replace"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


class RecentIds:
    """A bounded, thread-safe set of request ids (the oldest forgotten first)."""

    def __init__(self, limit: int | None = None) -> None:
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, request_id: str) -> None:
        with self._lock:
            self._ids[request_id] = None
            while self._limit is not None and len(self._ids) > self._limit:
                self._ids.popitem(last=False)

    def __contains__(self, request_id: object) -> bool:
        with self._lock:
            return request_id in self._ids


class KafkaWorker:
    """Consume, run, answer, commit; until SIGTERM (then leave the group at once)."""

    def __init__(
        self,
        settings: KafkaSettings,
        config_fields: dict[str, Any],
        worker: WorkerSettings,
        offload: OffloadSettings | None = None,
    ) -> None:
        from confluent_kafka import Consumer, Producer

        self.settings = settings
        ensure_topics(settings)
        self.host = RunnerHost(config_fields)
        self.offload = ResultOffloader(offload)
        self.producer = Producer(settings.client_config(**{"acks": "all", "linger.ms": 0}))
        session_ms = int(worker.session_timeout * 1000)
        self.consumer = Consumer(
            settings.consumer_config(
                worker.group,
                **{
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": session_ms,
                    "heartbeat.interval.ms": max(100, session_ms // 6),
                    # A request runs between two polls: allow a long one before the group drops us.
                    "max.poll.interval.ms": MAX_REQUEST_SECONDS * 1000,
                },
            )
        )
        self.running: str | None = None
        # What has a result (read from the result topic's start), and what a client aborted.
        self.answered = RecentIds()
        self.aborted = RecentIds(ABORTS_REMEMBERED)
        self.readers = [
            TopicReader(settings, settings.result_topic, from_start=True, on_key=self.answered.add),
            TopicReader(settings, settings.control_topic, from_start=False, on_key=self._on_abort),
        ]
        self.buffer: list[collections.deque[Any]] = [collections.deque() for _ in settings.request_topics()]
        self._stop = threading.Event()
        self.consumer.subscribe(settings.request_topics(), on_revoke=self._on_revoke)
        logger.warning("omni kafka worker ready: %s", self.host.describe())

    # ---------------------------------------------------------------- loop

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        try:
            while not self._stop.is_set():
                self._fetch()
                message = next((queue.popleft() for queue in self.buffer if queue), None)
                if message is not None:
                    self._handle(message)
        finally:
            self.consumer.close()  # leaves the group: its partitions move at once
            for reader in self.readers:
                reader.close()
            self.producer.flush(5)

    def _fetch(self) -> None:
        held = sum(len(queue) for queue in self.buffer)
        if held >= PREFETCH:
            return
        # consume() waits for all it may take or the timeout: block for the first message only.
        messages = [] if held else self.consumer.consume(num_messages=1, timeout=0.2)
        room = PREFETCH - held - len(messages)
        messages += self.consumer.consume(num_messages=room, timeout=0) if room > 0 else []
        for message in messages:
            if message.error() is not None:
                logger.warning("consumer: %s", message.error().str())
                continue
            self.buffer[self.settings.level_of(message.topic())].append(message)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Messages held from partitions this worker no longer owns are another worker's now."""
        gone = {(p.topic, p.partition) for p in partitions}
        for queue in self.buffer:
            kept = [m for m in queue if (m.topic(), m.partition()) not in gone]
            queue.clear()
            queue.extend(kept)

    def _on_abort(self, request_id: str) -> None:
        self.aborted.add(request_id)
        if self.running == request_id:
            self.host.cancel(request_id)

    # ------------------------------------------------------------- request

    def _handle(self, message: Any) -> None:
        from confluent_kafka import KafkaException

        request_id = (message.key() or b"").decode(errors="replace") or f"offset-{message.offset()}"
        if request_id not in self.answered:  # else: answered before (a redelivery); only commit
            result = self._result(self._output_for(message, request_id))
            self.producer.produce(self.settings.result_topic, key=request_id.encode(), value=result)
            if self.producer.flush(30) != 0:
                logger.warning("the result of %s was not acknowledged; it stays uncommitted", request_id)
                return
            self.answered.add(request_id)
        try:
            self.consumer.commit(message=message, asynchronous=False)
        except KafkaException as exc:  # the partition moved meanwhile: its new owner finds the result
            logger.warning("commit of %s failed: %s", request_id, exc.args[0].str())

    def _output_for(self, message: Any, request_id: str) -> DiffusionOutput:
        try:
            raw = decode(message.value())
        except ValueError as exc:
            return DiffusionOutput.failure(
                request_id, RequestValidationError("request", f"is not JSON: {exc}")
            )
        if isinstance(raw, dict):
            raw.setdefault("request_id", request_id)  # the key is the id; a producer may leave it out
        try:
            request = OmniDiffusionRequest.from_dict(raw)
        except RequestValidationError as exc:
            return DiffusionOutput.failure(request_id, exc)
        if request.request_id != request_id:
            mismatch = RequestValidationError("request_id", f"must equal the message key {request_id!r}")
            return DiffusionOutput.failure(request_id, mismatch)
        if request.deadline is not None and time.time() >= request.deadline:
            late = RequestTimeoutError(f"request {request_id} was still queued at its deadline")
            return DiffusionOutput.failure(request_id, late)
        self.running = request_id  # from here an abort stops it at its next step
        if request_id in self.aborted:
            self.running = None
            return DiffusionOutput.failure(
                request_id, RequestCancelledError(f"request {request_id} was aborted")
            )
        _record_run(request_id, "start")
        try:
            (output,) = self.host.execute([request])
        except Exception as exc:  # noqa: BLE001 - the runner isolates requests; this is a last resort
            output = DiffusionOutput.failure(request_id, ModelError(f"{type(exc).__name__}: {exc}"))
        finally:
            self.running = None
        _record_run(request_id, "done")
        return output

    def _result(self, output: DiffusionOutput) -> bytes:
        value = encode(self.offload(output.to_dict()))
        if len(value) <= MAX_RESULT_BYTES:
            return value
        too_big = ModelError(
            f"the result is {len(value)} bytes, over a Kafka message's {MAX_RESULT_BYTES}; start the workers "
            "with --s3-bucket so images go to S3, or ask for fewer or smaller images"
        )
        return encode(DiffusionOutput.failure(output.request_id, too_big).to_dict())


def _record_run(request_id: str, event: str) -> None:
    path = os.environ.get(ENV_RUN_LOG)
    if path:
        with open(path, "a") as log:
            log.write(f"{event} {request_id} {os.getpid()}\n")


def main() -> None:
    """The process the command starts: everything from the environment it set."""
    logging.basicConfig(level=os.environ.get("OMNI_KAFKA_LOG_LEVEL", "WARNING").upper())
    settings = KafkaSettings(**json.loads(os.environ[ENV_SETTINGS]))
    offload = json.loads(os.environ.get(ENV_OFFLOAD) or "null")
    KafkaWorker(
        settings,
        json.loads(os.environ.get(ENV_CONFIG, "{}")),
        WorkerSettings(**json.loads(os.environ.get(ENV_WORKER, "{}"))),
        OffloadSettings(**offload) if offload else None,
    ).run()


if __name__ == "__main__":
    main()
