"""Step-level continuous batching: requests join and leave the running batch at every step.

Rather than re-writing each family's denoising loop (vllm-omni asks every
pipeline for prepare/denoise_step/step_scheduler/post_decode), omni runs each
request's *own* pipeline ``__call__``, with a per-request copy of the pipeline
object (its own scheduler state, guidance scale, step counter) whose denoiser
is a stand-in. The stand-in parks the call at every denoiser forward; the
driver thread then runs **one** forward over the parked rows of every
in-flight request (rows at different timesteps share it: UNets and DiTs take a
timestep per row) and lets each call continue to its next forward. So:

- prompt encoding, latents, timesteps, strength, masks, ``extra`` arguments,
  the scheduler step and decoding are the pipeline's own code, per request:
  a request alone gives exactly the pipeline's image;
- a request is admitted at the next step boundary when its rows fit the
  cap; a finished one leaves at once and its output is delivered then;
- an aborted request is ended at its next forward, dropping only its rows;
- calls whose forwards cannot be merged (another size, another LoRA) form
  separate groups; every group makes one step per round, so they alternate
  step by step and a request of another size starts at the next round.

Only one thread runs at a time: the pipeline threads hand a baton to the
driver and back, so torch never runs concurrently and the shared modules
(tokenizer, VAE, text encoders) are never used from two threads at once.
"""

from __future__ import annotations

import collections
import copy
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omni_core.errors import ExecutorDeadError, RequestCancelledError
from omni_core.request import DiffusionOutput
from omni_core.runner.denoiser_calls import (
    DenoiserCall,
    bind_call,
    merge_arguments,
    shared_values_equal,
    split_output,
)

if TYPE_CHECKING:
    from omni_core.runner.batching import PlannedRequest

logger = logging.getLogger(__name__)

Deliver = Callable[[DiffusionOutput], None]
RunRequest = Callable[[Any], DiffusionOutput]
"""Runs one request through the given pipeline copy (the runner's single-request path)."""
Activate = Callable[[object], None]
"""Makes a group's model state (its LoRA) current before its rows run."""


class DenoiserStandIn:
    """Takes the denoiser's place in one request's pipeline copy: every call parks the request."""

    def __init__(self, module: Any, run: RequestRun) -> None:
        self._module = module
        self._run = run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)  # config, dtype, device, add_embedding, cache_context...

    @property
    def reached(self) -> bool:
        """Whether the request's call has reached its first denoiser forward."""
        return self._run.parked > 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._run.park(bind_call(self._module, args, kwargs, self._run.group))


@dataclass(eq=False)
class RequestRun:
    """One request's pipeline call on a thread of its own, run only while the driver waits."""

    planned: PlannedRequest
    deliver: Deliver
    group: object
    rows_estimate: int
    on_forward: Callable[[int], None] | None = None
    """Progress for a pipeline without ``callback_on_step_end``: called with the forwards done."""
    pending: DenoiserCall | None = None
    output: DiffusionOutput | None = None
    cancelled: BaseException | None = None
    steps: int = 0
    parked: int = 0
    """Forwards this request's call has handed to the driver (``steps`` counts those that returned)."""
    shared_rows: int = 0
    """The most rows of a forward this request was part of (its ``batch_rows`` timing)."""
    shared_images: int = 0
    _go: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    _back: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    @property
    def request_id(self) -> str:
        return self.planned.request.request_id

    @property
    def rows(self) -> int:
        return self.pending.rows if self.pending is not None else self.rows_estimate

    def start(self, body: Callable[[], DiffusionOutput]) -> None:
        def main() -> None:
            self._go.acquire()
            try:
                self.output = body()
            except BaseException as exc:  # noqa: BLE001 - a request's failure is its output
                self.output = DiffusionOutput.failure(self.request_id, exc)
            finally:
                self.pending = None
                self._back.release()

        threading.Thread(target=main, name=f"omni-step-{self.request_id[:8]}", daemon=True).start()
        self.resume()

    def resume(self) -> None:
        """Driver side: let the call run until its next denoiser forward, or its end."""
        self._go.release()
        self._back.acquire()

    def park(self, call: DenoiserCall) -> Any:
        """Request side: hand the forward to the driver and wait for its rows of the result."""
        self.parked += 1
        if self.cancelled is not None:
            raise self.cancelled
        self.pending = call
        self._back.release()
        self._go.acquire()
        self.pending = None
        if call.error is not None:
            raise call.error
        self.steps += 1
        if self.on_forward is not None:
            self.on_forward(self.steps)
        return call.result

    @property
    def finished(self) -> bool:
        return self.output is not None


