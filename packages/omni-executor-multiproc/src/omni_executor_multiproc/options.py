"""Options of the multiprocess executor (``config.executor_options``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MultiProcOptions:
    """Every option has a default that works on a laptop and on a GPU box."""

    num_workers: int | None = None
    """CPU workers when no GPU is used; ``None`` = 1. With GPUs, one worker per GPU (``num_gpus``)."""
    threads_per_worker: int | None = None
    """torch threads per CPU worker; ``None`` = cores // workers (at least 1)."""
    restart_workers: bool = True
    """Replace a worker that died; if False (or past ``max_restarts``) the executor reports dead."""
    max_restarts: int = 3
    """Restarts allowed per worker rank, so a model that crashes on load cannot loop forever."""
    startup_timeout: float = 600.0
    """Seconds to wait for every worker to load the model."""
    image_transport: Literal["auto", "shm", "pipe"] = "auto"
    """How images come back: ``shm`` (POSIX shared memory), ``pipe`` (pickled through the worker's
    pipe) or ``auto``: shared memory for batches of at least 1 MiB, the pipe below (measured in
    benchmarks/bench_multiproc.py: the pipe wins for small batches, shared memory 2-3x for large)."""
    max_inflight_batches: int = 1
    """Batches queued inside one worker; 1 keeps batching and least-loaded placement in the parent."""

    def __post_init__(self) -> None:
        for name in ("num_workers", "threads_per_worker"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.max_inflight_batches < 1:
            raise ValueError(f"max_inflight_batches must be >= 1, got {self.max_inflight_batches}")
        if self.startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be > 0, got {self.startup_timeout}")
