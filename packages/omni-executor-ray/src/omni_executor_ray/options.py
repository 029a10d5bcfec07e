"""Options of the Ray executor (``config.executor_options``), with Ray's own names where Ray has them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from omni_core.executors import above, at_least


@dataclass(frozen=True)
class RayOptions:
    """Every default works on a laptop (a local Ray) and on a GPU cluster."""

    ray_address: str | None = None
    """``None``: start a local Ray (and stop it at shutdown); ``"auto"`` or ``"ray://host:10001"``:
    join an existing cluster."""
    num_workers: int | None = field(default=None, metadata=at_least(1))
    """Actors; ``None``: ``config.num_gpus`` when the cluster has GPUs, else 1."""
    num_gpus_per_worker: float | None = field(default=None, metadata=at_least(0))
    """GPUs each actor reserves; ``None``: 1 when the cluster has GPUs, else 0 (CPU actors)."""
    num_cpus_per_worker: float = field(default=1.0, metadata=at_least(0))
    threads_per_worker: int | None = field(default=None, metadata=at_least(1))
    """torch threads in each CPU actor; ``None``: ``num_cpus_per_worker`` rounded up."""
    placement_strategy: Literal["SPREAD", "PACK", "STRICT_SPREAD", "STRICT_PACK"] = "SPREAD"
    """How the placement group spreads actors over nodes."""
    runtime_env: dict[str, Any] | None = None
    """Handed to Ray as the actors' ``runtime_env`` (pip packages, env vars, working_dir)."""
    max_restarts: int = field(default=3, metadata=at_least(0))
    """Ray restarts a dead actor this many times (its in-flight requests fail; nothing is re-run)."""
    namespace: str = "omni"
    """Ray namespace of the actors."""
    startup_timeout: float = field(default=600.0, metadata=above(0))
    """Seconds for the placement group and every actor to be ready (model loaded)."""
    progress_interval: float = field(default=0.25, metadata=above(0))
    """Seconds between polls of busy actors for denoising-step progress."""
