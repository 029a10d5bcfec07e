"""The built-in default model (shapes-v1): time per 64x64 image at its default steps, and the oracle.

Baseline in the same run: calling the shipped pipeline directly with diffusers
(``ShapesPipeline.from_pretrained``), against omni's in-process executor.
Targets (issue 26): under 100 ms per image through inproc on a 2-core CPU; over
200 random prompts the oracle finds the asked subject in >= 90 %, the asked
colors in >= 95 %; size and position are reported.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_shapes.py [--full]``.
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
from omni_core.models.default import default_model_path
from omni_core.models.shapes import ShapesPipeline
from omni_core.models.shapes_vocabulary import SUBJECTS

STEPS = 4
"""The pipeline's default number of sampling steps."""


def prompt(seed: int) -> str:
    return f"a red {SUBJECTS[seed % len(SUBJECTS)]} on a blue background"


def time_direct(count: int) -> float:
    """Median seconds per image calling the shipped pipeline directly with diffusers."""
    pipe = ShapesPipeline.from_pretrained(default_model_path())
    pipe.set_progress_bar_config(disable=True)
    pipe(prompt(0), output_type="np")
    times = []
    for seed in range(count):
        started = time.perf_counter()
        pipe(prompt(seed), output_type="np", generator=[torch.Generator().manual_seed(seed)])
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
    count = 200 if args.full else 40
    # The baseline runs in its own process: torch called from two threads of one process
    # gets two OpenMP pools that spin against each other (see docs/performance.md).
    baseline = subprocess.run(
        [sys.executable, __file__, "--direct-only", str(count)], capture_output=True, text=True, check=True
    )
    direct = float(json.loads(baseline.stdout.strip().splitlines()[-1]))
    with DiffusionEngine(OmniDiffusionConfig(executor_class="inproc")) as engine:
        engine.step([OmniDiffusionRequest(prompt(0), seed=0)])
        omni = []
        for seed in range(count):
            request = OmniDiffusionRequest(prompt(seed), seed=seed)
            started = time.perf_counter()
            engine.step([request])[0].raise_for_error()
            omni.append(time.perf_counter() - started)
        o = statistics.median(omni)
        print(f"shapes model (default), 64x64, its default {STEPS} sampling steps, no guidance")
        print(
            f"  direct pipeline {direct * 1e3:6.1f} ms/image, omni inproc {o * 1e3:6.1f} ms/image "
            f"(target < 100 ms: {verdict(o < 0.1)}), ratio {direct / o:4.2f}"
        )
        save_bars(
            args.plot_dir,
            "shapes",
            f"shapes model, 64², {STEPS} steps: time per image",
            ["diffusers direct", "omni inproc"],
            [direct * 1e3, o * 1e3],
            "ms per image",
        )
        if importlib.util.find_spec("sklearn") is None:
            print("  oracle: skipped (pip install 'omni-core[train]')")
            return
        from omni_core.models.shapes_oracle import random_prompts, score

        pairs = random_prompts(200, seed=0)
        outputs = engine.step([OmniDiffusionRequest(text, seed=i) for i, (_, text) in enumerate(pairs)])
    scores = score([scene for scene, _ in pairs], [o.raise_for_error().output[0] for o in outputs])
    targets = {"subject": 0.90, "color": 0.95, "background": 0.95}
    print(
        "  oracle over 200 random prompts: "
        + ", ".join(
            f"{name} {value:.1%}"
            + (
                f" (target >= {targets[name]:.0%}: {verdict(value >= targets[name])})"
                if name in targets
                else ""
            )
            for name, value in scores.items()
        )
    )


if __name__ == "__main__":
    main()
