"""``"inproc"``: run the model in the caller's process.

The simplest executor and the reference the others are compared with: no
process boundary, no serialization. Every request, from ``submit`` or
``execute_model``, goes through one dispatcher thread that drains whatever
is queued into one runner call (core's queued-executor base, with the
runner as its one slot): concurrent callers are batched exactly as worker
processes batch them, and torch only ever runs on one thread at a time. In
step mode the dispatcher hands requests to the runner's step loop, which
admits them at its next denoising step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omni_core.errors import ExecutorDeadError
from omni_core.executors.base import ProgressEvent
from omni_core.executors.options import at_least
from omni_core.executors.queued import Batch, QueuedDiffusionExecutor
from omni_core.executors.runner_host import RunnerHost
from omni_core.previews import Preview
from omni_core.runner.model_runner import DiffusionModelRunner


@dataclass(frozen=True)
class InProcOptions:
    """Options of the in-process executor."""

    torch_threads: int | None = field(default=None, metadata=at_least(1))
    """``torch.set_num_threads`` for this process; ``None`` leaves torch's default."""


class InProcDiffusionExecutor(QueuedDiffusionExecutor[DiffusionModelRunner]):
    """Runs requests through one :class:`DiffusionModelRunner` in this process: one slot."""

    options_class = InProcOptions

    def _start_slots(self) -> None:
        self.host = RunnerHost(self.od_config, threads=self.options.torch_threads)
        self.runner = self.host.runner

    def _ready_slots(self) -> Sequence[DiffusionModelRunner]:
        return [self.runner] if self.runner.is_loaded else []

    def _slot_window(self, slot: DiffusionModelRunner) -> int | None:
        return slot.window

    def _launch(self, batch: Batch[DiffusionModelRunner]) -> None:
        if batch.slot.window is not None:
            # Step mode: the runner's step loop (its one torch thread) admits these at its next step.
            batch_id = batch.batch_id
            batch.slot.start(
                batch.requests,
                lambda output: self._complete_outputs(batch_id, [output]),
                on_step=self._report_steps,
            )
            return
        # Request mode, on the dispatcher thread, so torch only ever runs on one thread: calling it from
        # several gives each its own OpenMP pool, and on a small machine the pools' spinning
        # threads halve throughput (measured: 44 -> 120 ms/request).
        outputs = batch.slot.execute(batch.requests, on_step=self._report_steps)
        self._complete_batch(batch.batch_id, outputs)

    def _report_steps(
        self, request_ids: Sequence[str], step: int, total: int, previews: Mapping[str, Preview]
    ) -> None:
        for request_id in request_ids:
            self._emit_progress(ProgressEvent(request_id, step, total, previews.get(request_id)))

    def _abort_running(self, batch: Batch[DiffusionModelRunner], request_id: str) -> bool:
        return batch.slot.cancel(request_id)

    def collective_rpc(
        self,
        method: str,
        timeout: float | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> list[Any]:
        return [self.host.rpc(method, args, kwargs)]

    def _check_slots(self) -> None:
        if not self.runner.is_loaded:
            raise ExecutorDeadError("InProcDiffusionExecutor has no model loaded")

    def _stop_slots(self) -> None:
        if hasattr(self, "runner"):
            self.runner.close()
