"""The built-in digits model (digits-v1, by name): time per image at 64x64, and oracle accuracy.

Baseline in the same run: calling the shipped pipeline directly with
diffusers (``DigitsPipeline.from_pretrained``), against omni's in-process
executor. Target: under 100 ms per image on a 2-core CPU.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_digits.py [--full]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time

import torch
from _plot import save_bars
from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.models.default import builtin_model_path
from omni_core.models.digits import DigitsPipeline


def time_direct(count: int) -> float:
    """Median seconds per image calling the shipped pipeline directly with diffusers."""
    pipe = DigitsPipeline.from_pretrained(builtin_model_path("digits-v1"))
    pipe("1", height=64, width=64, output_type="np")
    times = []
    for seed in range(count):
        started = time.perf_counter()
        generator = [torch.Generator().manual_seed(seed)]
        pipe(str(seed % 10), height=64, width=64, output_type="np", generator=generator)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help="write PNG charts here")
    parser.add_argument("--direct-only", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct_only is not None:
        print(json.dumps(time_direct(args.direct_only)))
        return
    count = 100 if args.full else 10
    # The baseline runs in its own process: torch called from two threads of one process
    # gets two OpenMP pools that spin against each other (see docs/performance.md).
    baseline = subprocess.run(
        [sys.executable, __file__, "--direct-only", str(count)], capture_output=True, text=True, check=True
    )
    direct = float(json.loads(baseline.stdout.strip().splitlines()[-1]))
    with DiffusionEngine(
        OmniDiffusionConfig(model_name_or_path="digits-v1", executor_class="inproc")
    ) as engine:
        engine.step([OmniDiffusionRequest(prompt="1", height=64, width=64, seed=0)])
        omni = []
        outputs = []
        for seed in range(count):
            request = OmniDiffusionRequest(prompt=str(seed % 10), height=64, width=64, seed=seed)
            started = time.perf_counter()
            outputs.append(engine.step([request])[0])
            omni.append(time.perf_counter() - started)
    o = statistics.median(omni)
    print("digits model, 64x64, its default 8 sampling steps, guidance 1.5")
    print(
        f"  direct pipeline {direct * 1e3:6.1f} ms/image, omni inproc {o * 1e3:6.1f} ms/image "
        f"(target < 100 ms: {verdict(o < 0.1)}), ratio {direct / o:4.2f}"
    )
    save_bars(
        args.plot_dir,
        "digits",
        "digits model, 64², 8 steps: time per image",
        ["diffusers direct", "omni inproc"],
        [direct * 1e3, o * 1e3],
        "ms per image",
    )
    if importlib.util.find_spec("sklearn") is None:
        print("  oracle: skipped (pip install 'omni-core[train]')")
        return
    from omni_core.models.digits_oracle import classify, oracle

    predicted = classify([output.output[0] for output in outputs])
    correct = sum(p == seed % 10 for seed, p in enumerate(predicted))
    print(
        f"  oracle: {correct}/{count} images classified as the prompted digit "
        f"(oracle held-out accuracy {oracle()[1]:.3f})"
    )


if __name__ == "__main__":
    main()
