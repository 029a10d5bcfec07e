"""``"inproc"``: run the model in the caller's process.

The simplest executor and the reference the others are compared with: no
process boundary, no serialization. Every request, from ``submit`` or
``execute_model``, goes through one dispatcher thread that drains whatever
is queued into one runner call: concurrent callers are batched exactly as
worker processes batch them, and torch only ever runs on that one thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from omni_core.errors import ExecutorDeadError, RequestCancelledError
from omni_core.executors.base import DiffusionExecutor, ProgressEvent
from omni_core.request import DiffusionOutput, OmniDiffusionRequest
from omni_core.runner.model_runner import DiffusionModelRunner


@dataclass(frozen=True)
class InProcOptions:
    """Options of the in-process executor."""

    torch_threads: int | None = None
    """``torch.set_num_threads`` for this process; ``None`` leaves torch's default."""


_STOP = object()


class InProcDiffusionExecutor(DiffusionExecutor):
    """Runs requests through one :class:`DiffusionModelRunner` in this process."""

    options_class = InProcOptions

    def _init_executor(self) -> None:
        if self.options.torch_threads is not None:
            import torch

            torch.set_num_threads(self.options.torch_threads)
        self.runner = DiffusionModelRunner(self.od_config)
        self.runner.load_model()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._dispatcher: threading.Thread | None = None
        self._dispatcher_lock = threading.Lock()
        self._queued_ids: set[str] = set()
        self._aborted: set[str] = set()

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        # Through the dispatcher thread, like submit(): torch then runs on one thread only.
        # Calling it from several threads gives each its own OpenMP pool, and on a small
        # machine the pools' spinning threads halve throughput (measured: 44 → 120 ms/request).
        futures = [self.submit(request) for request in requests]
        return [future.result() for future in futures]

    def _run_batch(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        started = time.perf_counter()
        outputs = self.runner.execute(requests, on_step=self._report_steps)
        total = time.perf_counter() - started
        for output in outputs:
            output.timings.setdefault("total", total)
        return outputs

    def _report_steps(self, request_ids: Sequence[str], step: int, total: int) -> None:
        for request_id in request_ids:
            self._emit_progress(ProgressEvent(request_id, step, total))

    def submit(self, request: OmniDiffusionRequest) -> Future[DiffusionOutput]:
        if self.is_shutdown:
            raise ExecutorDeadError("InProcDiffusionExecutor is shut down; create a new engine")
        future: Future[DiffusionOutput] = Future()
        with self._dispatcher_lock:
            self._queued_ids.add(request.request_id)
        self._queue.put((request, future, time.perf_counter()))
        self._ensure_dispatcher()
        return future

    def _ensure_dispatcher(self) -> None:
        with self._dispatcher_lock:
            if self._dispatcher is None:
                self._dispatcher = threading.Thread(
                    target=self._dispatch_loop, name="omni-inproc-dispatcher", daemon=True
                )
                self._dispatcher.start()

    def _dispatch_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            while len(batch) < self.od_config.max_batch_size:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(more)
            self._run_submitted(batch)

    def _run_submitted(
        self, batch: list[tuple[OmniDiffusionRequest, Future[DiffusionOutput], float]]
    ) -> None:
        with self._dispatcher_lock:
            for request, _, _ in batch:
                self._queued_ids.discard(request.request_id)
            aborted = {r.request_id for r, _, _ in batch} & self._aborted
            self._aborted -= aborted
        live = []
        for entry in batch:
            if not entry[1].set_running_or_notify_cancel():
                continue
            if entry[0].request_id in aborted:
                error = RequestCancelledError(f"request {entry[0].request_id} was aborted before it ran")
                entry[1].set_result(DiffusionOutput.failure(entry[0].request_id, error))
            else:
                live.append(entry)
        if not live:
            return
        dequeued = time.perf_counter()
        try:
            outputs = self._run_batch([request for request, _, _ in live])
        except BaseException as exc:  # noqa: BLE001 - delivered through every future
            for _, future, _ in live:
                future.set_exception(exc)
            return
        for (_, future, enqueued), output in zip(live, outputs, strict=True):
            output.timings["queue"] = dequeued - enqueued
            future.set_result(output)

    def abort(self, request_id: str) -> bool:
        if self.runner.cancel(request_id):
            return True
        with self._dispatcher_lock:
            if request_id in self._queued_ids:
                self._aborted.add(request_id)
                return True
        return self.runner.cancel(request_id)  # it may have started meanwhile

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        target = getattr(self.runner, method, None) if not method.startswith("_") else None
        if not callable(target):
            raise AttributeError(f"collective_rpc: the model runner has no public method {method!r}")
        return [target(*args, **(kwargs or {}))]

    def check_health(self) -> None:
        if self.is_shutdown:
            raise ExecutorDeadError("InProcDiffusionExecutor is shut down")
        if not self.runner.is_loaded:
            raise ExecutorDeadError("InProcDiffusionExecutor has no model loaded")

    def shutdown(self) -> None:
        dispatcher = getattr(self, "_dispatcher", None)
        if dispatcher is not None:
            self._queue.put(_STOP)
            dispatcher.join()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP and item[1].set_running_or_notify_cancel():
                item[1].set_exception(ExecutorDeadError("executor shut down before the request ran"))
        if hasattr(self, "runner"):
            self.runner.pipeline = None
