"""Closed-loop load shared by the benchmarks: requests per second at a fixed concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from omni_core import DiffusionEngine, OmniDiffusionRequest


def throughput(
    engine: DiffusionEngine, make_request: Callable[[int], OmniDiffusionRequest], count: int, concurrency: int
) -> float:
    """Requests per second for ``count`` requests with at most ``concurrency`` in flight."""
    slots = threading.Semaphore(concurrency)
    futures = []
    started = time.perf_counter()
    for seed in range(count):
        slots.acquire()
        future = engine.submit(make_request(seed))
        future.add_done_callback(lambda _: slots.release())
        futures.append(future)
    for future in futures:
        future.result().raise_for_error()
    return count / (time.perf_counter() - started)
