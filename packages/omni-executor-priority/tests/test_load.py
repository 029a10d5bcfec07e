"""Correct under load: 16 threads, 10,000 requests; every request ends exactly once."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import CancelledError, Future

from omni_core import DiffusionEngine, DiffusionOutput, OmniDiffusionConfig, OmniDiffusionRequest
from omni_executor_priority import PriorityDiffusionExecutor
from omni_executor_priority.testing import StepTimerExecutor

THREADS = 16
PER_THREAD = 625


def test_ten_thousand_requests_each_end_exactly_once_fifo_within_level_and_tenant() -> None:
    config = OmniDiffusionConfig(
        executor_class="priority",
        executor_options={
            "inner": StepTimerExecutor,
            "inner_options": {"step_seconds": 0.0, "default_steps": 1},
            "max_inflight": 4,
            "max_queue_per_level": 1200,
            "aging_interval": None,  # aging reorders levels on purpose; FIFO is checked without it
            "preemption": False,
        },
    )
    submitted: dict[int, list[tuple[OmniDiffusionRequest, Future[DiffusionOutput]]]] = defaultdict(list)
    cancel_attempts: set[str] = set()

    with DiffusionEngine(config) as engine:
        executor = engine.executor
        assert isinstance(executor, PriorityDiffusionExecutor)
        inner = executor.inner
        assert isinstance(inner, StepTimerExecutor)

        def producer(thread: int) -> None:
            rng = random.Random(thread)
            for i in range(PER_THREAD):
                roll = rng.random()
                deadline = time.time() - 1 if roll < 0.03 else (time.time() + 0.001 if roll < 0.06 else None)
                request = OmniDiffusionRequest(
                    prompt="x",
                    request_id=f"t{thread}-{i}",
                    priority=rng.randrange(5),
                    tenant=f"tenant{rng.randrange(4)}",
                    deadline=deadline,
                )
                future = engine.submit(request)
                submitted[thread].append((request, future))
                if rng.random() < 0.1:
                    cancel_attempts.add(request.request_id)
                    future.cancel()

        threads = [threading.Thread(target=producer, args=(t,)) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        outcomes: Counter[str] = Counter()
        for pairs in submitted.values():
            for request, future in pairs:
                try:
                    output = future.result(timeout=120)
                except CancelledError:
                    assert request.request_id in cancel_attempts
                    outcomes["cancelled"] += 1
                    continue
                # Rejections arrive as outputs of their class, as from every executor.
                if output.error_type == "OverloadedError":
                    assert "max_queue_per_level" in str(output.error)
                    outcomes["queue_full"] += 1
                elif output.error_type == "RequestTimeoutError":
                    outcomes["deadline"] += 1
                else:
                    assert output.ok, output.error
                    assert output.request_id == request.request_id
                    outcomes["result"] += 1
        stats = executor.stats()
        started = list(inner.started)

    total = THREADS * PER_THREAD
    assert sum(outcomes.values()) == total
    assert stats["submitted"] == total
    assert stats["completed"] == outcomes["result"]
    assert stats["cancelled"] == outcomes["cancelled"]
    assert stats["deadline_expired"] + stats["rejections"].get("DeadlineExceeded", 0) == outcomes["deadline"]
    assert stats["rejections"].get("QueueFull", 0) == outcomes["queue_full"]
    # Nothing ran twice, and only requests that produced a result ran.
    assert len(started) == len(set(started)) == outcomes["result"]
    assert min(outcomes["cancelled"], outcomes["deadline"], outcomes["result"]) > 0
    # FIFO within a (level, tenant): each thread's own submissions start in submission order.
    position = {request_id: index for index, request_id in enumerate(started)}
    for pairs in submitted.values():
        last: dict[tuple[int, str | None], int] = {}
        for request, _ in pairs:
            if request.request_id not in position:
                continue
            key = (request.priority, request.tenant)
            assert position[request.request_id] > last.get(key, -1)
            last[key] = position[request.request_id]
