"""The Kafka executor against a real Tansu broker and real ``omni kafka worker`` processes."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import Workers
from omni_executor_kafka.settings import KafkaSettings, encode
from omni_executor_kafka.testing import Broker, kafka_config, kafka_workers, wait_for_workers

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest


def small(seed: int, **fields: object) -> OmniDiffusionRequest:
    return OmniDiffusionRequest("a 7", height=64, width=64, num_inference_steps=2, seed=seed, **fields)  # type: ignore[arg-type]


def long(seed: int, **fields: object) -> OmniDiffusionRequest:
    return OmniDiffusionRequest("a 7", height=128, width=128, num_inference_steps=150, seed=seed, **fields)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {seconds:g} s")
        time.sleep(0.1)


def started(workers: Workers, request_id: str) -> list[int]:
    return [pid for event, rid, pid in workers.runs() if event == "start" and rid == request_id]


def test_same_8bit_image_as_inproc(two_workers: Workers, tiny_model: Path) -> None:
    request = OmniDiffusionRequest("a 7", height=64, width=64, num_inference_steps=3, seed=11)
    got = two_workers.engine.submit(request).result(60).raise_for_error().output
    # The workers run one torch thread each: the same thread count, so the same bits.
    config = OmniDiffusionConfig(
        model_name_or_path=str(tiny_model), executor_class="inproc", executor_options={"torch_threads": 1}
    )
    with DiffusionEngine(config) as inproc:
        expected = inproc.step([request])[0].raise_for_error().output
    assert len(got) == len(expected) == 1
    np.testing.assert_array_equal(got[0], expected[0])


def test_200_concurrent_requests_through_2_workers_each_run_once(two_workers: Workers) -> None:
    requests = [small(1000 + i) for i in range(200)]
    futures = [two_workers.engine.submit(request) for request in requests]
    outputs = [future.result(300) for future in futures]
    assert [o.error for o in outputs] == [None] * 200
    assert [o.request_id for o in outputs] == [r.request_id for r in requests]
    ids = {r.request_id for r in requests}
    done = [(rid, pid) for event, rid, pid in two_workers.runs() if event == "done" and rid in ids]
    assert sorted(rid for rid, _ in done) == sorted(ids)  # each exactly once
    assert len({pid for _, pid in done}) == 2  # both workers took a share


def test_malformed_message_gets_an_error_result_and_never_blocks_its_partition(two_workers: Workers) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    settings = KafkaSettings(bootstrap_servers=two_workers.broker.bootstrap)
    topic = settings.topic_for(0)
    good = small(7)
    producer = Producer(settings.client_config())
    producer.produce(topic, key=b"poison-json", value=b"{not json", partition=0)
    producer.produce(topic, key=b"poison-field", value=encode({"prompt": "x", "height": "tall"}), partition=0)
    producer.produce(topic, key=good.request_id.encode(), value=encode(good.to_dict()), partition=0)
    assert producer.flush(10) == 0
    results = Consumer(settings.client_config(**{"group.id": "test-reader", "enable.auto.commit": False}))
    partitions = (
        results.list_topics(settings.result_topic, timeout=10).topics[settings.result_topic].partitions
    )
    results.assign([TopicPartition(settings.result_topic, number, 0) for number in partitions])
    wanted = {"poison-json", "poison-field", good.request_id}
    found: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + 120
    while set(found) != wanted and time.monotonic() < deadline:
        message = results.poll(0.2)
        if message is not None and message.error() is None and message.key().decode() in wanted:
            found[message.key().decode()] = json.loads(message.value())
    results.close()
    assert set(found) == wanted
    assert (found["poison-json"]["error_type"], found["poison-json"]["error_field"]) == (
        "RequestValidationError",
        "request",
    )
    assert (found["poison-field"]["error_type"], found["poison-field"]["error_field"]) == (
        "RequestValidationError",
        "height",
    )
    assert found[good.request_id]["error"] is None


def test_abort_queued_and_running(one_worker: Workers) -> None:
    engine = one_worker.engine
    running, queued = long(1), long(2)
    first = engine.submit(running)
    wait_for(lambda: bool(started(one_worker, running.request_id)), 60, "the long request to start")
    second = engine.submit(queued)
    time.sleep(0.5)  # it reaches the worker's queue
    assert engine.abort(queued.request_id)
    assert engine.abort(running.request_id)
    assert first.result(5).error_type == "RequestCancelledError"
    assert second.result(5).error_type == "RequestCancelledError"
    # The running one stopped at its next step: the worker is free for the next request at once.
    after = engine.submit(small(3)).result(60)
    assert after.ok
    assert started(one_worker, queued.request_id) == []  # the queued one never ran
    done = [rid for event, rid, _ in one_worker.runs() if event == "done"]
    assert running.request_id in done


def test_priority_order_and_a_deadline_passed_while_queued(one_worker: Workers) -> None:
    engine = one_worker.engine
    blocker = long(10, priority=1)
    first = engine.submit(blocker)
    wait_for(lambda: bool(started(one_worker, blocker.request_id)), 60, "the blocker to start")
    lows = [small(20 + i, priority=2) for i in range(3)]
    low_futures = [engine.submit(r) for r in lows]
    late = small(30, priority=2, deadline=time.time() + 0.5)
    late_future = engine.submit(late)
    high = small(40, priority=0)
    high_future = engine.submit(high)
    time.sleep(1.0)  # all of them wait behind the blocker, and the deadline passes
    engine.abort(blocker.request_id)
    assert first.result(10).error_type == "RequestCancelledError"
    assert high_future.result(60).ok
    assert all(f.result(60).ok for f in low_futures)
    timed_out = late_future.result(60)
    assert timed_out.error_type == "RequestTimeoutError"
    order = [rid for event, rid, _ in one_worker.runs() if event == "start"]
    assert order.index(high.request_id) < min(order.index(r.request_id) for r in lows)
    assert late.request_id not in order  # answered as timed out, never run


def test_sigkill_of_the_running_worker_moves_its_request_to_the_other(
    tiny_model: Path, broker: Broker, tmp_path: Path
) -> None:
    run_log = tmp_path / "runs.log"
    with (
        kafka_workers(broker.bootstrap, tiny_model, workers=2, run_log=run_log),
        DiffusionEngine(kafka_config(tiny_model, broker.bootstrap)) as engine,
    ):
        wait_for_workers(engine)
        wait_for(lambda: len(_pids(run_log)) >= 1, 60, "a worker to run the probe")
        request = long(50)
        future = engine.submit(request)
        wait_for(lambda: bool(_starts(run_log, request.request_id)), 60, "the request to start")
        victim = _starts(run_log, request.request_id)[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        output = future.result(180)
        moved_after = time.monotonic() - killed_at
        assert output.ok, output.error
        starts = _starts(run_log, request.request_id)
        assert len(starts) == 2
        assert starts[1] != victim
        dones = [
            line for line in run_log.read_text().splitlines() if line.startswith(f"done {request.request_id}")
        ]
        assert len(dones) == 1  # one result
        print(f"SIGKILL to result: {moved_after:.1f} s")


def _starts(run_log: Path, request_id: str) -> list[int]:
    if not run_log.exists():
        return []
    return [
        int(line.split()[2])
        for line in run_log.read_text().splitlines()
        if line.startswith(f"start {request_id} ")
    ]


def _pids(run_log: Path) -> set[int]:
    if not run_log.exists():
        return set()
    return {int(line.split()[2]) for line in run_log.read_text().splitlines() if line.strip()}


def test_broker_stopped_fails_at_once_then_serving_resumes(
    tiny_model: Path, broker: Broker, tmp_path: Path
) -> None:
    with (
        kafka_workers(broker.bootstrap, tiny_model, workers=1, run_log=tmp_path / "runs.log"),
        DiffusionEngine(kafka_config(tiny_model, broker.bootstrap)) as engine,
    ):
        wait_for_workers(engine)
        broker.stop()
        wait_for(lambda: _unhealthy(engine), 60, "the client to see the broker gone")
        started_at = time.monotonic()
        output = engine.submit(small(60)).result(30)
        assert time.monotonic() - started_at < 1.0  # at once, not after a delivery timeout
        assert output.error_type == "ExecutorDeadError"
        assert output.retryable
        assert broker.bootstrap in str(output.error)
        broker.start()
        wait_for(lambda: engine.submit(small(61)).result(120).ok, 180, "serving to resume")
        assert engine.submit(small(62)).result(120).ok


def _unhealthy(engine: DiffusionEngine) -> bool:
    from omni_core import ExecutorDeadError

    try:
        engine.check_health()
    except ExecutorDeadError:
        return True
    return False


def test_a_missing_broker_is_named_and_retryable(tiny_model: Path) -> None:
    from omni_core import ExecutorDeadError

    config = kafka_config(tiny_model, "127.0.0.1:1", health_timeout=1.0)
    with pytest.raises(ExecutorDeadError, match=r"127\.0\.0\.1:1") as info:
        DiffusionEngine(config)
    assert info.value.retryable
