"""The failure scenarios every executor must answer alike, as outputs of the same class.

An executor's caller should not need to know which executor it talks to in order to
handle a failure: a bad field, a full queue, an abort (queued or running), a timeout and
a shutdown while busy each end the request with an output of one class (and the field, for
a bad field), never as an exception on its future. :func:`run_conformance` plays them
against engines a test builds (or a subprocess, for Ray in its own network namespace) and
returns what arrived; :data:`EXPECTED` is what must.

The executor under test needs a queue of one (``max_queued_requests=1`` or its own cap,
with one request running at a time) so that a third request is refused as overloaded.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import TYPE_CHECKING

from omni_core.request import DiffusionOutput, OmniDiffusionRequest

if TYPE_CHECKING:
    from omni_core.engine import DiffusionEngine

Outcome = tuple[str | None, str | None]
"""``(error_type, error_field)`` of an output; ``(None, None)`` for a success."""

EXPECTED: dict[str, Outcome] = {
    "bad_field": ("RequestValidationError", "height"),
    "cancel_queued": ("RequestCancelledError", None),
    "cancel_running": ("RequestCancelledError", None),
    "timeout": ("RequestTimeoutError", None),
    "overload": ("OverloadedError", None),
    "shutdown_busy": ("ExecutorDeadError", None),
}
RESULT_SECONDS = 300.0
"""Longest a scenario waits for an output: far past any answer, short of a hang."""
REFUSAL_SECONDS = 30.0
"""Longest the overload scenario waits for a refusal to come back (a round trip, or retries)."""
BUSY_SECONDS = 1.0
"""How long a scenario lets a long request get going (where no step events say so)."""

_seeds = itertools.count(100)


def long_request(steps: int = 200, timeout: float | None = None) -> OmniDiffusionRequest:
    """A request that keeps one slot busy for many seconds on the tiny model (200 steps at 128x128)."""
    return OmniDiffusionRequest(
        prompt="busy", height=128, width=128, num_inference_steps=steps, seed=next(_seeds), timeout=timeout
    )


def outcome(output: DiffusionOutput) -> Outcome:
    return output.error_type, output.error_field


def run_conformance(make_engine: Callable[[], DiffusionEngine], long_steps: int = 200) -> dict[str, Outcome]:
    """Play every scenario; return each one's outcome (compare with :data:`EXPECTED`).

    ``make_engine`` is called twice: one engine serves the first five scenarios, the
    second is shut down while busy. ``long_steps``: the steps of a request that keeps a slot
    busy (fewer where an aborted request still runs out on a server the executor cannot stop).
    """
    return _Scenarios(long_steps).run(make_engine)


class _Scenarios:
    def __init__(self, long_steps: int) -> None:
        self.long_steps = long_steps

    def long(self, timeout: float | None = None) -> OmniDiffusionRequest:
        return long_request(self.long_steps, timeout=timeout)

    def run(self, make_engine: Callable[[], DiffusionEngine]) -> dict[str, Outcome]:
        results: dict[str, Outcome] = {}
        with make_engine() as engine:
            bad = OmniDiffusionRequest("x", height=63, width=64)
            results["bad_field"] = outcome(_result(engine.submit(bad)))
            results["cancel_queued"] = self.cancel_queued(engine)
            results["cancel_running"] = self.cancel_running(engine)
            results["timeout"] = outcome(_result(engine.submit(self.long(timeout=1.0))))
            results["overload"] = self.overload(engine)
        engine = make_engine()
        busy = engine.submit(self.long())
        _wait_until_busy(engine, busy)
        engine.close()
        results["shutdown_busy"] = outcome(_result(busy))
        return results

    def cancel_queued(self, engine: DiffusionEngine) -> Outcome:
        running, queued = self.long(), self.long()
        first = engine.submit(running)
        _wait_until_busy(engine, first, running.request_id)
        second = engine.submit(queued)
        engine.abort(queued.request_id)
        engine.abort(running.request_id)
        _result(first)
        return outcome(_result(second))

    def cancel_running(self, engine: DiffusionEngine) -> Outcome:
        request = self.long()
        future = engine.submit(request)
        _wait_until_busy(engine, future, request.request_id)
        engine.abort(request.request_id)
        return outcome(_result(future))

    def overload(self, engine: DiffusionEngine) -> Outcome:
        """One running, one queued, then more: at least one of the rest is refused as overloaded."""
        requests = [self.long() for _ in range(5)]
        futures = [engine.submit(requests[0])]
        _wait_until_busy(engine, futures[0], requests[0].request_id)
        futures += [engine.submit(request) for request in requests[1:]]
        # A refusal may take a round trip (an HTTP 429, a throttled invocation): wait for the first.
        wait(futures[2:], timeout=REFUSAL_SECONDS, return_when=FIRST_COMPLETED)
        for request in requests:
            engine.abort(request.request_id)
        outcomes = [outcome(_result(f)) for f in futures]
        return next((o for o in outcomes if o[0] == "OverloadedError"), outcomes[2])


def _wait_until_busy(engine: DiffusionEngine, future: Future[DiffusionOutput], request_id: str = "") -> None:
    """Until the request has made a step (where the executor reports steps), or a while."""
    stepped = threading.Event()
    remove = engine.add_progress_listener(
        lambda event: stepped.set() if not request_id or event.request_id == request_id else None
    )
    try:
        deadline = time.monotonic() + BUSY_SECONDS
        while not stepped.is_set() and not future.done() and time.monotonic() < deadline:
            stepped.wait(0.05)
    finally:
        remove()


def _result(future: Future[DiffusionOutput]) -> DiffusionOutput:
    """The output; an exception on the future is itself a failure of the contract (it propagates)."""
    return future.result(timeout=RESULT_SECONDS)
