"""Small deterministic executors for tests and benchmarks of the scheduler.

They are real executors (threads, futures, abort between steps), just
without a model: a request takes ``num_inference_steps`` steps of
``step_seconds`` each, so service times are known exactly and a test can
reason about order and latency.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from omni_core import (
    DiffusionExecutor,
    DiffusionOutput,
    OmniDiffusionRequest,
    ProgressEvent,
    RequestCancelledError,
)


@dataclass(frozen=True)
class StepTimerOptions:
    step_seconds: float = 0.005
    default_steps: int = 10


class StepTimerExecutor(DiffusionExecutor):
    """One worker thread; each request sleeps ``steps x step_seconds``; abortable between steps.

    ``started`` and ``finished`` record request ids in the order they happened.
    """

    options_class = StepTimerOptions
    options: StepTimerOptions

    def _init_executor(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self._queue: queue.Queue[tuple[OmniDiffusionRequest, Future[DiffusionOutput]] | None] = queue.Queue()
        self._aborted: set[str] = set()
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="step-timer", daemon=True)
        self._thread.start()

    def submit(self, request: OmniDiffusionRequest) -> Future[DiffusionOutput]:
        self._raise_if_shut_down()
        future: Future[DiffusionOutput] = Future()
        with self._lock:
            self._known.add(request.request_id)
        self._queue.put((request, future))
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            request, future = item
            future.set_result(self._run(request))

    def _run(self, request: OmniDiffusionRequest) -> DiffusionOutput:
        steps = request.num_inference_steps or self.options.default_steps
        started = time.perf_counter()
        self.started.append(request.request_id)
        try:
            for step in range(1, steps + 1):
                with self._lock:
                    if request.request_id in self._aborted:
                        self._aborted.discard(request.request_id)
                        error = RequestCancelledError(f"request {request.request_id} was cancelled")
                        return DiffusionOutput.failure(request.request_id, error)
                time.sleep(self.options.step_seconds)
                self._emit_progress(ProgressEvent(request.request_id, step, steps))
            self.finished.append(request.request_id)
            return DiffusionOutput(
                request_id=request.request_id,
                seed=request.seed,
                timings={"inference": time.perf_counter() - started},
            )
        finally:
            with self._lock:
                self._known.discard(request.request_id)

    def abort(self, request_id: str) -> bool:
        with self._lock:
            if request_id not in self._known:
                return False
            self._aborted.add(request_id)
            return True

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        return [future.result() for future in [self.submit(r) for r in requests]]

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        if method == "ping":
            return ["pong"]
        raise AttributeError(f"StepTimerExecutor has no method {method!r}")

    def check_health(self) -> None:
        self._raise_if_shut_down()

    def shutdown(self) -> None:
        self._queue.put(None)
        self._thread.join()


class InstantExecutor(DiffusionExecutor):
    """Completes every request immediately on the caller's thread (scheduler overhead benchmark)."""

    def _init_executor(self) -> None:
        self.order: list[str] = []

    def submit(self, request: OmniDiffusionRequest) -> Future[DiffusionOutput]:
        self.order.append(request.request_id)
        future: Future[DiffusionOutput] = Future()
        future.set_result(DiffusionOutput(request_id=request.request_id, seed=request.seed))
        return future

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        return [self.submit(r).result() for r in requests]

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        return []

    def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        return None
