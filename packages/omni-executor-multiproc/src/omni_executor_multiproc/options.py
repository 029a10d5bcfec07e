"""Options of the multiprocess executor (``config.executor_options``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from omni_core.executors import above, at_least


@dataclass(frozen=True)
class MultiProcOptions:
    """Every option has a default that works on a laptop and on a GPU box."""

    num_workers: int | None = field(default=None, metadata=at_least(1))
    """CPU workers when no GPU is used; ``None`` = 1. With GPUs, one worker per GPU (``num_gpus``)."""
    threads_per_worker: int | None = field(default=None, metadata=at_least(1))
    """torch threads per CPU worker; ``None`` = cores // workers (at least 1)."""
    restart_workers: bool = True
    """Replace a worker that died; if False (or past ``max_restarts``) the executor reports dead."""
    max_restarts: int = field(default=3, metadata=at_least(0))
    """Restarts allowed per worker rank, so a model that crashes on load cannot loop forever."""
    startup_timeout: float = field(default=600.0, metadata=above(0))
    """Seconds to wait for every worker to load the model."""
    image_transport: Literal["auto", "shm", "pipe"] = "auto"
    """How images come back: ``shm`` (POSIX shared memory), ``pipe`` (pickled through the worker's
    pipe) or ``auto``: shared memory for batches of at least 1 MiB, the pipe below (measured in
    benchmarks/bench_multiproc.py: the pipe wins for small batches, shared memory 2-3x for large)."""
    max_inflight_batches: int = field(default=1, metadata=at_least(1))
    """Batches queued inside one worker; 1 keeps batching and least-loaded placement in the parent."""
