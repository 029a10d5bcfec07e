"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