@dataclass
class Admission:
    planned: PlannedRequest
    body: RunRequest
    deliver: Deliver
    group: object
    guided: bool
    on_forward: Callable[[int], None] | None
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class StepStats:
    """What the loop did, for ``describe`` and /metrics."""

    forwards: int = 0
    rows: int = 0
    forward_seconds: float = 0.0
    """Time in merged denoiser forwards (the rest of a round is each request's own code)."""
    rounds: int = 0
    max_rows: int = 0


class StepBatcher:
    """The driver: admits requests between steps and runs one forward per group per round.

    ``pipeline_for(planned)`` is the pipeline whose copy a request runs in;
    ``activate(group)`` sets a group's model state (LoRA) before its rows run.
    """

    def __init__(
        self,
        *,
        denoiser_name: str,
        pipeline_for: Callable[[PlannedRequest], Any],
        activate: Activate,
        cap_rows: int,
    ) -> None:
        self.denoiser_name = denoiser_name
        self.cap_rows = cap_rows
        self._pipeline_for = pipeline_for
        self._activate = activate
        self._cond = threading.Condition()
        self._waiting: collections.deque[Admission] = collections.deque()
        self._running: list[RequestRun] = []
        self._cancel: dict[str, BaseException] = {}
        self._closed: str | None = None
        self._thread: threading.Thread | None = None
        self._current_group: object = object()
        self._rows_per_image = {True: 2, False: 1}
        """Denoiser rows per image with and without guidance: learnt from each request's first
        forward (Flux's distilled guidance takes one row, SD's classifier-free guidance two)."""
        self.stats = StepStats()
        self.on_forward: Callable[[dict[str, Any]], None] | None = None
        """Sees every merged forward's arguments (calibration records one)."""

    # ------------------------------------------------------------- callers

    def submit(
        self,
        planned: PlannedRequest,
        body: RunRequest,
        deliver: Deliver,
        *,
        group: object,
        guided: bool,
        on_forward: Callable[[int], None] | None = None,
    ) -> None:
        """Queue a validated request: ``body(pipeline)`` runs it in its pipeline copy, ``deliver``
        gets its output (on the driver thread); ``group`` is its model state; ``guided`` whether
        it asks for classifier-free guidance (two rows per image in most families); ``on_forward``
        reports progress where the pipeline has no step callback of its own."""
        with self._cond:
            if self._closed is not None:
                closed = self._closed
            else:
                closed = None
                self._waiting.append(Admission(planned, body, deliver, group, guided, on_forward))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="omni-step-driver", daemon=True)
                    self._thread.start()
                self._cond.notify_all()
        if closed is not None:
            deliver(DiffusionOutput.failure(planned.request.request_id, ExecutorDeadError(closed)))

    def cancel(self, request_id: str, error: BaseException | None = None) -> bool:
        """End ``request_id`` before it starts or at its next step; False if it is not here."""
        error = error or RequestCancelledError(f"request {request_id} was cancelled")
        with self._cond:
            waiting = next((a for a in self._waiting if a.planned.request.request_id == request_id), None)
            if waiting is not None:
                self._waiting.remove(waiting)
            elif any(run.request_id == request_id for run in self._running):
                self._cancel[request_id] = error
                return True
            else:
                return False
        waiting.deliver(DiffusionOutput.failure(request_id, error))
        return True

    @property
    def load(self) -> tuple[int, int]:
        """(running, waiting) requests."""
        with self._cond:
            return len(self._running), len(self._waiting)

    def close(self, reason: str = "the model runner was closed") -> None:
        """Fail what waits, end what runs at its next step, stop the driver."""
        with self._cond:
            self._closed = reason
            waiting = list(self._waiting)
            self._waiting.clear()
            for run in self._running:
                self._cancel.setdefault(run.request_id, ExecutorDeadError(reason))
            self._cond.notify_all()
        for admission in waiting:
            admission.deliver(
                DiffusionOutput.failure(admission.planned.request.request_id, ExecutorDeadError(reason))
            )

    # ---------------------------------------------------------------- driver

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._running and self._closed is None:
                    self._cond.wait()
                if self._closed is not None and not self._running:
                    self._thread = None
                    return
            try:
                self._admit()
                self._round()
            except BaseException:
                logger.exception("step batching driver failed; failing its requests")
                self._fail_everything()
                raise

    def _fail_everything(self) -> None:
        with self._cond:
            self._closed = "the step batching driver failed (see the log)"
            runs, self._running = self._running, []
            waiting = list(self._waiting)
            self._waiting.clear()
            self._thread = None
        for run in runs:
            if run.pending is not None:
                run.pending.error = ExecutorDeadError(self._closed)
                run.resume()
            self._finish(run)
        for admission in waiting:
            admission.deliver(
                DiffusionOutput.failure(admission.planned.request.request_id, ExecutorDeadError(self._closed))
            )

    def _admit(self) -> None:
        """Start waiting requests, oldest first, while their rows fit (one at least, so none starves)."""
        while True:
            with self._cond:
                if not self._waiting or self._closed is not None:
                    return
                in_flight = sum(run.rows for run in self._running)
                head = self._waiting[0]
                rows = head.planned.num_images * self._rows_per_image[head.guided]
                if self._running and in_flight + rows > self.cap_rows:
                    return
                self._waiting.popleft()
            run = RequestRun(head.planned, head.deliver, head.group, rows, head.on_forward)
            pipeline = self._request_pipeline(head.planned, run)
            self._make_current(run.group)
            run.start(functools.partial(head.body, pipeline))
            if run.finished:
                self._finish(run)
                continue
            if run.pending is not None:
                self._rows_per_image[head.guided] = max(1, run.pending.rows // head.planned.num_images)
            with self._cond:
                self._running.append(run)

    def _request_pipeline(self, planned: PlannedRequest, run: RequestRun) -> Any:
        """A shallow copy of the pipeline with its own scheduler and the denoiser stand-in."""
        shared = self._pipeline_for(planned)
        own = copy.copy(shared)
        own.__dict__["scheduler"] = copy.deepcopy(shared.scheduler)
        own.__dict__[self.denoiser_name] = DenoiserStandIn(getattr(shared, self.denoiser_name), run)
        return own

    def _round(self) -> None:
        """Every parked request makes one step: one forward per group of mergeable calls."""
        with self._cond:
            runs = list(self._running)
            cancels = {
                run.request_id: self._cancel.pop(run.request_id)
                for run in runs
                if run.request_id in self._cancel
            }
        for run in runs:
            if run.request_id in cancels and run.pending is not None:
                run.cancelled = cancels[run.request_id]
                run.pending.error = run.cancelled
                run.resume()
        groups: dict[object, list[RequestRun]] = {}
        for run in runs:
            if not run.finished and run.pending is not None:
                groups.setdefault(run.pending.key, []).append(run)
        for members in groups.values():
            for batch in _split_unequal(members):
                self._forward(batch)
        done = [run for run in runs if run.finished]
        if done:
            with self._cond:
                self._running = [run for run in self._running if not run.finished]
            for run in done:
                self._finish(run)
        self.stats.rounds += 1

    def _forward(self, batch: list[RequestRun]) -> None:
        import torch

        calls = [run.pending for run in batch if run.pending is not None]
        self._make_current(batch[0].group)
        module = getattr(self._pipeline_for(batch[0].planned), self.denoiser_name)
        try:
            arguments = merge_arguments(calls)
            if self.on_forward is not None:
                self.on_forward(arguments)
            started = time.perf_counter()
            with torch.inference_mode():
                output = module(**arguments)
            self.stats.forward_seconds += time.perf_counter() - started
            pieces = split_output(output, [call.rows for call in calls])
        except Exception as exc:  # noqa: BLE001 - find the culprit: each call alone
            if len(batch) > 1:
                logger.warning(
                    "a merged forward of %d requests failed (%s); running them one by one", len(batch), exc
                )
                for run in batch:
                    self._forward([run])
                return
            calls[0].error = exc
            batch[0].resume()
            return
        rows = sum(call.rows for call in calls)
        images = sum(run.planned.num_images for run in batch)
        for run in batch:
            run.shared_rows = max(run.shared_rows, rows)
            run.shared_images = max(run.shared_images, images)
        self.stats.forwards += 1
        self.stats.rows += rows
        self.stats.max_rows = max(self.stats.max_rows, rows)
        for run, call, piece in zip(batch, calls, pieces, strict=True):
            call.result = piece
            self._make_current(run.group)
            run.resume()

    def _make_current(self, group: object) -> None:
        if group != self._current_group:
            self._activate(group)
            self._current_group = group

    def _finish(self, run: RequestRun) -> None:
        assert run.output is not None
        if run.shared_rows:
            run.output.timings["batch_rows"] = float(run.shared_rows)
            run.output.timings["batch_images"] = float(run.shared_images)
        try:
            run.deliver(run.output)
        except Exception:
            logger.exception("delivering the output of %s failed", run.request_id)


def _split_unequal(runs: list[RequestRun]) -> list[list[RequestRun]]:
    """Runs whose keys match but whose shared tensors differ (rare) go into separate forwards."""
    batches: list[list[RequestRun]] = []
    for run in runs:
        assert run.pending is not None
        for batch in batches:
            head = batch[0].pending
            if head is not None and shared_values_equal(head, run.pending):
                batch.append(run)
                break
        else:
            batches.append([run])
    return batches
