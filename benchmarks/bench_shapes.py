"""The built-in default model (shapes-v1): time per 64x64 image at its default steps, and the oracle.

Baseline in the same run: calling the shipped pipeline directly with
diffusers (``ShapesPipeline.from_pretrained``), against omni's in-process
executor. Target: under 100 ms per image on a 2-core CPU. The oracle reads
each image back (subject, colors, size, position) for prompts drawn at random
from the vocabulary.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_shapes.py [--full]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import statistics
import subprocess
import sys
import time

import torch
from _plot import save_bars
from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.models.default import SHIPPED_MODEL
from omni_core.models.shapes import ShapesPipeline
from omni_core.models.shapes_vocabulary import prompt_for, random_scene


def prompts(count: int) -> list[tuple[object, str]]:
    import random

    rng = random.Random(0)
    return [(scene, prompt_for(scene, rng)) for scene in (random_scene(rng) for _ in range(count))]


def time_direct(count: int) -> float:
    """Median seconds per image calling the shipped pipeline directly with diffusers."""
    pipe = ShapesPipeline.from_pretrained(SHIPPED_MODEL)
    pipe("a red circle", output_type="np")
    times = []
    for seed, (_, prompt) in enumerate(prompts(count)):
        started = time.perf_counter()
        pipe(prompt, output_type="np", generator=[torch.Generator().manual_seed(seed)])
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
    count = 200 if args.full else 20
    # The baseline runs in its own process: torch called from two threads of one process
    # gets two OpenMP pools that spin against each other (see docs/performance.md).
    baseline = subprocess.run(
        [sys.executable, __file__, "--direct-only", str(count)], capture_output=True, text=True, check=True
    )
    direct = float(json.loads(baseline.stdout.strip().splitlines()[-1]))
    pairs = prompts(count)
    with DiffusionEngine(OmniDiffusionConfig(executor_class="inproc")) as engine:
        engine.step([OmniDiffusionRequest(prompt="a red circle", seed=0)])
        omni, outputs = [], []
        for seed, (_, prompt) in enumerate(pairs):
            request = OmniDiffusionRequest(prompt=prompt, seed=seed)
            started = time.perf_counter()
            outputs.append(engine.step([request])[0].raise_for_error())
            omni.append(time.perf_counter() - started)
    o = statistics.median(omni)
    defaults = inspect.signature(ShapesPipeline.__call__).parameters
    steps, guidance = defaults["num_inference_steps"].default, defaults["guidance_scale"].default
    print(f"shapes model, 64x64, its default {steps} sampling steps, guidance {guidance}")
    print(
        f"  direct pipeline {direct * 1e3:6.1f} ms/image, omni inproc {o * 1e3:6.1f} ms/image "
        f"(target < 100 ms: {verdict(o < 0.1)}), ratio {direct / o:4.2f}"
    )
    save_bars(
        args.plot_dir,
        "shapes",
        f"shapes model, 64², {steps} steps: time per image",
        ["diffusers direct", "omni inproc"],
        [direct * 1e3, o * 1e3],
        "ms per image",
    )
    if importlib.util.find_spec("sklearn") is None:
        print("  oracle: skipped (pip install 'omni-core[train]')")
        return
    from omni_core.models.shapes_oracle import score

    scores = score([scene for scene, _ in pairs], [output.output[0] for output in outputs])  # type: ignore[misc]
    print(
        f"  oracle over {count} random prompts: subject {scores['subject']:.1%} (target >= 90 %: "
        f"{verdict(scores['subject'] >= 0.9)}), color {scores['color']:.1%} (>= 95 %: "
        f"{verdict(scores['color'] >= 0.95)}), background {scores['background']:.1%} (>= 95 %: "
        f"{verdict(scores['background'] >= 0.95)}), size {scores['size']:.1%}, "
        f"position {scores['position']:.1%}"
    )


if __name__ == "__main__":
    main()
