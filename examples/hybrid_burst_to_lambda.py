"""A hybrid executor: local worker processes first, bursting to Lambda when the local queue is long.

Built from two existing executors (``mp`` and ``lambda``) behind the ABC,
with its settings in a config subclass. Lambda here is ``omni lambda
local``'s service on 127.0.0.1 (real awslambdaric processes); on AWS, drop
``endpoint_url``. The same seed gives the same image on either path.

Run: python examples/hybrid_burst_to_lambda.py
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omni_core import (
    DiffusionEngine,
    DiffusionOutput,
    OmniDiffusionConfig,
    OmniDiffusionRequest,
    resolve_executor_class,
)
from omni_core.executors.base import DiffusionExecutor


@dataclass
class BurstConfig(OmniDiffusionConfig):
    local_executor: str = "mp"
    local_options: dict[str, Any] = field(default_factory=dict)
    burst_options: dict[str, Any] = field(default_factory=dict)
    """The Lambda executor's options (function_name, endpoint_url, concurrency, ...)."""
    max_local_queue: int = 2
    """Requests the local executor may hold; the next ones go to Lambda."""


class BurstToLambdaExecutor(DiffusionExecutor):
    def _init_executor(self) -> None:
        config = self.od_config
        assert isinstance(config, BurstConfig)
        local_class = resolve_executor_class(config.local_executor)
        self.local = local_class(
            config.replace(executor_class=local_class, executor_options=config.local_options)
        )
        burst_class = resolve_executor_class("lambda")
        self.burst = burst_class(
            config.replace(executor_class=burst_class, executor_options=config.burst_options)
        )
        self.max_local_queue = config.max_local_queue
        self._local_pending = 0
        self._lock = threading.Lock()
        self.routed: Counter[str] = Counter()

    def submit(self, request: OmniDiffusionRequest) -> Future[DiffusionOutput]:
        with self._lock:
            local = self._local_pending < self.max_local_queue
            self._local_pending += local
            self.routed["local" if local else "lambda"] += 1
        if not local:
            return self.burst.submit(request)
        future = self.local.submit(request)
        future.add_done_callback(lambda _: self._local_done())
        return future

    def _local_done(self) -> None:
        with self._lock:
            self._local_pending -= 1

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        futures = [self.submit(request) for request in requests]
        return [future.result() for future in futures]

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        return self.local.collective_rpc(method, timeout, args, kwargs)

    def check_health(self) -> None:
        self.local.check_health()
        self.burst.check_health()

    def shutdown(self) -> None:
        self.local.shutdown()
        self.burst.shutdown()


def main() -> None:
    from omni_executor_lambda.local import LocalFunction
    from omni_executor_lambda.testing import local_lambda

    with local_lambda([LocalFunction("omni", concurrency=2)]) as service:
        config = BurstConfig(
            executor_class=BurstToLambdaExecutor,
            local_options={"num_workers": 1},
            burst_options={"endpoint_url": service.endpoint_url, "region": "us-east-1", "concurrency": 2},
        )
        with DiffusionEngine(config) as engine:
            requests = [
                OmniDiffusionRequest(prompt=f"a handwritten {i}", height=64, width=64, seed=i)
                for i in range(8)
            ]
            outputs = [future.result() for future in [engine.submit(r) for r in requests]]
            assert all(output.ok for output in outputs), [output.error for output in outputs]
            executor = engine.executor
            assert isinstance(executor, BurstToLambdaExecutor)
            print(f"8 requests: {dict(executor.routed)}")
            # The same request on both paths draws the same image.
            again = executor.burst.execute_model([requests[0]])[0].raise_for_error()
            assert np.array_equal(again.output[0], outputs[0].output[0])
            print("request 0 through Lambda gives the image the local workers drew")


if __name__ == "__main__":
    main()
