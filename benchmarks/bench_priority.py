"""Priority executor benchmarks; ratios against FIFO measured in the same run.

1. High-priority latency under saturating low-priority load. Inner: a
   deterministic executor whose requests take a fixed service time S
   (10 steps of 2 ms). Low-priority requests keep the queue full; a
   high-priority request arrives every 5 S. Compared: FIFO (every request
   at the same level), priority without preemption, priority with
   preemption. Target: p99 <= 1.5 S with preemption, >= 5x better than FIFO.
2. Scheduling overhead per request with an inner executor that completes
   instantly, vs submitting to that executor directly. Target <= 50 us.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_priority.py [--full]``.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

from _plot import save_bars
from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_executor_priority.testing import InstantExecutor, StepTimerExecutor

STEPS = 10
STEP_SECONDS = 0.002
SERVICE = STEPS * STEP_SECONDS


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def high_latencies(highs: int, *, fifo: bool, preemption: bool) -> list[float]:
    config = OmniDiffusionConfig(
        executor_class="priority",
        executor_options={
            "inner": StepTimerExecutor,
            "inner_options": {"step_seconds": STEP_SECONDS, "default_steps": STEPS},
            "max_inflight": 1,
            "preemption": preemption,
            "max_preemptions": 1000,
            "aging_interval": None,
        },
    )
    latencies: list[float] = []
    stop = threading.Event()
    with DiffusionEngine(config) as engine:

        def keep_queue_full() -> None:
            pending: list[Any] = []
            while not stop.is_set():
                pending = [f for f in pending if not f.done()]
                while len(pending) < 20:
                    pending.append(
                        engine.submit(OmniDiffusionRequest(prompt="low", priority=0 if fifo else 9))
                    )
                time.sleep(SERVICE / 4)

        feeder = threading.Thread(target=keep_queue_full, daemon=True)
        feeder.start()
        time.sleep(SERVICE * 3)
        for _ in range(highs):
            started = time.perf_counter()
            engine.submit(OmniDiffusionRequest(prompt="high", priority=0)).result()
            latencies.append(time.perf_counter() - started)
            time.sleep(SERVICE * 5)
        stop.set()
        feeder.join()
    return latencies


def overhead_us(count: int) -> tuple[float, float]:
    requests = [OmniDiffusionRequest(prompt="x", priority=i % 4) for i in range(count)]
    direct = DiffusionEngine(OmniDiffusionConfig(executor_class=InstantExecutor))
    started = time.perf_counter()
    for request in requests:
        direct.submit(request)
    direct_s = (time.perf_counter() - started) / count
    direct.close()
    requests = [OmniDiffusionRequest(prompt="x", priority=i % 4) for i in range(count)]
    config = OmniDiffusionConfig(
        executor_class="priority",
        executor_options={"inner": InstantExecutor, "max_inflight": 64, "max_queue_per_level": count},
    )
    with DiffusionEngine(config) as engine:
        started = time.perf_counter()
        futures = [engine.submit(request) for request in requests]
        for future in futures:
            future.result()
        scheduled_s = (time.perf_counter() - started) / count
    return direct_s * 1e6, scheduled_s * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help="write PNG charts here")
    args = parser.parse_args()
    highs = 100 if args.full else 25
    print(f"priority benchmarks: service time S = {SERVICE * 1e3:.0f} ms, {highs} high-priority arrivals")
    print("1. high-priority latency under saturating low-priority load")
    results = {}
    for label, fifo, preemption in (
        ("FIFO", True, False),
        ("priority", False, False),
        ("priority+preempt", False, True),
    ):
        latencies = high_latencies(highs, fifo=fifo, preemption=preemption)
        results[label] = (statistics.median(latencies), percentile(latencies, 0.99))
        p50, p99 = results[label]
        print(
            f"   {label:17s} p50 {p50 * 1e3:7.1f} ms ({p50 / SERVICE:5.2f} S)  "
            f"p99 {p99 * 1e3:7.1f} ms ({p99 / SERVICE:5.2f} S)"
        )
    fifo_p99 = results["FIFO"][1]
    pre_p99 = results["priority+preempt"][1]
    print(
        f"   p99 with preemption: {pre_p99 / SERVICE:.2f} S (target <= 1.5 S: "
        f"{verdict(pre_p99 / SERVICE <= 1.5)}); {fifo_p99 / pre_p99:.1f}x better than FIFO "
        f"(target >= 5x: {verdict(fifo_p99 / pre_p99 >= 5)})"
    )
    save_bars(
        args.plot_dir,
        "priority",
        "High-priority p99 latency under saturating low-priority load",
        list(results),
        [p99 / SERVICE for _, p99 in results.values()],
        "p99 / service time S",
    )
    direct, scheduled = overhead_us(20_000 if args.full else 5_000)
    print(
        f"2. scheduling overhead: direct submit {direct:6.1f} us, through the scheduler {scheduled:6.1f} us, "
        f"overhead {scheduled - direct:6.1f} us/request "
        f"(target <= 50 us: {verdict(scheduled - direct <= 50)})"
    )


if __name__ == "__main__":
    main()
