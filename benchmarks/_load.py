"""Closed-loop load shared by the benchmarks: requests per second at a fixed concurrency."""

from __future__ import annotations

import statistics
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


def alternating_medians(
    engines: list[DiffusionEngine], make_request: Callable[[int], OmniDiffusionRequest], count: int
) -> list[float]:
    """Median seconds per sequential request of each engine, taking turns request by request.

    Taking turns spreads any drift of the machine (another process, CPU frequency) over all
    engines alike, so their difference is the overhead of the path, not of the moment.
    """
    for engine in engines:
        engine.step([make_request(999)])[0].raise_for_error()
    times: list[list[float]] = [[] for _ in engines]
    for seed in range(count):
        for engine, sink in zip(engines, times, strict=True):
            started = time.perf_counter()
            engine.step([make_request(seed)])[0].raise_for_error()
            sink.append(time.perf_counter() - started)
    return [statistics.median(sink) for sink in times]
