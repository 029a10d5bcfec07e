"""Real brokers on 127.0.0.1 (Debian's redis-server and rabbitmq-server), one of each per session.

A broker that is not installed fails its tests under ``CI=true`` (CI installs both) and
skips them elsewhere, saying what to install.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from omni_executor_celery.brokers import BrokerMissing, rabbitmq_server, redis_server

from omni_core.testing import isolated_omni_cache, tiny_lora, tiny_model

__all__ = ["isolated_omni_cache", "tiny_lora", "tiny_model"]


def _missing(exc: BrokerMissing) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(str(exc))
    pytest.skip(str(exc))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with redis_server(tmp_path_factory.mktemp("redis")) as url:
            yield url
    except BrokerMissing as exc:
        _missing(exc)


@pytest.fixture(scope="session")
def rabbitmq_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with rabbitmq_server(tmp_path_factory.mktemp("rabbitmq")) as url:
            yield url
    except BrokerMissing as exc:
        _missing(exc)


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest, redis_url: str) -> tuple[str, str]:
    """``(broker_url, result_backend)``: Redis for both, or RabbitMQ with Redis holding results."""
    backend = redis_url.rsplit("/", 1)[0] + "/1"
    if request.param == "redis":
        return redis_url, backend
    return request.getfixturevalue("rabbitmq_url"), backend


@pytest.fixture
def run_log(tmp_path: Path) -> Path:
    return tmp_path / "runs.log"
