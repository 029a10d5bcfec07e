"""``MultiProcDiffusionExecutor``: omni's default executor.

Layout follows vLLM's multiprocess executor: one worker process per device,
each loading the pipeline once through core's model runner. The queue,
batching, placement, admission and abort of queued requests are core's
queued-executor base; this module supplies the slots (worker processes)
and how a batch runs on one (sent down its pipe). One reader thread per
worker receives progress, results and RPC answers. A worker whose pipe
closes has died: its in-flight requests fail at once with
:class:`~omni_core.errors.WorkerDiedError` naming its exit signal, and it is
restarted. A watchdog declares a worker hung when it sends nothing (not
even its heartbeat) for ``hang_timeout`` or makes no denoising step for
``step_timeout`` while it holds work; a hung worker is killed, which the
reader handles like any death. Restarts back off (Kubernetes style) instead
of counting against a lifetime cap: a worker whose model cannot load is
retried while ``check_health`` says why, and serving resumes by itself when
the model is back.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Any

from omni_core import ExecutorDeadError, ModelLoadError, WorkerDiedError
from omni_core.executors import Batch, ProgressEvent, QueuedDiffusionExecutor
from omni_executor_multiproc.handle import WorkerHandle, WorkerStartError
from omni_executor_multiproc.layout import WorkerPlacement, plan_workers
from omni_executor_multiproc.options import MultiProcOptions
from omni_executor_multiproc.transport import unpack_images

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    """A rank being restarted: what its last attempt said, and whether that attempt failed.

    ``failed`` is what fast failure decides on: a routine restart after a crash takes
    seconds and requests wait for it; once a restart has failed they should not.
    """

    reason: str
    failed: bool = False


class MultiProcDiffusionExecutor(QueuedDiffusionExecutor[WorkerHandle]):
    """Worker processes, one per GPU or N on the CPU; batched, least-loaded, self-healing."""

    options_class = MultiProcOptions
    options: MultiProcOptions
    requeue_unstarted = True  # a worker's step reports come down the same pipe as its results

    # ------------------------------------------------------------------ slots

    def _start_slots(self) -> None:
        self.slot_capacity = self.options.max_inflight_batches
        self._workers: dict[int, WorkerHandle] = {}
        self._rpc_calls: dict[tuple[int, int], Future[Any]] = {}
        self._call_ids = itertools.count()
        self._restart_threads: list[threading.Thread] = []
        self._restart_history: dict[int, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._recovering: dict[int, Recovery] = {}
        """Ranks being restarted, and what the last attempt said (for health and fast failure)."""
        self._stop_event = threading.Event()
        self.placements = plan_workers(self.od_config, self.options)
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
        threading.Thread(target=self._watch_for_hangs, name="omni-mp-watchdog", daemon=True).start()

    def _model_label(self) -> str:
        return self.od_config.model_name_or_path or "<built-in default model>"

    def _spawn(self, placement: WorkerPlacement, restarts: int = 0) -> WorkerHandle:
        return WorkerHandle(
            placement,
            self.od_config,
            self.options.image_transport,
            restarts,
            heartbeat_interval=min(1.0, self.options.hang_timeout / 4),
        )

    def _ready_slots(self) -> Sequence[WorkerHandle]:
        return [w for _, w in sorted(self._workers.items()) if w.alive]

    def _slot_window(self, slot: WorkerHandle) -> int | None:
        batching = slot.info.get("batching", {})
        return batching.get("cap_rows") if batching.get("mode") == "step" else None

    def _launch(self, batch: Batch[WorkerHandle]) -> None:
        batch.slot.last_progress = time.monotonic()
        # If the worker died meanwhile, its reader fails this batch with the exit signal.
        with contextlib.suppress(OSError, ValueError):
            batch.slot.send(("execute", batch.batch_id, batch.requests))

    def _abort_running(self, batch: Batch[WorkerHandle], request_id: str) -> bool:
        try:
            batch.slot.send(("abort", request_id))
        except (OSError, ValueError):
            return False
        return True

    # ----------------------------------------------------------------- replies

    def _on_message(self, worker: WorkerHandle, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "progress":
            _, _, request_ids, step, total, previews = message
            if step == 1:
                self._note_started(request_ids)
            for request_id in request_ids:
                self._emit_progress(ProgressEvent(request_id, step, total, previews.get(request_id)))
        elif kind in ("result", "outputs"):
            _, batch_id, outputs, packed = message
            for output, images in zip(outputs, unpack_images(packed), strict=True):
                output.output = images
                output.timings["worker_rank"] = float(worker.rank)
            if kind == "result":
                self._complete_batch(batch_id, outputs)
            else:  # a step-mode worker's requests, as each finished
                self._complete_outputs(batch_id, outputs)
        elif kind == "rpc_result":
            _, call_id, ok, value = message
            with self._lock:
                future = self._rpc_calls.pop((worker.rank, call_id), None)
            if future is not None and not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(_rpc_error(worker.rank, value))

    # ------------------------------------------------------------------ faults

    def _on_worker_exit(self, worker: WorkerHandle) -> None:
        how = worker.describe_exit()
        reason = f"worker {worker.rank} (pid {worker.pid}, {worker.placement.device}) {how}"
        with self._lock:
            worker.alive = False
            rpc_futures = [self._rpc_calls.pop(key) for key in list(self._rpc_calls) if key[0] == worker.rank]
            stopping = self._stopping
            restart = not stopping and self.options.restart_workers
        when = "while running this request" if not stopping else "during shutdown"
        self._fail_slot(worker, WorkerDiedError(f"{reason} {when}"))
        for future in rpc_futures:
            if not future.done():
                future.set_exception(WorkerDiedError(reason))
        if restart:
            with self._lock:
                self._recovering[worker.rank] = Recovery(f"worker {worker.rank} is restarting after it {how}")
            thread = threading.Thread(
                target=self._restart, args=(worker,), name=f"omni-restart-{worker.rank}", daemon=True
            )
            self._restart_threads.append(thread)
            thread.start()
        elif not stopping:
            self._mark_dead(f"{reason}; worker restarts are disabled")

    def _restart(self, old: WorkerHandle) -> None:
        """Replace ``old``, backing off while replacements fail (e.g. the model folder is gone)."""
        old.stop()
        rank = old.rank
        history = self._restart_history[rank]
        while not self._stop_event.is_set():
            now = time.monotonic()
            while history and now - history[0] > self.options.restart_window:
                history.popleft()  # a rank that stayed healthy a whole window starts from zero
            limit = self.options.max_restarts
            if limit is not None and len(history) >= limit:
                self._mark_dead(
                    f"worker {rank} needed {len(history)} restarts within {self.options.restart_window:g} s "
                    f"(max_restarts={limit}); last: {self._last_recovery_reason(rank)}"
                )
                return
            delay = (
                0.0
                if not history
                else min(
                    self.options.max_restart_backoff, self.options.restart_backoff * 2 ** (len(history) - 1)
                )
            )
            if self._stop_event.wait(delay):
                return
            history.append(time.monotonic())
            try:
                handle = self._spawn(old.placement, restarts=old.restarts + 1)
                handle.wait_ready(time.monotonic() + self.options.startup_timeout)
            except Exception as exc:  # noqa: BLE001 - reported by health, retried with back-off
                reason = f"worker {rank} could not be restarted ({len(history)} tries recently): {exc}"
                logger.warning("%s", reason)
                with self._lock:
                    self._recovering[rank] = Recovery(reason, failed=True)
                    nothing_ready = not self._ready_slots()
                if nothing_ready:
                    self._fail_queued(ExecutorDeadError(reason, retryable=True))
                continue
            with self._lock:
                if self._stopping:
                    handle.stop()
                    return
                self._workers[rank] = handle
                self._recovering.pop(rank, None)
                handle.start_reader(self._on_message, self._on_worker_exit)
                self._lock.notify_all()
            return

    def _unavailable_reason(self) -> str | None:
        # Fail fast only once a restart has failed and nothing else can serve: a routine
        # restart after a crash takes seconds, and requests simply wait for it.
        if self._ready_slots() or not any(r.failed for r in self._recovering.values()):
            return None
        return "; ".join(r.reason for r in self._recovering.values())

    def _last_recovery_reason(self, rank: int) -> str:
        with self._lock:
            recovery = self._recovering.get(rank)
        return recovery.reason if recovery is not None else "unknown"

    # ---------------------------------------------------------------- watchdog

    def _watch_for_hangs(self) -> None:
        interval = min(1.0, self.options.hang_timeout / 4)
        while not self._stop_event.wait(interval):
            now = time.monotonic()
            with self._lock:
                workers = [w for w in self._workers.values() if w.alive and w.hung is None]
                busy = {id(b.slot) for b in self._inflight.values() if b.launched}
            for worker in workers:
                silent = now - worker.last_seen
                stalled = now - worker.last_progress
                if silent > self.options.hang_timeout:
                    worker.kill_hung(f"no message, not even a heartbeat, for {silent:.0f} s (hang_timeout)")
                elif id(worker) in busy and stalled > self.options.step_timeout:
                    worker.kill_hung(f"no denoising step for {stalled:.0f} s (step_timeout)")

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

    def _check_slots(self) -> None:
        with self._lock:
            recovering = dict(self._recovering)
            down = [w.rank for w in self._workers.values() if not w.is_alive() or w.hung is not None]
        if recovering:
            raise ExecutorDeadError("; ".join(r.reason for r in recovering.values()), retryable=True)
        if down:
            raise ExecutorDeadError(f"worker(s) {down} are down (restarting)", retryable=True)

    def _stop_slots(self) -> None:
        stop = getattr(self, "_stop_event", None)
        if stop is not None:
            stop.set()
        for thread in list(getattr(self, "_restart_threads", [])):
            thread.join()
        with self._lock:
            workers = list(getattr(self, "_workers", {}).values())
        for worker in workers:
            worker.stop()


def _rpc_error(rank: int, detail: str) -> Exception:
    if detail.startswith("AttributeError"):
        return AttributeError(f"collective_rpc: worker {rank}: {detail}")
    return RuntimeError(f"collective_rpc: worker {rank}: {detail}")
