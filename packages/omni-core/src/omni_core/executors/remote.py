"""``RemoteDiffusionExecutor``: the execution core of every executor whose model runs elsewhere.

The remote counterpart of :class:`~omni_core.executors.queued.QueuedDiffusionExecutor`,
as httpx's ``BaseClient`` is to its transports. An executor that sends requests to
something it does not own (an HTTP server, a fleet of them, a Lambda function, a Celery
or Kafka queue) writes only how to send and how to read the answer. This class owns the
rest, once:

- validation before sending, with the limits a remote worker enforces (a bad field fails
  here, named, without a round trip);
- admission: past :attr:`max_pending` requests awaiting answers, a request fails at once
  with :class:`~omni_core.errors.OverloadedError`;
- the pending table, abort (a request ends cancelled at once; the remote side is told,
  best effort), and shutdown: what is pending ends with ``ExecutorDeadError`` as its output;
- one retry loop (:mod:`omni_core.retry`) and one rule for exhausted retries
  (:func:`~omni_core.retry.exhausted_retries_error`); a wait between retries ends at shutdown;
- the ``total`` and ``attempts`` timings;
- reading images a worker offloaded to S3, with one lazily made client;
- the shutdown and health guards.

A request's failure is always its output, never an exception on its future.

Two ways to send, one base. *Call* executors (http, external, Lambda) write :meth:`_call`:
one blocking round trip for a batch, run on this executor's pool with retries. *Message*
executors (Celery, Kafka) override :meth:`_dispatch` to put the request on a queue and
return; whatever reads the answers calls :meth:`_finish`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omni_core.errors import (
    ExecutorDeadError,
    OmniError,
    OverloadedError,
    RemoteError,
    RequestCancelledError,
    RequestValidationError,
)
from omni_core.executors.base import DiffusionExecutor
from omni_core.offload import OffloadedImageError, restore_images
from omni_core.request import DiffusionOutput, OmniDiffusionRequest
from omni_core.retry import RetryLater, call_with_retries, exhausted_retries_error
from omni_core.validation import RequestLimits, validate_request

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is sent again (the timing rule is :mod:`omni_core.retry`)."""

    max_retries: int = 4
    backoff_base: float = 0.25
    backoff_max: float = 10.0


@dataclass(eq=False)
class PendingRequest:
    """A request sent (or about to be) and not yet answered."""

    request: OmniDiffusionRequest
    future: Future[DiffusionOutput]
    sent: float = field(default_factory=time.perf_counter)
    memo: dict[str, Any] = field(default_factory=dict)
    """Scratch space of the executor's own, e.g. the servers a call already tried."""

    @property
    def request_id(self) -> str:
        return self.request.request_id


class RemoteCall:
    """One batch on its way: its requests, and the attempt it is on (from 1)."""

    def __init__(self, pending: list[PendingRequest]) -> None:
        self.pending = pending
        self.attempt = 0

    @property
    def requests(self) -> list[OmniDiffusionRequest]:
        return [item.request for item in self.pending]


