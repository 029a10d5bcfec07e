"""A real Tansu broker and real ``omni kafka worker`` processes on loopback; the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from omni_executor_kafka.testing import (
    Broker,
    kafka_broker,
    kafka_config,
    kafka_workers,
    require_broker,
)

from omni_core import DiffusionEngine
from omni_core.testing import isolated_omni_cache, tiny_model

__all__ = ["isolated_omni_cache", "tiny_model"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    require_broker()
    with kafka_broker(tmp_path) as running:
        yield running


class Workers:
    """A broker, ``omni kafka worker`` processes and an engine on them; runs logged per request."""

    def __init__(self, broker: Broker, engine: DiffusionEngine, run_log: Path) -> None:
        self.broker = broker
        self.engine = engine
        self.run_log = run_log

    def runs(self) -> list[tuple[str, str, int]]:
        """``(event, request_id, pid)`` lines, in order."""
        if not self.run_log.exists():
            return []
        lines = [line.split() for line in self.run_log.read_text().splitlines() if line.strip()]
        return [(event, request_id, int(pid)) for event, request_id, pid in lines]


def start_workers(tmp: Path, model: Path, count: int) -> Iterator[Workers]:
    from omni_executor_kafka.testing import wait_for_workers

    require_broker()
    run_log = tmp / "runs.log"
    with (
        kafka_broker(tmp) as broker,
        kafka_workers(broker.bootstrap, model, workers=count, run_log=run_log),
        DiffusionEngine(kafka_config(model, broker.bootstrap)) as engine,
    ):
        wait_for_workers(engine)
        yield Workers(broker, engine, run_log)


@pytest.fixture(scope="module")
def two_workers(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    yield from start_workers(tmp_path_factory.mktemp("kafka2"), tiny_model, 2)


@pytest.fixture(scope="module")
def one_worker(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    yield from start_workers(tmp_path_factory.mktemp("kafka1"), tiny_model, 1)
