"""The executors the conformance tests play their scenarios on, each with the real thing behind it.

Each runs one request at a time with a queue of one, so a third request is refused.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omni_core import DiffusionEngine, OmniDiffusionConfig
from omni_core.testing_conformance import EXPECTED

EngineFactory = Callable[[], DiffusionEngine]
ONE_AT_A_TIME = {"batching": "request", "max_batch_size": 1, "max_queued_requests": 1}
SERVER_FLAGS = ("--option", "num_workers=1", "--batching", "request", "--max-batch-size", "1")


def local(model: Path, executor: str, **options: object) -> EngineFactory:
    config = OmniDiffusionConfig(
        model_name_or_path=str(model), executor_class=executor, executor_options=options, **ONE_AT_A_TIME
    )
    return lambda: DiffusionEngine(config)


@contextlib.contextmanager
def engines(name: str, model: Path, tmp: Path) -> Iterator[EngineFactory]:
    if name in ("inproc", "mp"):
        yield local(model, name, **({"num_workers": 1} if name == "mp" else {}))
    elif name == "priority":
        options = {
            "inner": "mp",
            "inner_options": {"num_workers": 1},
            "max_inflight": 1,
            "max_queue_per_level": 1,
        }
        yield local(model, "priority", **options)
    elif name in ("http", "external"):
        from omni_executor_http.testing import run_server

        # One call in flight and one waiting for it, past that refused: the client's own admission
        # (the server's 429 becomes the same OverloadedError; omni-executor-http's tests show it).
        # An aborted request ends here at once; its call runs out on the server.
        with run_server(model, *SERVER_FLAGS, executor="mp", tmp=tmp) as server:
            where = {"base_url": server.url} if name == "http" else {"urls": [server.url]}
            options = {**where, "max_retries": 0, "max_connections": 1}
            config = OmniDiffusionConfig(executor_class=name, executor_options=options, max_queued_requests=1)
            yield lambda: DiffusionEngine(config)
    elif name == "lambda":
        from omni_executor_lambda.local import LocalFunction
        from omni_executor_lambda.testing import local_lambda

        function = LocalFunction("omni", environment={"OMNI_MODEL": str(model)}, concurrency=1)
        with local_lambda([function]) as service:
            options = {"endpoint_url": service.endpoint_url, "region": "us-east-1", "concurrency": 1}
            config = OmniDiffusionConfig(
                executor_class="lambda", executor_options=options, max_queued_requests=1
            )
            yield lambda: DiffusionEngine(config)
    elif name == "celery":
        from omni_executor_celery.brokers import redis_server
        from omni_executor_celery.testing import celery_config, celery_workers, wait_for_workers

        with redis_server(tmp) as broker:
            backend = broker.rsplit("/", 1)[0] + "/1"
            with celery_workers(broker, backend, model):
                config = celery_config(model, broker, backend, max_pending=2)  # one running, one queued
                with DiffusionEngine(config) as probe:
                    wait_for_workers(probe)
                yield lambda: DiffusionEngine(config)
    elif name == "kafka":
        from omni_executor_kafka.testing import kafka_broker, kafka_config, kafka_workers, wait_for_workers

        with kafka_broker(tmp) as broker, kafka_workers(broker.bootstrap, model):
            config = kafka_config(model, broker.bootstrap, max_pending=2)  # one running, one queued
            with DiffusionEngine(config) as probe:
                wait_for_workers(probe)
            yield lambda: DiffusionEngine(config)
    else:
        raise ValueError(name)


def check(outcomes: dict[str, list[str | None]] | dict[str, tuple[str | None, str | None]]) -> None:
    got = {scenario: tuple(value) for scenario, value in outcomes.items()}
    assert got == EXPECTED


def require(program: str, install: str) -> None:
    """Skip without ``program`` (fail under ``CI=true``), naming how to install it."""
    if shutil.which(program) is None and not Path(f"/usr/bin/{program}").exists():
        message = f"needs {program}: {install}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
