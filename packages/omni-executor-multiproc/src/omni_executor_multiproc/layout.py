"""Which workers to start: one per GPU, or N CPU workers with T threads each."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omni_core import OmniDiffusionConfig
from omni_executor_multiproc.options import MultiProcOptions


@dataclass(frozen=True)
class WorkerPlacement:
    rank: int
    device: str
    threads: int | None


def visible_cuda_devices() -> int:
    """CUDA devices torch can see; avoids importing torch on machines with no NVIDIA driver."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return 0
    if not Path("/proc/driver/nvidia").exists() and "CUDA_VISIBLE_DEVICES" not in os.environ:
        return 0
    import torch

    return int(torch.cuda.device_count())


def plan_workers(
    config: OmniDiffusionConfig, options: MultiProcOptions, *, cuda_devices: int | None = None
) -> list[WorkerPlacement]:
    """Placement for each worker rank; raises ``ValueError`` naming the setting to change."""
    wants_cpu = config.device is not None and config.device.startswith("cpu")
    if wants_cpu or config.num_gpus == 0:
        available = 0
    else:
        available = visible_cuda_devices() if cuda_devices is None else cuda_devices
    if config.device is not None and config.device.startswith("cuda") and available == 0:
        raise ValueError(f"device={config.device!r} but no CUDA device is visible; use device='cpu'")
    if available:
        if config.num_gpus > available:
            raise ValueError(
                f"num_gpus={config.num_gpus} but only {available} CUDA device(s) are visible; "
                f"lower num_gpus or set CUDA_VISIBLE_DEVICES"
            )
        return [WorkerPlacement(rank, f"cuda:{rank}", None) for rank in range(config.num_gpus)]
    count = options.num_workers or 1
    threads = options.threads_per_worker or max(1, (os.cpu_count() or 1) // count)
    return [WorkerPlacement(rank, "cpu", threads) for rank in range(count)]
