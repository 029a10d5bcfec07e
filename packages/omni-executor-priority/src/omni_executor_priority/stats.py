"""Scheduler statistics: a stats() snapshot and the same numbers for Prometheus.

Counters and a bounded reservoir of recent waits per level are updated
under the executor's lock (a few integer operations per request); the
Prometheus collector reads a snapshot only when scraped, so metrics cost
nothing on the request path.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

WAIT_RESERVOIR = 10_000


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class SchedulerStats:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.waits: dict[int, deque[float]] = {}

    def record_wait(self, priority: int, seconds: float) -> None:
        self.waits.setdefault(priority, deque(maxlen=WAIT_RESERVOIR)).append(seconds)

    def snapshot(self, depths: dict[int, int], running: int) -> dict[str, Any]:
        waits = {}
        for priority, values in sorted(self.waits.items()):
            recent = list(values)
            waits[priority] = {
                "count": len(recent),
                "p50": percentile(recent, 0.5),
                "p99": percentile(recent, 0.99),
                "max": max(recent) if recent else 0.0,
            }
        return {
            "queue_depth": depths,
            "running": running,
            "submitted": self.counts["submitted"],
            "completed": self.counts["completed"],
            "cancelled": self.counts["cancelled"],
            "deadline_expired": self.counts["deadline_expired"],
            "preemptions": self.counts["preemptions"],
            "rejections": dict(self.rejections),
            "wait_seconds": waits,
        }


class SchedulerCollector(Collector):
    """Exposes a scheduler's snapshot as Prometheus metrics at scrape time."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        data = self.snapshot()
        depth = GaugeMetricFamily(
            "omni_priority_queue_depth", "Queued requests per priority level", labels=["level"]
        )
        for level, count in data["queue_depth"].items():
            depth.add_metric([str(level)], count)
        yield depth
        yield GaugeMetricFamily(
            "omni_priority_running", "Requests in the inner executor", value=data["running"]
        )
        for name in ("submitted", "completed", "cancelled", "deadline_expired", "preemptions"):
            yield CounterMetricFamily(
                f"omni_priority_{name}", f"Requests {name.replace('_', ' ')}", value=data[name]
            )
        rejected = CounterMetricFamily(
            "omni_priority_rejections", "Rejected requests by reason", labels=["reason"]
        )
        for reason, count in data["rejections"].items():
            rejected.add_metric([reason], count)
        yield rejected
        wait = GaugeMetricFamily(
            "omni_priority_wait_seconds", "Queue wait of recent requests", labels=["level", "quantile"]
        )
        for level, summary in data["wait_seconds"].items():
            wait.add_metric([str(level), "0.5"], summary["p50"])
            wait.add_metric([str(level), "0.99"], summary["p99"])
        yield wait


def make_registry(snapshot: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SchedulerCollector(snapshot))
    return registry
