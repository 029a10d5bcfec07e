"""``PriorityDiffusionExecutor``: decides what the inner executor runs next.

Requests wait in per-level queues (lower ``priority`` first, FIFO by arrival
sequence within a level, round-robin across tenants); at most
``max_inflight`` are in the inner executor at once, so ordering matters.
One dispatcher thread moves requests from the queues into the window and
expires deadlines; completions arrive on the inner executor's threads.
Every request ends exactly once, and always as an output: a result, a rejection
(``QueueFull``, ``DeadlineExceeded``), cancellation or shutdown each arrive as a
failed ``DiffusionOutput`` of their class, as from every other executor; only
``submit`` on a shut-down executor raises.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any

from prometheus_client import CollectorRegistry

from omni_core import (
    DiffusionExecutor,
    DiffusionOutput,
    ExecutorDeadError,
    OmniDiffusionRequest,
    RequestCancelledError,
    RequestValidationError,
    resolve_executor_class,
)
from omni_core.executors import validate_scheduling_fields
from omni_executor_priority.errors import DeadlineExceeded, QueueFull
from omni_executor_priority.options import PriorityOptions
from omni_executor_priority.queues import Entry, PriorityQueues
from omni_executor_priority.ratelimit import GCRALimiter
from omni_executor_priority.stats import SchedulerStats, make_registry


class PriorityDiffusionExecutor(DiffusionExecutor):
    """A scheduler in front of any executor (``executor_class="priority"``)."""

    options_class = PriorityOptions
    options: PriorityOptions

    def _init_executor(self) -> None:
        inner_class = resolve_executor_class(self.options.inner)
        if issubclass(inner_class, PriorityDiffusionExecutor):
            raise ValueError("inner must not be another priority executor")
        inner_config = self.od_config.replace(
            executor_class=inner_class, executor_options=dict(self.options.inner_options)
        )
        self.inner: DiffusionExecutor = inner_class(inner_config)
        self.inner.add_progress_listener(self._emit_progress)
        self._window = self.options.max_inflight or inner_window(self.inner)
        limiter = (
            GCRALimiter(self.options.tenant_rate, self.options.tenant_burst)
            if self.options.tenant_rate
            else None
        )
        self._lock = threading.Condition()
        self._queues = PriorityQueues(self.options.aging_interval, self.options.max_wait, limiter)
        self._running: dict[str, Entry] = {}
        self._by_id: dict[str, Entry] = {}
        self._deadlines: list[tuple[float, int, Entry]] = []
        self._sequence = itertools.count()
        self._stats = SchedulerStats()
        self._stopping = False
        self.metrics_registry: CollectorRegistry = make_registry(self.stats)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="omni-priority", daemon=True)
        self._dispatcher.start()

    # ------------------------------------------------------------------ submit

    def submit(self, request: OmniDiffusionRequest) -> Future[DiffusionOutput]:
        future: Future[DiffusionOutput] = Future()
        try:
            # The inner executor validates the rest; these three decide where the request queues.
            validate_scheduling_fields(request)
        except RequestValidationError as problem:
            future.set_result(DiffusionOutput.failure(request.request_id, problem))
            return future
        now = time.monotonic()
        victim: Entry | None = None
        entry: Entry | None = None
        with self._lock:
            self._raise_if_shut_down(self._stopping)
            self._stats.counts["submitted"] += 1
            rejection = self._rejection(request, now)
            if rejection is not None:
                self._stats.rejections[type(rejection).__name__] += 1
            else:
                entry = Entry(
                    next(self._sequence), request, future, now, self._monotonic_deadline(request, now)
                )
                self._queues.push(entry)
                self._by_id[request.request_id] = entry
                if entry.deadline is not None:
                    heapq.heappush(self._deadlines, (entry.deadline, entry.seq, entry))
                victim = self._choose_victim(entry)
                if len(self._running) < self._window or entry.deadline is not None:
                    self._lock.notify()  # the dispatcher can act on it now (else a completion wakes it)
        if rejection is not None or entry is None:
            _fail(future, request, rejection or ExecutorDeadError("request was not queued"))
            return future
        queued = entry
        future.add_done_callback(lambda done: self._on_outer_done(queued, done))
        if victim is not None and not self.inner.abort(victim.request.request_id):
            with self._lock:
                victim.preempting = False
        return future

    def _rejection(self, request: OmniDiffusionRequest, now: float) -> Exception | None:
        if self._queues.depth(request.priority) >= self.options.max_queue_per_level:
            return QueueFull(
                f"priority level {request.priority} already holds {self.options.max_queue_per_level} "
                "queued requests (max_queue_per_level); retry later or use another level"
            )
        if request.deadline is not None and request.deadline <= time.time():
            return DeadlineExceeded(f"request {request.request_id} arrived after its deadline")
        return None

    @staticmethod
    def _monotonic_deadline(request: OmniDiffusionRequest, now: float) -> float | None:
        if request.deadline is None:
            return None
        return now + (request.deadline - time.time())

    def _choose_victim(self, arrival: Entry) -> Entry | None:
        """The running request a strictly higher-priority arrival may preempt, if any."""
        if not self.options.preemption or len(self._running) < self._window:
            return None
        candidates = [e for e in self._running.values() if not e.preempting]
        if not candidates:
            return None
        victim = max(candidates, key=lambda e: (e.priority, e.seq))
        if victim.priority <= arrival.priority or victim.preemptions >= self.options.max_preemptions:
            return None
        victim.preempting = True
        return victim

    def _on_outer_done(self, entry: Entry, future: Future[DiffusionOutput]) -> None:
        if not future.cancelled():
            return
        with self._lock:
            if entry.state == "queued":
                self._queues.discard(entry)
                self._by_id.pop(entry.request.request_id, None)
                self._stats.counts["cancelled"] += 1
            self._lock.notify_all()

    # ---------------------------------------------------------------- dispatch

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                now = time.monotonic()
                expired = self._expire(now)
                ready: list[Entry] = []
                retry: float | None = None
                while len(self._running) + len(ready) < self._window:
                    entry, retry = self._queues.pop(now)
                    if entry is None:
                        break
                    if not _claim(entry.future):
                        self._by_id.pop(entry.request.request_id, None)
                        continue
                    entry.state = "running"
                    entry.waited += now - entry.enqueued
                    self._running[entry.request.request_id] = entry
                    self._stats.record_wait(entry.priority, now - entry.enqueued)
                    ready.append(entry)
                if not ready and not expired:
                    self._lock.wait(self._next_wake(now, retry))
                    continue
            for entry in expired:
                late = DeadlineExceeded(
                    f"request {entry.request.request_id} waited past its deadline and never ran"
                )
                _fail(entry.future, entry.request, late)
            for entry in ready:
                self._start(entry)

    def _expire(self, now: float) -> list[Entry]:
        expired = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, entry = heapq.heappop(self._deadlines)
            if entry.state == "queued" and _claim(entry.future):
                self._queues.discard(entry)
                self._by_id.pop(entry.request.request_id, None)
                self._stats.counts["deadline_expired"] += 1
                expired.append(entry)
        return expired

    def _next_wake(self, now: float, retry: float | None) -> float | None:
        waits = [retry] if retry is not None else []
        while self._deadlines and self._deadlines[0][2].state != "queued":
            heapq.heappop(self._deadlines)
        if self._deadlines:
            waits.append(max(0.0, self._deadlines[0][0] - now))
        return min(waits) if waits else None

    def _start(self, entry: Entry) -> None:
        try:
            inner_future = self.inner.submit(entry.request)
        except Exception as exc:  # noqa: BLE001 - the inner executor is down: this request fails
            with self._lock:
                self._finish(entry)
            _fail(entry.future, entry.request, exc)
            return
        inner_future.add_done_callback(lambda done: self._on_inner_done(entry, done))

    def _finish(self, entry: Entry) -> None:
        entry.state = "done"
        self._running.pop(entry.request.request_id, None)
        self._by_id.pop(entry.request.request_id, None)
        self._lock.notify_all()

    def _on_inner_done(self, entry: Entry, done: Future[DiffusionOutput]) -> None:
        error = done.exception() if not done.cancelled() else CancelledError()
        output = done.result() if error is None else None
        with self._lock:
            if (
                output is not None
                and output.error_type == RequestCancelledError.__name__
                and entry.preempting
                and not self._stopping
            ):
                # Preempted between steps: back to the front of its level, to run again later.
                self._running.pop(entry.request.request_id, None)
                entry.preempting = False
                entry.preemptions += 1
                entry.state = "queued"
                entry.enqueued = time.monotonic()
                self._queues.push(entry, front=True)
                self._stats.counts["preemptions"] += 1
                self._lock.notify_all()
                return
            self._finish(entry)
            self._stats.counts["completed"] += 1
        if output is None:
            if isinstance(error, CancelledError):
                error = RequestCancelledError(f"request {entry.request.request_id} was cancelled")
            _fail(
                entry.future, entry.request, error or ExecutorDeadError("the inner executor lost the request")
            )
            return
        output.timings["scheduler_wait"] = entry.waited
        output.timings["preemptions"] = float(entry.preemptions)
        entry.future.set_result(output)

    # ----------------------------------------------------------- the rest

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        futures = [(request, self.submit(request)) for request in requests]
        outputs = []
        for request, future in futures:
            try:
                outputs.append(future.result())
            except CancelledError:  # the caller cancelled the future itself
                cancelled = RequestCancelledError(f"request {request.request_id} was cancelled")
                outputs.append(DiffusionOutput.failure(request.request_id, cancelled))
        return outputs

    def abort(self, request_id: str) -> bool:
        with self._lock:
            entry = self._by_id.get(request_id)
            if entry is None:
                return False
            if entry.state != "queued":
                return self.inner.abort(request_id)
            self._queues.discard(entry)
            self._by_id.pop(request_id, None)
            entry.state = "done"
            self._stats.counts["cancelled"] += 1
            self._lock.notify_all()
        return _fail(entry.future, entry.request, RequestCancelledError(f"request {request_id} was aborted"))

    def stats(self) -> dict[str, Any]:
        """Queue depth per level, running, counts, rejections by reason, wait percentiles."""
        with self._lock:
            return self._stats.snapshot(self._queues.depths(), len(self._running))

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        return self.inner.collective_rpc(method, timeout=timeout, args=args, kwargs=kwargs)

    def check_health(self) -> None:
        self._raise_if_shut_down(self._stopping)
        self.inner.check_health()

    def shutdown(self) -> None:
        with self._lock:
            self._stopping = True
            queued = [e for e in self._by_id.values() if e.state == "queued"]
            for entry in queued:
                self._queues.discard(entry)
            self._lock.notify_all()
        self._dispatcher.join()
        for entry in queued:
            if _claim(entry.future):
                _fail(
                    entry.future,
                    entry.request,
                    ExecutorDeadError("executor shut down before the request ran"),
                )
        self.inner.shutdown()


def _fail(future: Future[DiffusionOutput], request: OmniDiffusionRequest, error: BaseException) -> bool:
    """End ``future`` with ``error`` as its output (False if the caller had cancelled it already)."""
    try:
        future.set_result(DiffusionOutput.failure(request.request_id, error))
    except InvalidStateError:
        return False
    return True


def _claim(future: Future[DiffusionOutput]) -> bool:
    """Mark the future running (False if it was cancelled); a requeued one already is."""
    return future.running() or future.set_running_or_notify_cancel()


def inner_window(inner: DiffusionExecutor) -> int:
    """Requests ``inner`` runs at once: its step-batching window where it has one, else 1."""
    window = getattr(inner, "step_window", None)
    value = window() if callable(window) else None
    return value if isinstance(value, int) and value >= 1 else 1
