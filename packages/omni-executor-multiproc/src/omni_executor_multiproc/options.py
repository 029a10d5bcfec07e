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
    """Replace a worker that died or hung; if False the executor reports dead instead."""
    max_restarts: int | None = field(default=None, metadata=at_least(0))
    """Restarts of one rank within ``restart_window`` before the executor reports dead; ``None``:
    never give up (keep retrying with back-off, like Kubernetes' CrashLoopBackOff)."""
    restart_window: float = field(default=300.0, metadata=above(0))
    """Seconds a restart counts against a rank; a rank healthy this long starts again from zero."""
    restart_backoff: float = field(default=1.0, metadata=above(0))
    """Wait before the 2nd restart within the window; doubled each time after that."""
    max_restart_backoff: float = field(default=60.0, metadata=above(0))
    """Longest wait between restarts of a rank (e.g. while its model folder is missing)."""
    hang_timeout: float = field(default=30.0, metadata=above(0))
    """A worker that sends nothing, not even its 1 s heartbeat, this long is hung: killed and replaced.
    The heartbeat comes from its own thread, which torch's long operations do not block."""
    step_timeout: float = field(default=600.0, metadata=above(0))
    """A worker holding work that finishes no denoising step this long is hung. Generous by default:
    a large model's first step on a busy CPU can take minutes; lower it for GPU deployments."""
    startup_timeout: float = field(default=600.0, metadata=above(0))
    """Seconds to wait for every worker to load the model."""
    image_transport: Literal["auto", "shm", "pipe"] = "auto"
    """How images come back: ``shm`` (POSIX shared memory), ``pipe`` (pickled through the worker's
    pipe) or ``auto``: shared memory for batches of at least 1 MiB, the pipe below (measured in
    benchmarks/bench_multiproc.py: the pipe wins for small batches, shared memory 2-3x for large)."""
    max_inflight_batches: int = field(default=1, metadata=at_least(1))
    """Batches queued inside one worker; 1 keeps batching and least-loaded placement in the parent."""
