"""Timing a built-in model two ways, for bench_digits.py and bench_shapes.py.

Baseline in the same run: the shipped pipeline called directly with diffusers
(``from_pretrained``), in its own process (torch called from two threads of one
process gets two OpenMP pools that spin against each other, docs/performance.md),
against omni's in-process executor, one request at a time.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from omni_core import DiffusionEngine, DiffusionOutput, OmniDiffusionRequest


def time_direct(pipeline: Any, prompt: Callable[[int], str], count: int) -> float:
    """Median seconds per 64x64 image calling ``pipeline`` directly."""
    pipeline.set_progress_bar_config(disable=True)
    pipeline(prompt(0), height=64, width=64, output_type="np")
    times = []
    for seed in range(count):
        started = time.perf_counter()
        generator = [torch.Generator().manual_seed(seed)]
        pipeline(prompt(seed), height=64, width=64, output_type="np", generator=generator)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def direct_in_own_process(script: str, count: int) -> float:
    """``script --direct-only count``'s printed median: the baseline, in a process of its own."""
    baseline = subprocess.run(
        [sys.executable, script, "--direct-only", str(count)], capture_output=True, text=True, check=True
    )
    return float(json.loads(baseline.stdout.strip().splitlines()[-1]))


def time_omni(
    engine: DiffusionEngine, prompt: Callable[[int], str], count: int
) -> tuple[float, list[DiffusionOutput]]:
    """(median seconds per 64x64 image through ``engine``, the outputs)."""
    engine.step([OmniDiffusionRequest(prompt=prompt(0), height=64, width=64, seed=0)])
    times, outputs = [], []
    for seed in range(count):
        request = OmniDiffusionRequest(prompt=prompt(seed), height=64, width=64, seed=seed)
        started = time.perf_counter()
        outputs.append(engine.step([request])[0].raise_for_error())
        times.append(time.perf_counter() - started)
    return statistics.median(times), outputs


def report(name: str, title: str, direct: float, omni: float, plot_dir: str | None) -> None:
    """Print the two timings against the 100 ms target, and chart them when asked."""
    from _plot import save_bars
    from _targets import verdict

    print(title)
    print(
        f"  direct pipeline {direct * 1e3:6.1f} ms/image, omni inproc {omni * 1e3:6.1f} ms/image "
        f"(target < 100 ms: {verdict(omni < 0.1)}), ratio {direct / omni:4.2f}"
    )
    labels = ["diffusers direct", "omni inproc"]
    save_bars(plot_dir, name, f"{title}: time per image", labels, [direct * 1e3, omni * 1e3], "ms per image")


def arguments(description: str) -> Any:
    """``--full``, ``--plot-dir`` and the baseline's hidden ``--direct-only COUNT``."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help="write PNG charts here")
    parser.add_argument("--direct-only", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()
