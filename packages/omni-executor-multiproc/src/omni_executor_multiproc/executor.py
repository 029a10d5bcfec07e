"""``MultiProcDiffusionExecutor``: omni's default executor.

Layout follows vLLM's multiprocess executor: one spawned worker per device,
each loading the pipeline once through core's model runner. The parent
keeps the queue: a dispatcher thread hands the oldest request plus its
compatible followers to the least-loaded worker; one reader thread per
worker receives progress, results and RPC answers. A worker whose pipe
closes has died: its in-flight requests fail at once with the worker's
exit signal, and it is restarted (or the executor reports dead).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

from omni_core.errors import ExecutorDeadError, ModelLoadError, RequestCancelledError
from omni_core.executors.base import DiffusionExecutor, ProgressEvent
from omni_core.request import DiffusionOutput, OmniDiffusionRequest
from omni_executor_multiproc.batching import Pending, PendingQueue
from omni_executor_multiproc.handle import WorkerHandle, WorkerStartError
from omni_executor_multiproc.layout import WorkerPlacement, plan_workers
from omni_executor_multiproc.options import MultiProcOptions
from omni_executor_multiproc.transport import unpack_images

WORKER_DIED = "WorkerDiedError"


class MultiProcDiffusionExecutor(DiffusionExecutor):
    """Worker processes, one per GPU or N on the CPU; batched, least-loaded, self-healing."""

    options_class = MultiProcOptions
    options: MultiProcOptions

    def _init_executor(self) -> None:
        self._lock = threading.Condition()
        self._pending = PendingQueue()
        self._workers: dict[int, WorkerHandle] = {}
        self._rpc_calls: dict[tuple[int, int], Future[Any]] = {}
        self._batch_ids = itertools.count()
        self._call_ids = itertools.count()
        self._dead_reason: str | None = None
        self._stopping = False
        self._restart_threads: list[threading.Thread] = []
        self.placements = plan_workers(self.od_config, self.options)
        self._start_all()
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="omni-mp-dispatch", daemon=True)
        self._dispatcher.start()

    # ------------------------------------------------------------------ startup

    def _model_label(self) -> str:
        return self.od_config.model_name_or_path or "<built-in default model>"

    def _start_all(self) -> None:
        handles = [self._spawn(p) for p in self.placements]
        deadline = time.monotonic() + self.options.startup_timeout
        try:
            for handle in handles:
                try:
                    handle.wait_ready(deadline)
                except WorkerStartError as exc:
                    raise ModelLoadError(
                        f"worker {handle.rank} ({handle.placement.device}) could not load model "
                        f"{self._model_label()!r}: {exc}"
                    ) from None
        except BaseException:
            for handle in handles:
                handle.stop()
            raise
        for handle in handles:
            self._workers[handle.rank] = handle
            handle.start_reader(self._on_message, self._on_worker_exit)

    def _spawn(self, placement: WorkerPlacement, restarts: int = 0) -> WorkerHandle:
        return WorkerHandle(placement, self.od_config, self.options.image_transport, restarts)

    # ------------------------------------------------------------------ submit

    def submit(self, request: OmniDiffusionRequest) -> Future[DiffusionOutput]:
        future: Future[DiffusionOutput] = Future()
        with self._lock:
            self._raise_if_unusable()
            self._pending.push(Pending(request, future))
            self._lock.notify_all()
        return future

    def execute_model(self, requests: Sequence[OmniDiffusionRequest]) -> list[DiffusionOutput]:
        futures = [self.submit(request) for request in requests]
        return [future.result() for future in futures]

    def _raise_if_unusable(self) -> None:
        if self._stopping or self.is_shutdown:
            raise ExecutorDeadError("MultiProcDiffusionExecutor is shut down; create a new engine")
        if self._dead_reason is not None:
            raise ExecutorDeadError(f"MultiProcDiffusionExecutor is dead: {self._dead_reason}")

    # ---------------------------------------------------------------- dispatch

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                worker = None
                while not self._stopping:
                    worker = self._least_loaded_worker() if len(self._pending) else None
                    if worker is not None:
                        break
                    self._lock.wait()
                if self._stopping or worker is None:
                    return
                batch = self._pending.take_batch(self.od_config.max_batch_size)
                if not batch:
                    continue
                batch_id = next(self._batch_ids)
                worker.inflight[batch_id] = batch
                dispatched = time.perf_counter()
                for item in batch:
                    item.dispatched = dispatched
            # If the worker died, its reader fails this batch with the exit signal.
            with contextlib.suppress(OSError, ValueError):
                worker.send(("execute", batch_id, [item.request for item in batch]))

    def _least_loaded_worker(self) -> WorkerHandle | None:
        ready = [
            w
            for w in self._workers.values()
            if w.alive and len(w.inflight) < self.options.max_inflight_batches
        ]
        return min(ready, key=lambda w: (w.load, w.rank)) if ready else None

    # ----------------------------------------------------------------- replies

    def _on_message(self, worker: WorkerHandle, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "progress":
            _, _, request_ids, step, total = message
            for request_id in request_ids:
                self._emit_progress(ProgressEvent(request_id, step, total))
        elif kind == "result":
            self._on_result(worker, message[1], message[2], message[3])
        elif kind == "rpc_result":
            _, call_id, ok, value = message
            with self._lock:
                future = self._rpc_calls.pop((worker.rank, call_id), None)
            if future is not None and not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(_rpc_error(worker.rank, value))

    def _on_result(
        self, worker: WorkerHandle, batch_id: int, outputs: list[DiffusionOutput], packed: Any
    ) -> None:
        images = unpack_images(packed)
        with self._lock:
            batch = worker.inflight.pop(batch_id, [])
            self._lock.notify_all()
        now = time.perf_counter()
        for item, output, output_images in zip(batch, outputs, images, strict=True):
            output.output = output_images
            dispatched = item.dispatched if item.dispatched is not None else item.enqueued
            output.timings["queue"] = dispatched - item.enqueued
            output.timings["total"] = now - item.enqueued
            output.timings["worker_rank"] = float(worker.rank)
            item.future.set_result(output)

    # ------------------------------------------------------------------ faults

    def _on_worker_exit(self, worker: WorkerHandle) -> None:
        how = worker.describe_exit()
        with self._lock:
            worker.alive = False
            lost = [item for batch in worker.inflight.values() for item in batch]
            worker.inflight.clear()
            calls = [key for key in self._rpc_calls if key[0] == worker.rank]
            rpc_futures = [self._rpc_calls.pop(key) for key in calls]
            stopping = self._stopping
            restart = (
                not stopping and self.options.restart_workers and worker.restarts < self.options.max_restarts
            )
            reason = f"worker {worker.rank} (pid {worker.pid}, {worker.placement.device}) {how}"
            if not stopping and not restart:
                self._dead_reason = reason + (
                    "; worker restarts are disabled"
                    if not self.options.restart_workers
                    else f"; it was already restarted {worker.restarts} time(s)"
                )
            self._lock.notify_all()
        message = f"{reason} while running this request" if not stopping else f"{reason} during shutdown"
        for item in lost:
            item.future.set_result(
                DiffusionOutput.failure(item.request.request_id, message, error_type=WORKER_DIED)
            )
        for future in rpc_futures:
            if not future.done():
                future.set_exception(RuntimeError(reason))
        if restart:
            thread = threading.Thread(
                target=self._restart, args=(worker,), name=f"omni-restart-{worker.rank}", daemon=True
            )
            self._restart_threads.append(thread)
            thread.start()
        elif not stopping:
            self._fail_pending(ExecutorDeadError(f"MultiProcDiffusionExecutor is dead: {self._dead_reason}"))

    def _restart(self, old: WorkerHandle) -> None:
        old.stop()
        try:
            handle = self._spawn(old.placement, restarts=old.restarts + 1)
            handle.wait_ready(time.monotonic() + self.options.startup_timeout)
        except Exception as exc:  # noqa: BLE001 - a failed restart makes the executor dead, loudly
            with self._lock:
                self._dead_reason = f"worker {old.rank} died and could not be restarted: {exc}"
                self._lock.notify_all()
            self._fail_pending(ExecutorDeadError(self._dead_reason))
            return
        with self._lock:
            if self._stopping:
                handle.stop()
                return
            self._workers[handle.rank] = handle
            handle.start_reader(self._on_message, self._on_worker_exit)
            self._lock.notify_all()

    def _fail_pending(self, error: BaseException) -> None:
        with self._lock:
            items = self._pending.drain()
        for item in items:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(error)

    # ------------------------------------------------------------------- abort

    def abort(self, request_id: str) -> bool:
        """Cancel a queued request, or stop a running one at its worker's next denoising step."""
        with self._lock:
            queued = self._pending.remove(request_id)
            worker = None
            if queued is None:
                worker = next(
                    (
                        w
                        for w in self._workers.values()
                        for batch in w.inflight.values()
                        if any(item.request.request_id == request_id for item in batch)
                    ),
                    None,
                )
        if queued is not None:
            if queued.future.set_running_or_notify_cancel():
                error = RequestCancelledError(f"request {request_id} was aborted before it ran")
                queued.future.set_result(DiffusionOutput.failure(request_id, error))
            return True
        if worker is None:
            return False
        try:
            worker.send(("abort", request_id))
        except (OSError, ValueError):
            return False
        return True

    # --------------------------------------------------------------------- rpc

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        with self._lock:
            self._raise_if_unusable()
            workers = sorted(self._workers.values(), key=lambda w: w.rank)
            if not all(w.alive for w in workers):
                raise ExecutorDeadError("collective_rpc: a worker is restarting; try again")
            call_id = next(self._call_ids)
            futures: list[Future[Any]] = []
            for worker in workers:
                future: Future[Any] = Future()
                self._rpc_calls[(worker.rank, call_id)] = future
                futures.append(future)
        for worker in workers:
            worker.send(("rpc", call_id, method, tuple(args), dict(kwargs or {})))
        deadline = None if timeout is None else time.monotonic() + timeout
        results = []
        try:
            for worker, future in zip(workers, futures, strict=True):
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    results.append(future.result(timeout=remaining))
                except FutureTimeoutError:
                    raise TimeoutError(
                        f"collective_rpc({method!r}): no answer from worker {worker.rank} within {timeout}s"
                    ) from None
        finally:
            with self._lock:
                for worker in workers:
                    self._rpc_calls.pop((worker.rank, call_id), None)
        return results

    # ------------------------------------------------------------ health, stop

    @property
    def workers(self) -> list[WorkerHandle]:
        """Live worker handles in rank order (for tests and diagnostics)."""
        with self._lock:
            return sorted(self._workers.values(), key=lambda w: w.rank)

    def check_health(self) -> None:
        with self._lock:
            self._raise_if_unusable()
            down = [w.rank for w in self._workers.values() if not w.process.is_alive()]
        if down:
            raise ExecutorDeadError(f"worker(s) {down} are down (restarting)")

    def shutdown(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            workers = list(self._workers.values())
        dispatcher = getattr(self, "_dispatcher", None)
        if dispatcher is not None:
            dispatcher.join()
        for thread in list(getattr(self, "_restart_threads", [])):
            thread.join()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.stop()
        self._fail_pending(ExecutorDeadError("executor shut down before the request ran"))


def _rpc_error(rank: int, detail: str) -> Exception:
    if detail.startswith("AttributeError"):
        return AttributeError(f"collective_rpc: worker {rank}: {detail}")
    return RuntimeError(f"collective_rpc: worker {rank}: {detail}")
