"""Per-request timeouts, for every executor: the engine watches, the executor aborts.

One watcher thread holds a heap of expiry times (not a timer thread per
request: a server may hold thousands). When a request's time is up and it
has not finished, the caller's future gets a
:class:`~omni_core.errors.RequestTimeoutError` output at once and the
executor is asked to abort it (removed if queued, stopped at the next
denoising step if running); what the executor returns later is dropped.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError

from omni_core.errors import RequestTimeoutError
from omni_core.request import DiffusionOutput


class TimeoutWatcher:
    """Fails futures whose time is up and calls ``abort(request_id)`` for them."""

    def __init__(self, abort: Callable[[str], object]) -> None:
        self._abort = abort
        self._heap: list[tuple[float, int, str, float, Future[DiffusionOutput]]] = []
        self._sequence = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(
        self, request_id: str, seconds: float, inner: Future[DiffusionOutput]
    ) -> Future[DiffusionOutput]:
        """A future that resolves like ``inner``, or with a timeout failure after ``seconds``."""
        outer: Future[DiffusionOutput] = Future()
        outer.set_running_or_notify_cancel()

        def copy(done: Future[DiffusionOutput]) -> None:
            try:
                error = done.exception()
                if error is not None:
                    outer.set_exception(error)
                else:
                    outer.set_result(done.result())
            except InvalidStateError:
                pass  # the timeout came first

        inner.add_done_callback(copy)
        with self._wake:
            heapq.heappush(
                self._heap, (time.monotonic() + seconds, next(self._sequence), request_id, seconds, outer)
            )
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="omni-timeouts", daemon=True)
                self._thread.start()
            self._wake.notify()
        return outer

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._wake.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._closed:
                    return
                _, _, request_id, seconds, outer = heapq.heappop(self._heap)
            if outer.done():
                continue
            error = RequestTimeoutError(
                f"request {request_id} did not finish within its timeout of {seconds:g} s"
            )
            try:
                outer.set_result(DiffusionOutput.failure(request_id, error))
            except InvalidStateError:
                continue
            self._abort(request_id)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join()
