"""``RayDiffusionExecutor``: omni's worker layer on a Ray cluster.

One actor per GPU (``num_gpus_per_worker=1``), or ``num_workers`` CPU actors,
held by a placement group (``SPREAD`` over nodes by default). Core's
queued-executor base owns the queue, batching, admission, placement on the
least-loaded actor and abort of queued requests; this module supplies the
slots (actors) and how a batch runs on one (a remote ``execute`` whose result
comes back through Ray's object store as arrays).

Faults: an actor that dies fails the requests it held with
:class:`~omni_core.errors.WorkerDiedError` naming its node and actor, as soon
as Ray reports the death; Ray restarts it (``max_restarts``) while the queue
goes to the others. Nothing is re-run (Ray's ``max_task_retries=0``): a
request may have reached the model before the actor died.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omni_core.executors import (
    Batch,
    ExecutorDeadError,
    ModelError,
    ModelLoadError,
    ProgressEvent,
    QueuedDiffusionExecutor,
    WorkerDiedError,
    worker_config_fields,
)
from omni_executor_ray.actor import DiffusionActor
from omni_executor_ray.options import RayOptions

logger = logging.getLogger(__name__)

ACTOR_CONCURRENCY = 16
"""Calls one actor serves at once: execute calls (several in step mode, where they join one
step loop), plus progress/abort/rpc while they run."""
STEP_WINDOW = ACTOR_CONCURRENCY - 4
"""Step mode: requests in flight on one actor at most (each holds an actor thread while it runs)."""
WAIT_SECONDS = 0.2
REVIVE_POLL_SECONDS = 1.0


@dataclass(eq=False)
class ActorSlot:
    """One actor and what is known about it."""

    rank: int
    handle: Any
    info: dict[str, Any] = field(default_factory=dict)
    ready: bool = True
    down_reason: str | None = None
    gone: bool = False
    """Ray will not restart this actor again (its ``max_restarts`` are spent, or it was killed)."""

    def describe(self) -> str:
        node = str(self.info.get("node_id", "?"))[:12]
        actor = str(self.info.get("actor_id", "?"))[:12]
        return f"Ray actor {self.rank} (actor {actor}, node {node}, pid {self.info.get('pid', '?')})"


class RayDiffusionExecutor(QueuedDiffusionExecutor[ActorSlot]):
    """Actors on a Ray cluster, one per GPU or N on CPUs; batched, least-loaded, restarted by Ray."""

    options_class = RayOptions
    options: RayOptions

    # ------------------------------------------------------------------ slots

    def _start_slots(self) -> None:
        import ray

        options = self.options
        self._slots: list[ActorSlot] = []
        self._refs: dict[Any, Batch[ActorSlot]] = {}
        self._refs_changed = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started_ray = False
        self._placement_group: Any = None
        if not ray.is_initialized():
            if options.ray_address is None:
                ray.init(namespace=options.namespace, include_dashboard=False, logging_level=logging.WARNING)
                self._started_ray = True
            else:
                ray.init(
                    address=options.ray_address, namespace=options.namespace, logging_level=logging.WARNING
                )
        try:
            self._place_actors(ray)
        except BaseException:
            self._stop_slots()
            raise
        for target, name in ((self._wait_for_results, "results"), (self._poll_progress, "progress")):
            self._start_thread(target, f"omni-ray-{name}")

    def _start_thread(self, target: Any, name: str, *args: Any) -> None:
        """A helper thread that shutdown joins: none may touch Ray after ``ray.shutdown()``
        (Ray's core worker then ends the whole process)."""
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _place_actors(self, ray: Any) -> None:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        options = self.options
        cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        gpus = options.num_gpus_per_worker
        if gpus is None:
            gpus = 1.0 if cluster_gpus >= 1 else 0.0
        count = options.num_workers or (max(1, self.od_config.num_gpus) if gpus else 1)
        bundle: dict[str, float] = {"CPU": options.num_cpus_per_worker}
        if gpus:
            bundle["GPU"] = gpus
        self._placement_group = placement_group(
            [dict(bundle) for _ in range(count)], strategy=options.placement_strategy
        )
        try:
            ray.get(self._placement_group.ready(), timeout=options.startup_timeout)
        except ray.exceptions.GetTimeoutError:
            raise ModelLoadError(
                f"Ray could not place {count} worker(s) of {bundle} ({options.placement_strategy}) within "
                f"{options.startup_timeout:g} s; the cluster has {ray.cluster_resources()}"
            ) from None
        threads = options.threads_per_worker or max(1, math.ceil(options.num_cpus_per_worker))
        actor_class = ray.remote(DiffusionActor)
        fields = worker_config_fields(self.od_config)
        handles = [
            actor_class.options(
                num_cpus=options.num_cpus_per_worker,
                num_gpus=gpus,
                max_restarts=options.max_restarts,
                max_task_retries=0,  # at most once: a request may have run before the actor died
                max_concurrency=ACTOR_CONCURRENCY,
                runtime_env=options.runtime_env,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self._placement_group, placement_group_bundle_index=rank
                ),
            ).remote(fields, rank, None if gpus else threads)
            for rank in range(count)
        ]
        self._slots = [ActorSlot(rank, handle) for rank, handle in enumerate(handles)]
        try:
            infos = ray.get([h.ready.remote() for h in handles], timeout=options.startup_timeout)
        except ray.exceptions.GetTimeoutError:
            raise ModelLoadError(
                f"Ray actors did not load {self._model_label()!r} within {options.startup_timeout:g} s"
            ) from None
        except ray.exceptions.RayError as exc:
            raise ModelLoadError(
                f"a Ray actor could not load {self._model_label()!r}: {_ray_cause(exc)}"
            ) from None
        for slot, info in zip(self._slots, infos, strict=True):
            slot.info = info

    def _model_label(self) -> str:
        return self.od_config.model_name_or_path or "<built-in default model>"

    def _ready_slots(self) -> Sequence[ActorSlot]:
        return [slot for slot in self._slots if slot.ready]

    def _slot_window(self, slot: ActorSlot) -> int | None:
        batching = slot.info.get("batching", {}) if isinstance(slot.info, dict) else {}
        if batching.get("mode") != "step":
            return None
        return max(1, min(int(batching["cap_rows"]), STEP_WINDOW))

    def _launch(self, batch: Batch[ActorSlot]) -> None:
        ref = batch.slot.handle.execute.remote(batch.requests)
        with self._refs_changed:
            self._refs[ref] = batch
            self._refs_changed.notify()

    def _abort_running(self, batch: Batch[ActorSlot], request_id: str) -> bool:
        batch.slot.handle.abort.remote(request_id)  # answered between the actor's denoising steps
        return True

    # -------------------------------------------------------------- results

    def _wait_for_results(self) -> None:
        import ray

        while not self._stop.is_set():
            with self._refs_changed:
                if not self._refs:
                    self._refs_changed.wait(WAIT_SECONDS)
                    continue
                refs = list(self._refs)
            done, _ = ray.wait(refs, num_returns=1, timeout=WAIT_SECONDS)
            for ref in done:
                with self._refs_changed:
                    batch = self._refs.pop(ref, None)
                if batch is not None:
                    self._deliver(ray, ref, batch)

    def _deliver(self, ray: Any, ref: Any, batch: Batch[ActorSlot]) -> None:
        try:
            outputs = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            self._on_actor_death(batch.slot, exc)
            return
        except ray.exceptions.RayError as exc:  # the call itself failed (e.g. an object was lost)
            self._fail_batch(batch.batch_id, ModelError(f"{batch.slot.describe()}: {_ray_cause(exc)}"))
            return
        for output in outputs:
            output.timings["worker_rank"] = float(batch.slot.rank)
        # The batch's last steps (and previews) before its results: a caller that stops
        # listening when its result arrives misses none of them.
        self._drain_progress(ray, batch.slot)
        self._complete_batch(batch.batch_id, outputs)

    def _on_actor_death(self, slot: ActorSlot, exc: BaseException) -> None:
        with self._lock:
            was_ready, slot.ready = slot.ready, False
            slot.down_reason = f"{slot.describe()} died: {_ray_cause(exc)}"
            self._lock.notify_all()
        self._fail_slot(slot, WorkerDiedError(f"{slot.down_reason}; the request was not re-run"))
        if was_ready:
            threading.Thread(
                target=self._revive, args=(slot,), name=f"omni-ray-revive-{slot.rank}", daemon=True
            ).start()

    def _revive(self, slot: ActorSlot) -> None:
        """Wait for Ray to restart the actor (on this node or another); give up when Ray does."""
        import ray

        ref = None
        deadline = time.monotonic() + self.options.startup_timeout
        while not self._stop.is_set():
            try:
                ref = ref or slot.handle.ready.remote()
                info = ray.get(ref, timeout=REVIVE_POLL_SECONDS)
            except ray.exceptions.GetTimeoutError:
                if time.monotonic() > deadline:
                    ref, deadline = None, time.monotonic() + self.options.startup_timeout
                continue
            except ray.exceptions.ActorUnavailableError:  # Ray says: for the moment (restarting)
                ref = None
                self._stop.wait(REVIVE_POLL_SECONDS)
                continue
            except ray.exceptions.RayActorError as exc:  # ActorDiedError: Ray will not restart it
                with self._lock:
                    slot.down_reason = f"{slot.describe()} is gone for good: {_ray_cause(exc)}"
                    slot.gone = True
                    all_gone = all(s.gone for s in self._slots)
                if all_gone:
                    self._mark_dead("every Ray actor is gone (max_restarts exhausted)")
                return
            with self._lock:
                slot.info, slot.ready, slot.down_reason = info, True, None
                self._lock.notify_all()
            logger.warning("%s is back", slot.describe())
            return

    def _poll_progress(self) -> None:
        import ray

        while not self._stop.wait(self.options.progress_interval):
            with self._refs_changed:
                busy = {id(batch.slot): batch.slot for batch in self._refs.values()}
            for slot in busy.values():
                self._drain_progress(ray, slot)

    def _drain_progress(self, ray: Any, slot: ActorSlot) -> None:
        """Emit the steps ``slot``'s actor finished since it was last asked."""
        try:
            events = ray.get(slot.handle.progress.remote(), timeout=5)
        except ray.exceptions.RayError:
            return  # a dead actor is reported by its result
        for request_ids, step, total, previews in events:
            for request_id in request_ids:
                self._emit_progress(ProgressEvent(request_id, step, total, previews.get(request_id)))

    # --------------------------------------------------------------- rpc, health

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        import ray

        with self._lock:
            self._raise_if_unusable()
            slots = sorted(self._slots, key=lambda s: s.rank)
        refs = [slot.handle.rpc.remote(method, tuple(args), dict(kwargs or {})) for slot in slots]
        try:
            return list(ray.get(refs, timeout=timeout))
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(
                f"collective_rpc({method!r}): not every Ray actor answered within {timeout}s"
            ) from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, AttributeError):
                raise AttributeError(f"collective_rpc: {cause}") from None
            raise

    @property
    def actor_infos(self) -> list[dict[str, Any]]:
        """What each actor reported when it became ready (rank, node_id, node_ip, pid, device...)."""
        with self._lock:
            return [dict(slot.info) for slot in sorted(self._slots, key=lambda s: s.rank)]

    def rank_running(self, request_id: str) -> int | None:
        """The rank of the actor holding ``request_id``, if one does."""
        with self._lock:
            return next((b.slot.rank for b in self._inflight.values() if b.holds(request_id)), None)

    @property
    def workers_ready(self) -> tuple[int, int]:
        """(actors ready, actors in all)."""
        with self._lock:
            return sum(slot.ready for slot in self._slots), len(self._slots)

    def _check_slots(self) -> None:
        with self._lock:
            down = [slot.down_reason for slot in self._slots if not slot.ready]
            total = len(self._slots)
        if len(down) == total:
            raise ExecutorDeadError(
                f"no Ray actor is ready ({total} down): {'; '.join(map(str, down))}", retryable=True
            )
        if down:
            # Degraded, not down: the others serve. Say how many are left.
            logger.warning(
                "%d of %d Ray actors ready; down: %s", total - len(down), total, "; ".join(map(str, down))
            )

    def _stop_slots(self) -> None:
        import ray

        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
        for thread in getattr(self, "_threads", []):
            if thread is not threading.current_thread():
                thread.join()
        for slot in getattr(self, "_slots", []):
            try:
                ray.kill(slot.handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                logger.debug("actor %d already gone", slot.rank)
        if getattr(self, "_placement_group", None) is not None:
            from ray.util.placement_group import remove_placement_group

            try:
                remove_placement_group(self._placement_group)
            except Exception:  # noqa: BLE001 - the cluster may be gone already
                logger.debug("placement group already gone")
        if getattr(self, "_started_ray", False):
            ray.shutdown()


def _ray_cause(exc: BaseException) -> str:
    """A Ray error in one line: its cause's type and message, without Ray's banner."""
    text = str(exc).strip().splitlines()
    first = next((line for line in text if line.strip()), type(exc).__name__)
    return f"{type(exc).__name__}: {first[:500]}"
