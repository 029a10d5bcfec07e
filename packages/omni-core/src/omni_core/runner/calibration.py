"""Measuring the step-batching cap at load instead of guessing it.

One denoiser forward is recorded from a real request at the pipeline's default
size, then replayed at 1, 2, 4 ... times its rows. The batch keeps growing while
doubling the rows still adds at least :data:`MIN_GAIN` throughput (rows per
second), never past ``max_batch_size`` rows, and (on CUDA) never past what the
device's free memory holds at the measured bytes per row. Where another row
adds nothing (a saturated device), a bigger batch only adds latency, and the
best cap differs between machines (vllm-omni found a fixed 8 regressing on
Ascend), so it is measured where it runs.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omni_core.runner.denoiser_calls import DenoiserCall, merge_arguments

logger = logging.getLogger(__name__)

MIN_GAIN = 1.10
"""Doubling the rows must add this much throughput to be worth the added latency."""
REPEATS = 3
MAX_FORWARD_SECONDS = 2.0
"""A forward slower than this stops the measurement (a big model on a CPU)."""
MEMORY_HEADROOM = 0.8


@dataclass
class Calibration:
    """The chosen cap and what it was chosen from."""

    cap_rows: int
    step_seconds: dict[int, float] = field(default_factory=dict)
    """Fastest of :data:`REPEATS` forwards by rows (the least disturbed by other work)."""
    bytes_per_row: float | None = None
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "cap_rows": self.cap_rows,
            "step_seconds": {str(rows): seconds for rows, seconds in sorted(self.step_seconds.items())},
            "bytes_per_row": self.bytes_per_row,
            "why": self.why,
        }


def calibrate(
    module: Any, recorded: dict[str, Any], sample_name: str, max_rows: int, device: str
) -> Calibration:
    """Time ``module`` on ``recorded`` replicated to more rows; the cap where growth stops paying."""
    import torch

    call = DenoiserCall(recorded, sample_name)
    base = call.rows
    timings: dict[int, float] = {}
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    peaks: dict[int, int] = {}
    copies = 1
    cap = min(base, max_rows)
    why = f"reached the bound of {max_rows} rows (2 x max_batch_size)"
    while copies * base <= max_rows:
        rows = copies * base
        arguments = merge_arguments([call] * copies)
        seconds = _best_seconds(functools.partial(module, **arguments), cuda)
        if cuda:
            peaks[rows] = int(torch.cuda.max_memory_allocated())
        timings[rows] = seconds
        previous = rows // 2
        if previous in timings and rows / seconds < MIN_GAIN * previous / timings[previous]:
            why = (
                f"{rows} rows gave {rows / seconds:.0f} rows/s, under {MIN_GAIN:.2f}x the "
                f"{previous / timings[previous]:.0f} rows/s of {previous}"
            )
            break
        cap = rows
        if seconds > MAX_FORWARD_SECONDS:
            why = f"one forward of {rows} rows took {seconds:.1f} s (measurement stopped)"
            break
        copies *= 2
    bytes_per_row = None
    if cuda and len(peaks) >= 2:
        low, high = min(peaks), max(peaks)
        bytes_per_row = max(1.0, (peaks[high] - peaks[low]) / (high - low))
        free, _total = torch.cuda.mem_get_info()
        fits = high + int(free * MEMORY_HEADROOM / bytes_per_row)
        if fits < cap:
            cap, why = max(1, fits), f"device memory holds {fits} rows at {bytes_per_row / 2**20:.1f} MiB/row"
    return Calibration(max(1, cap), timings, bytes_per_row, why)


def _best_seconds(run: Callable[[], Any], cuda: bool) -> float:
    """Fastest of :data:`REPEATS` runs after one warm-up (allocator, kernels): every engine and
    worker pays this at load, so it is kept to a few forwards per size."""
    import torch

    samples = []
    with torch.inference_mode():
        run()
        for _ in range(REPEATS):
            if cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            run()
            if cuda:
                torch.cuda.synchronize()
            samples.append(time.perf_counter() - started)
    return min(samples)
