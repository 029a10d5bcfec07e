"""``QueuedDiffusionExecutor``: the execution core of every executor that owns slots.

An executor that runs batches on slots of its own (the in-process runner,
worker processes, Ray actors) writes only what is its own: how its slots
start and stop, which are ready, and how a batch runs on one. This class
owns everything else, once:

- the request queue, and batching of compatible requests (one batch key);
- ``submit`` and ``execute_model`` (the latter is ``submit`` for each request);
- admission control: past ``config.max_queued_requests`` a request fails at
  once with :class:`~omni_core.errors.OverloadedError` (retryable);
- placement: the ready slot with the fewest requests in flight;
- abort of queued requests, and of dispatched ones before they start;
- a dead executor (``_mark_dead``) and shutdown: queued requests fail with
  :class:`~omni_core.errors.ExecutorDeadError` instead of hanging;
- the ``queue`` and ``total`` timings of every output.

A slot's batch ends through :meth:`_complete_batch` (one output per request)
or :meth:`_fail_batch` (every request fails with one error), from any thread.

A slot that batches by step (its runner admits requests between denoising
steps) says so with :meth:`_slot_window`: it is then handed requests of any
batch key while it holds fewer images than its window, even while it runs,
and delivers each request when it finishes (:meth:`_complete_outputs`).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from omni_core.errors import (
    ExecutorDeadError,
    ModelError,
    OverloadedError,
    RequestCancelledError,
)
from omni_core.executors.base import DiffusionExecutor
from omni_core.executors.queue import QueuedRequest, RequestQueue
from omni_core.request import DiffusionOutput, OmniDiffusionRequest

SlotT = TypeVar("SlotT")


@dataclass(eq=False)
class Batch(Generic[SlotT]):
    """Compatible requests dispatched together to one slot."""

    batch_id: int
    slot: SlotT
    items: list[QueuedRequest]
    launched: bool = False
    aborted: set[str] = field(default_factory=set)
    """Requests aborted after dispatch: dropped at launch, or ended cancelled whatever the slot returns."""
    started: float = field(default_factory=time.perf_counter)

    @property
    def requests(self) -> list[OmniDiffusionRequest]:
        return [item.request for item in self.items]

    @property
    def images(self) -> int:
        return sum(item.images for item in self.items)

    def holds(self, request_id: str) -> bool:
        return any(item.request_id == request_id for item in self.items)


class QueuedDiffusionExecutor(DiffusionExecutor, Generic[SlotT]):
    """Base of executors with slots; subclasses write the five slot hooks below."""

    slot_capacity: int = 1
    """Batches one slot may hold at once; 1 keeps batching and placement here."""
    requeue_unstarted: bool = False
    """When a step-batching slot dies, requests it held but had not started (no step reported,
    see :meth:`_note_started`) go back to the queue. Only for slots whose step reports arrive in
    order with their results; others fail every request they held (at most once)."""

    def _init_executor(self) -> None:
        self._lock = threading.Condition()
        self._queue = RequestQueue()
        self._inflight: dict[int, Batch[SlotT]] = {}
        self._batch_ids = itertools.count()
        self._dead_reason: str | None = None
        self._stopping = False
        self._service_seconds = MovingAverage()
        self._start_slots()
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name=f"omni-dispatch-{type(self).__name__}", daemon=True
        )
        self._dispatcher.start()

    # ------------------------------------------------------------ slot hooks

    @abstractmethod
    def _start_slots(self) -> None:
        """Start workers, load models; raise (e.g. ModelLoadError) if that fails."""

    @abstractmethod
    def _ready_slots(self) -> Sequence[SlotT]:
        """Slots able to run a batch now, in preference order (called with the lock held)."""

    @abstractmethod
    def _launch(self, batch: Batch[SlotT]) -> None:
        """Run ``batch`` on ``batch.slot``, or hand it over and return.

        Called on the dispatcher thread without the lock. End the batch with
        :meth:`_complete_batch` or :meth:`_fail_batch`; an exception raised
        here fails the batch with it.
        """

    def _slot_window(self, slot: SlotT) -> int | None:
        """Images ``slot`` may hold at once if it batches by step (None: request-level batching)."""
        return None

    def _abort_running(self, batch: Batch[SlotT], request_id: str) -> bool:
        """Stop a launched request between denoising steps; False if this executor cannot."""
        return False

    @abstractmethod
    def _stop_slots(self) -> None:
        """Release every slot (after the dispatcher stopped); leave no process or thread."""

    def _check_slots(self) -> None:
        """Raise if the slots are unhealthy (the executor itself is usable)."""

    def _unavailable_reason(self) -> str | None:
        """Why no request can be admitted now though the executor may recover (called with the lock);
        such requests fail at once with a retryable ``ExecutorDeadError`` instead of waiting."""
        return None

    # --------------------------------------------------------------- submit

    def submit(self, request: OmniDiffusionRequest) -> Future[DiffusionOutput]:
        future: Future[DiffusionOutput] = Future()
        with self._lock:
            self._raise_if_unusable()
            unavailable = self._unavailable_reason()
            if unavailable is not None:
                down = ExecutorDeadError(unavailable, retryable=True)
                future.set_result(DiffusionOutput.failure(request.request_id, down))
                return future
            limit = self.od_config.max_queued_requests
            if limit is not None and len(self._queue) >= limit:
                error = OverloadedError(
                    f"{len(self._queue)} requests are already queued (max_queued_requests={limit}); "
                    "retry later",
                    retry_after=self._drain_estimate(),
                )
                future.set_result(DiffusionOutput.failure(request.request_id, error))
                return future
            self._queue.push(QueuedRequest(request, future))
            self._lock.notify_all()
        return future

    def _drain_estimate(self) -> float:
        """Seconds until the queue has room again: batches ahead x recent batch time / slots (>= 1)."""
        slots = max(1, len(self._ready_slots()))
        batches_ahead = len(self._queue) / max(1, self.od_config.max_batch_size) + 1
        return max(1.0, batches_ahead * self._service_seconds.value(default=1.0) / slots)

    def _raise_if_unusable(self) -> None:
        self._raise_if_shut_down(self._stopping)
        if self._dead_reason is not None:
            raise ExecutorDeadError(f"{type(self).__name__} is dead: {self._dead_reason}")

    @property
    def dead_reason(self) -> str | None:
        with self._lock:
            return self._dead_reason

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a slot."""
        with self._lock:
            return len(self._queue)

    # ------------------------------------------------------------- dispatch

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                slot: SlotT | None = None
                while not self._stopping:
                    slot = self._free_slot() if len(self._queue) else None
                    if slot is not None:
                        break
                    self._lock.wait()
                if self._stopping or slot is None:
                    return
                window = self._slot_window(slot)
                if window is None:
                    items = self._queue.take_batch(self.od_config.max_batch_size)
                else:
                    # One request at a time, each to the least-loaded slot: the slot's runner
                    # batches whatever it holds by step, so there is nothing to group here.
                    items = self._queue.take_batch(1, same_key=False)
                if not items:
                    continue
                batch = Batch(next(self._batch_ids), slot, items)  # started: now
                dispatched = time.perf_counter()
                for item in items:
                    item.dispatched = dispatched
                self._inflight[batch.batch_id] = batch
            self._start_batch(batch)

    def _free_slot(self) -> SlotT | None:
        best: tuple[int, int, SlotT] | None = None
        for order, slot in enumerate(self._ready_slots()):
            batches = [b for b in self._inflight.values() if b.slot is slot]
            window = self._slot_window(slot)
            if window is None and len(batches) >= self.slot_capacity:
                continue
            if window is not None and sum(b.images for b in batches) >= window:
                continue
            load = sum(len(b.items) for b in batches)
            if best is None or (load, order) < best[:2]:
                best = (load, order, slot)
        return None if best is None else best[2]

    def _slot_images(self, slot: SlotT) -> int:
        return sum(b.images for b in self._inflight.values() if b.slot is slot)

    def step_window(self) -> int | None:
        """Images this executor's ready slots take at once when they batch by step, else None.

        A scheduler in front (the priority executor) keeps this many in flight, so an urgent
        request reaches a runner that admits it at its next step."""
        with self._lock:
            windows = [self._slot_window(slot) for slot in self._ready_slots()]
        if not windows or any(window is None for window in windows):
            return None
        return sum(w for w in windows if w is not None)

    def slot_load(self, slot: SlotT) -> int:
        """Requests in flight on ``slot``."""
        with self._lock:
            return sum(len(b.items) for b in self._inflight.values() if b.slot is slot)

    def _start_batch(self, batch: Batch[SlotT]) -> None:
        with self._lock:
            dropped = [item for item in batch.items if item.request_id in batch.aborted]
            batch.items = [item for item in batch.items if item.request_id not in batch.aborted]
            batch.launched = True
            if not batch.items:
                self._inflight.pop(batch.batch_id, None)
                self._lock.notify_all()
        for item in dropped:
            item.future.set_result(_cancelled(item.request_id, "before it ran"))
        if not batch.items:
            return
        try:
            self._launch(batch)
        except Exception as exc:  # noqa: BLE001 - delivered to the batch's requests
            self._fail_batch(batch.batch_id, exc)

    # ----------------------------------------------------------- completion

    def _complete_batch(self, batch_id: int, outputs: Sequence[DiffusionOutput]) -> Batch[SlotT] | None:
        """Deliver one output per request of the batch; None if it already ended (its slot died)."""
        with self._lock:
            batch = self._inflight.pop(batch_id, None)
            if batch is not None:
                self._service_seconds.add(time.perf_counter() - batch.started)
            self._lock.notify_all()
        if batch is None:
            return None
        if len(outputs) != len(batch.items):
            error = ModelError(f"the slot returned {len(outputs)} outputs for {len(batch.items)} requests")
            outputs = [DiffusionOutput.failure(item.request_id, error) for item in batch.items]
        _deliver(batch, list(zip(batch.items, outputs, strict=True)))
        return batch

    def _complete_outputs(self, batch_id: int, outputs: Sequence[DiffusionOutput]) -> None:
        """Deliver some requests of a step-batched slot's batch; it ends with its last request."""
        with self._lock:
            batch = self._inflight.get(batch_id)
            if batch is None:
                return  # already ended (its slot died)
            by_id = {output.request_id: output for output in outputs}
            done = [(item, by_id[item.request_id]) for item in batch.items if item.request_id in by_id]
            batch.items = [item for item in batch.items if item.request_id not in by_id]
            if not batch.items:
                self._inflight.pop(batch_id, None)
                self._service_seconds.add(time.perf_counter() - batch.started)
            self._lock.notify_all()
        _deliver(batch, done)

    def _fail_batch(self, batch_id: int, error: BaseException) -> Batch[SlotT] | None:
        """Every request of the batch fails with ``error``; None if it already ended."""
        with self._lock:
            batch = self._inflight.get(batch_id)
        if batch is None:
            return None
        return self._complete_batch(
            batch_id, [DiffusionOutput.failure(item.request_id, error) for item in batch.items]
        )

    def _note_started(self, request_ids: Sequence[str]) -> None:
        """A slot reported steps of these requests (they can no longer be given to another slot)."""
        wanted = set(request_ids)
        with self._lock:
            for batch in self._inflight.values():
                for item in batch.items:
                    if item.request_id in wanted:
                        item.started = True

    def _fail_slot(self, slot: SlotT, error: BaseException) -> int:
        """Fail every batch on ``slot`` (it died); returns how many requests were lost.

        A step-batching slot also held requests it had not started: they go back to the
        head of the queue for another slot (nothing of them ran), rather than failing."""
        with self._lock:
            requeue: list[QueuedRequest] = []
            if self.requeue_unstarted and self._slot_window(slot) is not None:
                for held in self._inflight.values():
                    if held.slot is slot:
                        waiting = [
                            i for i in held.items if not i.started and i.request_id not in held.aborted
                        ]
                        held.items = [i for i in held.items if i not in waiting]
                        requeue.extend(waiting)
                for item in requeue:
                    item.dispatched = None
                self._queue.push_front(sorted(requeue, key=lambda item: item.enqueued))
                self._lock.notify_all()
            batch_ids = [b.batch_id for b in self._inflight.values() if b.slot is slot]
        lost = 0
        for batch_id in batch_ids:
            batch = self._fail_batch(batch_id, error)
            lost += len(batch.items) if batch is not None else 0
        return lost

    def _mark_dead(self, reason: str) -> None:
        """The executor can run nothing more: say why, fail what is queued."""
        with self._lock:
            if self._dead_reason is None:
                self._dead_reason = reason
            self._lock.notify_all()
        self._fail_queued(ExecutorDeadError(f"{type(self).__name__} is dead: {reason}"))

    def _fail_queued(self, error: BaseException) -> None:
        with self._lock:
            items = self._queue.drain()
        for item in items:
            if item.claim():
                item.future.set_result(DiffusionOutput.failure(item.request_id, error))

    # ---------------------------------------------------------------- abort

    def abort(self, request_id: str) -> bool:
        """Cancel a queued request, or stop a running one at its next denoising step.

        True means the request will end with ``RequestCancelledError``; False that it
        is unknown here or already finished.
        """
        with self._lock:
            queued = self._queue.remove(request_id)
            batch = None
            if queued is None:
                batch = next((b for b in self._inflight.values() if b.holds(request_id)), None)
                if batch is None:
                    return False
                batch.aborted.add(request_id)
                if not batch.launched:
                    return True
        if queued is not None:
            if queued.claim():
                queued.future.set_result(_cancelled(request_id, "before it ran"))
            return True
        assert batch is not None
        # Best effort to stop it at the next step; whatever the slot returns, it ends cancelled
        # (so True always means cancelled, even if the last step had already run).
        self._abort_running(batch, request_id)
        return True

    # -------------------------------------------------------- health, stop

    def check_health(self) -> None:
        with self._lock:
            self._raise_if_unusable()
        self._check_slots()

    def shutdown(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is None:  # _init_executor never got that far
            return
        with lock:
            self._stopping = True
            lock.notify_all()
            running = list(self._inflight.values())
        # What runs ends now, as from every executor (its caller does not wait for the batch);
        # the slot is told to stop it at its next step, so the dispatcher is free to be joined.
        for batch in running:
            self._fail_batch(batch.batch_id, ExecutorDeadError("executor shut down while the request ran"))
            for item in batch.items:
                with contextlib.suppress(Exception):
                    self._abort_running(batch, item.request_id)
        dispatcher = getattr(self, "_dispatcher", None)
        if dispatcher is not None and dispatcher is not threading.current_thread():
            dispatcher.join()
        self._stop_slots()
        self._fail_queued(ExecutorDeadError("executor shut down before the request ran"))
        with lock:
            leftover = list(self._inflight)
        for batch_id in leftover:
            self._fail_batch(batch_id, ExecutorDeadError("executor shut down while the request ran"))


class MovingAverage:
    """Exponentially weighted mean of recent batch service times (for Retry-After estimates)."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self._value: float | None = None

    def add(self, sample: float) -> None:
        self._value = (
            sample if self._value is None else (1 - self.weight) * self._value + self.weight * sample
        )

    def value(self, default: float) -> float:
        return default if self._value is None else self._value


def _deliver(batch: Batch[Any], pairs: list[tuple[QueuedRequest, DiffusionOutput]]) -> None:
    """Resolve each request's future with its output (cancelled if it was aborted), with timings."""
    now = time.perf_counter()
    for item, output in pairs:
        if item.request_id in batch.aborted:
            output = _cancelled(output.request_id, "while it ran")
        dispatched = item.dispatched if item.dispatched is not None else item.enqueued
        output.timings["queue"] = dispatched - item.enqueued
        output.timings["total"] = now - item.enqueued
        item.future.set_result(output)


def _cancelled(request_id: str, when: str) -> DiffusionOutput:
    return DiffusionOutput.failure(
        request_id, RequestCancelledError(f"request {request_id} was aborted {when}")
    )
