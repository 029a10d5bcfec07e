"""Scheduling rules, with a real deterministic inner executor (threads, steps, abort)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from prometheus_client import generate_latest

from omni_core import (
    DiffusionEngine,
    DiffusionOutput,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
    OverloadedError,
    RequestTimeoutError,
)
from omni_executor_priority import PriorityDiffusionExecutor
from omni_executor_priority.testing import StepTimerExecutor

STEP = 0.005


def engine(**options: Any) -> DiffusionEngine:
    base: dict[str, Any] = {
        "inner": StepTimerExecutor,
        "inner_options": {"step_seconds": STEP},
        "max_inflight": 1,
        "preemption": False,
        "aging_interval": None,
    }
    return DiffusionEngine(
        OmniDiffusionConfig(executor_class="priority", executor_options={**base, **options})
    )


@pytest.fixture
def sched() -> Iterator[DiffusionEngine]:
    with engine() as e:
        yield e


def req(name: str, priority: int = 0, steps: int = 2, **fields: Any) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(
        prompt=name, request_id=name, priority=priority, num_inference_steps=steps, **fields
    )


def inner(e: DiffusionEngine) -> StepTimerExecutor:
    executor = e.executor
    assert isinstance(executor, PriorityDiffusionExecutor)
    assert isinstance(executor.inner, StepTimerExecutor)
    return executor.inner


def block(e: DiffusionEngine, steps: int = 20) -> Future[DiffusionOutput]:
    """Occupy the window with one running request."""
    future = e.submit(req("blocker", priority=100, steps=steps))
    deadline = time.monotonic() + 5
    while "blocker" not in inner(e).started:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    return future


def test_shorthand_selects_the_priority_executor() -> None:
    assert (
        OmniDiffusionConfig(executor_class="priority").resolve_executor_class() is PriorityDiffusionExecutor
    )


def test_lower_priority_number_runs_first_and_fifo_within_a_level(sched: DiffusionEngine) -> None:
    blocker = block(sched)
    futures = [sched.submit(req(n, p)) for n, p in [("a5", 5), ("b1", 1), ("c3", 3), ("d1", 1), ("e5", 5)]]
    for future in [blocker, *futures]:
        assert future.result(timeout=10).ok
    assert inner(sched).started == ["blocker", "b1", "d1", "c3", "a5", "e5"]


def test_full_level_rejects_at_once_without_blocking() -> None:
    with engine(max_queue_per_level=2) as e:
        blocker = block(e)
        accepted = [e.submit(req(f"q{i}", 0)) for i in range(2)]
        started = time.perf_counter()
        rejected = e.submit(req("over", 0))
        assert time.perf_counter() - started < 0.05
        assert rejected.done()
        with pytest.raises(OverloadedError, match="max_queue_per_level"):
            rejected.result().raise_for_error()  # an output of its class, not an exception
        other_level = e.submit(req("other", 1))
        assert all(f.result(timeout=10).ok for f in [blocker, *accepted, other_level])
        assert e.executor.stats()["rejections"] == {"QueueFull": 1}  # type: ignore[attr-defined]


def test_deadline_passing_in_the_queue_fails_and_never_runs(sched: DiffusionEngine) -> None:
    blocker = block(sched, steps=40)
    late = sched.submit(req("late", 0, deadline=time.time() + 0.05))
    dead_on_arrival = sched.submit(req("doa", 0, deadline=time.time() - 1))
    with pytest.raises(RequestTimeoutError, match="arrived after its deadline"):
        dead_on_arrival.result(timeout=1).raise_for_error()
    with pytest.raises(RequestTimeoutError, match="never ran"):
        late.result(timeout=1).raise_for_error()
    assert blocker.result(timeout=10).ok
    assert "late" not in inner(sched).started
    stats = sched.executor.stats()  # type: ignore[attr-defined]
    assert stats["deadline_expired"] == 1
    assert stats["rejections"] == {"DeadlineExceeded": 1}


def test_cancelling_a_queued_future_removes_it(sched: DiffusionEngine) -> None:
    blocker = block(sched)
    keep, drop, keep2 = (sched.submit(req(n, 0)) for n in ("keep", "drop", "keep2"))
    assert sched.executor.stats()["queue_depth"] == {0: 3}  # type: ignore[attr-defined]
    assert drop.cancel()
    assert sched.executor.stats()["queue_depth"] == {0: 2}  # type: ignore[attr-defined]
    assert all(f.result(timeout=10).ok for f in (blocker, keep, keep2))
    assert inner(sched).started == ["blocker", "keep", "keep2"]
    assert sched.executor.stats()["cancelled"] == 1  # type: ignore[attr-defined]


def starvation_run(**options: Any) -> int:
    """Index at which a low-priority request starts among a steady stream of 30 high-priority ones.

    A high arrives every 8 ms and takes 10 ms, so the queue never empties: without a
    remedy the low request waits for the whole stream.
    """
    with engine(**options) as e:
        blocker = block(e, steps=4)
        low = e.submit(req("low", 3, steps=1))
        highs = []
        for i in range(30):
            highs.append(e.submit(req(f"h{i}", 0, steps=2)))
            time.sleep(0.008)
        for future in [blocker, low, *highs]:
            assert future.result(timeout=30).ok
        order = inner(e).started
        return order.index("low") - 1


def test_aging_promotes_old_low_priority_requests() -> None:
    assert starvation_run() == 30  # without aging: after every high-priority request
    assert starvation_run(aging_interval=0.01) < 15  # one level per 10 ms of waiting


def test_max_wait_runs_a_long_waiting_request_next() -> None:
    assert starvation_run(max_wait=0.05) < 15


def test_tenants_share_a_level_fairly(sched: DiffusionEngine) -> None:
    blocker = block(sched)
    busy = [sched.submit(req(f"a{i}", 0, tenant="busy")) for i in range(20)]
    light = [sched.submit(req(f"b{i}", 0, tenant="light")) for i in range(2)]
    assert all(f.result(timeout=30).ok for f in [blocker, *busy, *light])
    order = inner(sched).started[1:]
    assert order[:4] == ["a0", "b0", "a1", "b1"]


def test_rate_limited_tenant_is_skipped_not_waited_on() -> None:
    with engine(tenant_rate=20.0, tenant_burst=1) as e:
        started_at: dict[str, float] = {}

        def listener(event: Any) -> None:
            started_at.setdefault(event.request_id, time.monotonic())

        e.add_progress_listener(listener)
        futures = [e.submit(req(f"a{i}", 0, steps=1, tenant="a")) for i in range(4)]
        futures += [e.submit(req(f"b{i}", 0, steps=1, tenant="b")) for i in range(4)]
        assert all(f.result(timeout=30).ok for f in futures)
    a_times = [started_at[f"a{i}"] for i in range(4)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(a_times)]
    assert min(gaps) >= 0.04  # 20/s: one start per 50 ms, minus timer slack
    order = inner(e).started
    assert order.index("b0") < order.index("a1")  # b was served while a was throttled


def test_preemption_gives_high_priority_one_service_time_and_requeues_the_victim() -> None:
    with engine(preemption=True, max_preemptions=1) as e:
        low = e.submit(req("low", 5, steps=60))
        while "low" not in inner(e).started:
            time.sleep(0.001)
        started = time.monotonic()
        high = e.submit(req("high", 0, steps=10))
        high_output = high.result(timeout=10)
        latency = time.monotonic() - started
        assert latency < 10 * STEP + 0.1  # its own service time, not low's 300 ms
        assert high_output.timings["preemptions"] == 0
        # low restarted; it was preempted once already (the cap), so high2 waits for it.
        while inner(e).started.count("low") < 2:
            time.sleep(0.001)
        second = e.submit(req("high2", 0, steps=4))
        low_output = low.result(timeout=10)
        assert low_output.ok
        assert low_output.timings["preemptions"] == 1
        assert second.result(timeout=10).ok
        assert inner(e).started == ["low", "high", "low", "high2"]
        assert inner(e).finished == ["high", "low", "high2"]
        assert e.executor.stats()["preemptions"] == 1  # type: ignore[attr-defined]


def test_stats_and_prometheus_metrics(sched: DiffusionEngine) -> None:
    blocker = block(sched)
    queued = [sched.submit(req(f"m{i}", i % 2)) for i in range(4)]
    executor = sched.executor
    assert isinstance(executor, PriorityDiffusionExecutor)
    text = generate_latest(executor.metrics_registry).decode()
    assert 'omni_priority_queue_depth{level="0"} 2.0' in text
    assert 'omni_priority_queue_depth{level="1"} 2.0' in text
    assert "omni_priority_running 1.0" in text
    for future in [blocker, *queued]:
        future.result(timeout=10)
    stats = executor.stats()
    assert stats["completed"] == 5
    assert set(stats["wait_seconds"]) == {0, 1, 100}
    text = generate_latest(executor.metrics_registry).decode()
    assert 'omni_priority_wait_seconds{level="1",quantile="0.99"}' in text
    assert "omni_priority_completed_total 5.0" in text


def test_bad_priority_fails_alone_and_unknown_option_is_named(sched: DiffusionEngine) -> None:
    bad = sched.submit(OmniDiffusionRequest(prompt="x", priority="high"))  # type: ignore[arg-type]
    output = bad.result(timeout=5)
    assert output.error is not None
    assert output.error_field == "priority"
    with pytest.raises(ValueError, match="max_inflight"):
        engine(max_in_flight=2)