class RemoteDiffusionExecutor(DiffusionExecutor):
    """Base of executors whose model runs elsewhere; subclasses write :meth:`_call` or :meth:`_dispatch`."""

    remote_name: ClassVar[str] = "the remote service"
    """How messages name what this executor talks to ("the Lambda function", "the broker")."""
    requests_per_call: int = 1
    """Requests :meth:`execute_model` sends in one :meth:`_call` (Lambda batches invocations)."""

    def _init_executor(self) -> None:
        self.limits = RequestLimits.from_config(self.od_config).for_remote_workers()
        self._pending: dict[str, PendingRequest] = {}
        self._pending_lock = threading.Lock()
        self._closing = threading.Event()
        self._s3: Any = None
        self._s3_lock = threading.Lock()
        self._init_remote()

    # ------------------------------------------------------------ hooks

    def _init_remote(self) -> None:
        """Open clients, start pollers; raise (naming the option) if that cannot work."""

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry budget of :meth:`_call` (from the executor's options)."""
        return RetryPolicy()

    @property
    def max_pending(self) -> int | None:
        """Requests awaiting an answer at once; more fail at once with ``OverloadedError``.

        By default the config's ``max_queued_requests`` means here what it means for a local
        executor: that many may wait for one of the ``max_concurrent_submits`` calls in flight.
        """
        queued = self.od_config.max_queued_requests
        return None if queued is None else queued + self.max_concurrent_submits

    def _call(self, call: RemoteCall) -> Sequence[DiffusionOutput]:
        """Send ``call.requests`` once and read the answer: one output per request, in order.

        Raise :class:`~omni_core.retry.RetryLater` when the call did not run (or may safely run
        again), any :class:`~omni_core.errors.OmniError` to fail the whole batch with it.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement _call or _dispatch")

    def _dispatch(self, batch: list[PendingRequest]) -> None:
        """Hand ``batch`` to the remote side. The default runs :meth:`_call` on the pool, with retries.

        A message executor overrides this to put the requests on its queue and return; the
        answers then arrive through :meth:`_finish`. An exception raised here fails the batch.
        """
        self._run_on_pool(self._run_call, RemoteCall(batch))

    def _abort_remote(self, request_id: str) -> None:
        """Tell the remote side to stop ``request_id`` (best effort; it has already ended here)."""

    def _check_remote(self) -> None:
        """Raise ``ExecutorDeadError`` saying why the remote side cannot serve now."""

    def _close_remote(self) -> None:
        """Close clients, stop pollers (pending requests are failed afterwards by this class)."""

    def _make_s3_client(self) -> Any:
        """The boto3 S3 client that reads offloaded images (made once, on first need)."""
        raise OffloadedImageError(f"{type(self).__name__} cannot read images a worker put in S3")

    # ------------------------------------------------------------ requests

    def submit(self, request: OmniDiffusionRequest) -> Future[DiffusionOutput]:
        (pending,) = self._admit([request])
        return pending.future

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        admitted = self._admit(list(requests), dispatch=False)
        sendable = [item for item in admitted if not item.future.done()]
        size = max(1, self.requests_per_call)
        for start in range(0, len(sendable), size):
            self._send([item for item in sendable[start : start + size] if not item.future.done()])
        return [item.future.result() for item in admitted]

    def _admit(self, requests: list[OmniDiffusionRequest], *, dispatch: bool = True) -> list[PendingRequest]:
        """Validate, count against :attr:`max_pending`, register; failures end as outputs at once."""
        self._raise_if_shut_down(self._closing.is_set())
        admitted = []
        for request in requests:
            future: Future[DiffusionOutput] = Future()
            future.set_running_or_notify_cancel()
            item = PendingRequest(request, future)
            admitted.append(item)
            try:
                validate_request(request, self.limits)  # before it travels: the worker checks again
            except RequestValidationError as exc:
                future.set_result(DiffusionOutput.failure(request.request_id, exc))
                continue
            limit = self.max_pending
            with self._pending_lock:
                if limit is not None and len(self._pending) >= limit:
                    error = OverloadedError(
                        f"{len(self._pending)} requests are awaiting answers (max_pending={limit}); "
                        "retry later"
                    )
                    future.set_result(DiffusionOutput.failure(request.request_id, error))
                    continue
                self._pending[request.request_id] = item
            if dispatch:
                self._send([item])
        return admitted

    def _send(self, batch: list[PendingRequest]) -> None:
        if not batch:
            return
        try:
            self._dispatch(batch)
        except Exception as exc:  # noqa: BLE001 - delivered to the batch's requests
            for item in batch:
                self._finish(item.request_id, DiffusionOutput.failure(item.request_id, exc))

    def _run_call(self, call: RemoteCall) -> None:
        """A call's whole life on a pool thread: retries, then one output per request."""
        call.pending = [item for item in call.pending if self._is_pending(item)]
        if not call.pending:
            return  # every request was aborted while it waited for a thread
        policy = self.retry_policy

        def attempt() -> Sequence[DiffusionOutput]:
            call.attempt += 1
            return self._call(call)

        try:
            outputs, attempts = call_with_retries(
                attempt,
                max_retries=policy.max_retries,
                base=policy.backoff_base,
                cap=policy.backoff_max,
                sleep=self._sleep_unless_closing,
            )
        except RetryLater as exc:
            self._fail_call(call, exhausted_retries_error(exc))
            return
        except OmniError as exc:
            self._fail_call(call, exc)
            return
        except Exception as exc:
            logger.exception("%s failed a call", type(self).__name__)
            self._fail_call(call, RemoteError(f"{type(exc).__name__}: {exc}"))
            return
        if len(outputs) != len(call.pending):
            error = RemoteError(f"{self.remote_name} answered {len(outputs)} outputs for {len(call.pending)}")
            self._fail_call(call, error)
            return
        for item, output in zip(call.pending, outputs, strict=True):
            output.timings["attempts"] = float(attempts)
            self._finish(item.request_id, output)

    def _fail_call(self, call: RemoteCall, error: BaseException) -> None:
        for item in call.pending:
            self._finish(item.request_id, DiffusionOutput.failure(item.request_id, error))

    def _sleep_unless_closing(self, seconds: float) -> None:
        if self._closing.wait(seconds):
            raise ExecutorDeadError(f"{type(self).__name__} shut down while the request waited to retry")

    # ------------------------------------------------------------ answers

    def _finish(self, request_id: str, output: DiffusionOutput) -> bool:
        """Deliver ``output`` as the request's answer; False if it had already ended (aborted, late)."""
        with self._pending_lock:
            item = self._pending.pop(request_id, None)
        if item is None or item.future.done():
            return False
        output.timings["total"] = time.perf_counter() - item.sent
        item.future.set_result(output)
        return True

    def _is_pending(self, item: PendingRequest) -> bool:
        with self._pending_lock:
            return self._pending.get(item.request_id) is item

    def _pending_requests(self) -> list[PendingRequest]:
        """A snapshot of what awaits an answer (for a poller that reads answers in bulk)."""
        with self._pending_lock:
            return list(self._pending.values())

    @property
    def pending_count(self) -> int:
        with self._pending_lock:
            return len(self._pending)

    def _restore_output(self, request_id: str, item: Any) -> DiffusionOutput:
        """A worker's output dict as an output, offloaded images fetched; a bad one is a failure."""
        try:
            return restore_images(item, self._s3_client)
        except OffloadedImageError as exc:
            return DiffusionOutput.failure(request_id, exc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            error = RemoteError(f"malformed output from {self.remote_name}: {exc!r}")
            return DiffusionOutput.failure(request_id, error)

    def _s3_client(self) -> Any:
        with self._s3_lock:
            if self._s3 is None:
                self._s3 = self._make_s3_client()
            return self._s3

    # ------------------------------------------------------------ abort

    def abort(self, request_id: str) -> bool:
        """End a pending request cancelled at once; the remote side is told to stop it (best effort)."""
        cancelled = RequestCancelledError(f"request {request_id} was aborted")
        if not self._finish(request_id, DiffusionOutput.failure(request_id, cancelled)):
            return False
        try:
            self._abort_remote(request_id)
        except Exception as exc:  # noqa: BLE001 - it has ended cancelled on this side anyway
            logger.warning("could not tell %s to abort %s: %s", self.remote_name, request_id, exc)
        return True

    # ------------------------------------------------------------ rpc, health, stop

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        """``"ping"``: one ``"pong"`` once :meth:`check_health` passes. The model runs elsewhere, so a
        remote executor that can reach its workers' methods overrides this."""
        if method != "ping":
            raise AttributeError(f"collective_rpc: {type(self).__name__} supports 'ping', not {method!r}")
        self.check_health()
        return ["pong"]

    def check_health(self) -> None:
        self._raise_if_shut_down(self._closing.is_set())
        self._check_remote()

    def shutdown(self) -> None:
        closing = getattr(self, "_closing", None)
        if closing is None:  # _init_executor never got that far
            return
        closing.set()
        try:
            self._close_remote()
        finally:
            for item in self._pending_requests():
                error = ExecutorDeadError("executor shut down before the request finished")
                self._finish(item.request_id, DiffusionOutput.failure(item.request_id, error))
        s3 = self._s3
        if s3 is not None and hasattr(s3, "close"):
            s3.close()
