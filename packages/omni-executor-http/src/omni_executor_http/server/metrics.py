"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServerMetrics:
    """Requests, errors, latency and queue depth, as the issue tracker and dashboards expect."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "omni_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "omni_http_errors", "Error responses by OpenAI error type", ["type"], registry=self.registry
        )
        self.latency = Histogram(
            "omni_http_request_latency_seconds",
            "Time from request to response",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "omni_queue_depth",
            "Generation requests handed to the engine and not finished",
            registry=self.registry,
        )
        self.images = Counter("omni_images_generated", "Images returned", registry=self.registry)
        self.abandoned = Counter(
            "omni_requests_abandoned",
            "Requests whose client disconnected before the answer, by what abort found",
            ["outcome"],
            registry=self.registry,
        )
        self.abandoned_steps = Counter(
            "omni_abandoned_steps",
            "Denoising steps run for requests after their client disconnected",
            registry=self.registry,
        )

    def watch_batching(self, describe: Callable[[], list[Any]]) -> None:
        """Report each worker's batching mode, measured cap and step times at every scrape."""
        self.registry.register(BatchingCollector(describe))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class BatchingCollector:
    """Reads ``describe`` of every worker when scraped (a pipe or actor round trip, not a cache)."""

    def __init__(self, describe: Callable[[], list[Any]]) -> None:
        self._describe = describe

    def collect(self) -> Iterator[Metric]:
        try:
            workers = self._describe()
        except Exception as exc:  # noqa: BLE001 - a busy or remote engine: no batching figures this time
            logger.debug("batching metrics unavailable: %s", exc)
            return
        step_mode = GaugeMetricFamily(
            "omni_batching_step_mode",
            "1 where a worker batches by denoising step, 0 by request",
            labels=["worker"],
        )
        cap = GaugeMetricFamily(
            "omni_batch_cap_rows", "Denoiser rows one step may hold (measured at load)", labels=["worker"]
        )
        step_seconds = GaugeMetricFamily(
            "omni_step_seconds",
            "Seconds of one denoiser forward by rows, measured at load",
            labels=["worker", "rows"],
        )
        rows = GaugeMetricFamily(
            "omni_rows_per_forward", "Mean rows of the step loop's forwards so far", labels=["worker"]
        )
        for index, info in enumerate(workers):
            batching = info.get("batching") if isinstance(info, dict) else None
            if not isinstance(batching, dict):
                continue
            worker = str(info.get("rank", index))
            step_mode.add_metric([worker], 1.0 if batching.get("mode") == "step" else 0.0)
            if batching.get("mode") != "step":
                continue
            cap.add_metric([worker], float(batching["cap_rows"]))
            rows.add_metric([worker], float(batching.get("rows_per_forward", 0.0)))
            calibration = batching.get("calibration") or {}
            for size, seconds in (calibration.get("step_seconds") or {}).items():
                step_seconds.add_metric([worker, str(size)], float(seconds))
        yield from (step_mode, cap, step_seconds, rows)
