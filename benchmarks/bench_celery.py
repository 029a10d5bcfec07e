"""The Celery executor against the mp executor, with real Redis and RabbitMQ on loopback; one run.

1. Per-request overhead at 64² (4 steps), sequential, one worker with one torch thread:
   Celery over Redis and over RabbitMQ (results in Redis) vs an mp worker, alternating
   request by request; medians. Targets: Redis +10 ms or less, RabbitMQ +15 ms or less.
2. Throughput over Redis of two workers against one (one thread each), the same requests
   at concurrency 8. Target: 1.7x or more.
3. Redelivery: seconds from SIGKILLing the worker running a request to its result, on
   Redis (``visibility_timeout`` 4 s here) and RabbitMQ (the channel closes), reported.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_celery.py [--full]``. Needs Debian's
redis-server and rabbitmq-server (the celery tests session installs them); without them
it says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from _load import alternating_medians, throughput
from _plot import save_bars
from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest

STEPS = 4
VISIBILITY = 4.0


def request(seed: int, steps: int = STEPS) -> OmniDiffusionRequest:
    return OmniDiffusionRequest(prompt="a 7", height=64, width=64, num_inference_steps=steps, seed=seed)


class Broker:
    """One broker's workers and client engine on a queue of its own."""

    def __init__(
        self, stack: contextlib.ExitStack, model: Path, broker: str, backend: str, log: Path
    ) -> None:
        from omni_executor_celery.testing import celery_config

        self.stack, self.model, self.broker, self.backend, self.log = stack, model, broker, backend, log
        self.queue = f"bench-{uuid.uuid4().hex[:8]}"
        config = celery_config(
            model, broker, backend, queue=self.queue, visibility_timeout=VISIBILITY, max_pending=10_000
        )
        self.engine = stack.enter_context(DiffusionEngine(config))
        self.workers = 0

    def add_worker(self) -> None:
        from omni_executor_celery.testing import celery_workers, wait_for_workers

        args = ("--queue", self.queue, "--visibility-timeout", str(VISIBILITY))
        self.stack.enter_context(
            celery_workers(self.broker, self.backend, self.model, run_log=self.log, extra_args=args)
        )
        self.workers += 1
        wait_for_workers(self.engine, count=self.workers)


def redelivery_seconds(broker: Broker) -> float:
    """From SIGKILL of the worker running a request to the request's result."""
    victim = request(4242, steps=40)
    future = broker.engine.submit(victim)
    pid = wait_for_start(broker.log, victim.request_id)
    killed = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    future.result().raise_for_error()
    return time.perf_counter() - killed


def wait_for_start(log: Path, request_id: str, seconds: float = 60.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                kind, rid, pid = line.split()
                if kind == "start" and rid == request_id:
                    return int(pid)
        time.sleep(0.01)
    raise TimeoutError(f"request {request_id} did not start within {seconds:g} s")


@contextlib.contextmanager
def brokers(directory: Path) -> Iterator[tuple[str, str] | None]:
    from omni_executor_celery.brokers import BrokerMissing, rabbitmq_server, redis_server

    try:
        with redis_server(directory) as redis, rabbitmq_server(directory) as rabbitmq:
            yield redis, rabbitmq
    except BrokerMissing as exc:
        print(f"celery benchmarks skipped: {exc}")
        yield None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help="write PNG charts here")
    args = parser.parse_args()
    from omni_core.models.tiny import build_tiny_pipeline

    count = 40 if args.full else 8
    with tempfile.TemporaryDirectory() as tmp, brokers(Path(tmp)) as urls:
        if urls is None:
            return
        redis_url, rabbitmq_url = urls
        backend = redis_url.rsplit("/", 1)[0] + "/1"
        model = build_tiny_pipeline(Path(tmp) / "tiny")
        print(f"celery benchmarks: tiny model, 64², {STEPS} steps, one-thread workers, brokers on loopback")
        mp_config = OmniDiffusionConfig(
            model_name_or_path=str(model),
            executor_class="mp",
            max_batch_size=1,
            executor_options={"num_workers": 1, "threads_per_worker": 1},
        )
        with contextlib.ExitStack() as stack:
            mp = stack.enter_context(DiffusionEngine(mp_config))
            on_redis = Broker(stack, model, redis_url, backend, Path(tmp) / "redis-runs.log")
            on_rabbitmq = Broker(stack, model, rabbitmq_url, backend, Path(tmp) / "rabbitmq-runs.log")
            on_redis.add_worker()
            on_rabbitmq.add_worker()
            mp_s, redis_s, rabbitmq_s = alternating_medians(
                [mp, on_redis.engine, on_rabbitmq.engine], request, count
            )
            for name, seconds, target in (("redis", redis_s, 0.010), ("rabbitmq", rabbitmq_s, 0.015)):
                print(
                    f"1. sequential, {name:8}: mp {mp_s * 1e3:6.1f} ms, celery {seconds * 1e3:6.1f} ms, "
                    f"overhead {(seconds - mp_s) * 1e3:+6.2f} ms/request "
                    f"(target <= {target * 1e3:g} ms: {verdict(seconds - mp_s <= target)})"
                )
            single = throughput(on_redis.engine, request, count * 2, concurrency=8)
            on_redis.add_worker()
            double = throughput(on_redis.engine, request, count * 2, concurrency=8)
            ratio = double / single
            print(
                f"2. throughput over redis: 1 worker {single:5.1f} req/s, 2 workers {double:5.1f} req/s, "
                f"ratio {ratio:4.2f} (target >= 1.7: {verdict(ratio >= 1.7)})"
            )
            on_rabbitmq.add_worker()
            for name, broker in (("redis", on_redis), ("rabbitmq", on_rabbitmq)):
                seconds = redelivery_seconds(broker)
                detail = f"visibility_timeout {VISIBILITY:g} s" if name == "redis" else "the channel closes"
                print(f"3. redelivery, {name:8}: result {seconds:5.2f} s after SIGKILL ({detail}; 40 steps)")
        save_bars(
            args.plot_dir,
            "celery",
            "Celery executor vs mp, 64², 4 steps (median per request)",
            ["mp", "celery redis", "celery rabbitmq"],
            [mp_s * 1e3, redis_s * 1e3, rabbitmq_s * 1e3],
            "ms per request",
        )


if __name__ == "__main__":
    sys.exit(main())
