"""The built-in digits model: time per image at 64x64 with its default steps, and oracle accuracy.

Baseline in the same run: calling the shipped pipeline directly with
diffusers (``DigitsPipeline.from_pretrained``), against omni's in-process
executor. Target: under 100 ms per image on a 2-core CPU.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_digits.py [--full]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.models.default import default_model_path
from omni_core.models.digits import DigitsPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    count = 100 if args.full else 20
    pipe = DigitsPipeline.from_pretrained(default_model_path())
    pipe("1", height=64, width=64, output_type="np")
    direct = []
    for seed in range(count):
        started = time.perf_counter()
        pipe(
            str(seed % 10),
            height=64,
            width=64,
            output_type="np",
            generator=[torch.Generator().manual_seed(seed)],
        )
        direct.append(time.perf_counter() - started)
    with DiffusionEngine(OmniDiffusionConfig(executor_class="inproc")) as engine:
        engine.step([OmniDiffusionRequest(prompt="1", height=64, width=64, seed=0)])
        omni = []
        outputs = []
        for seed in range(count):
            started = time.perf_counter()
            outputs.append(
                engine.step([OmniDiffusionRequest(prompt=str(seed % 10), height=64, width=64, seed=seed)])[0]
            )
            omni.append(time.perf_counter() - started)
    d, o = statistics.median(direct), statistics.median(omni)
    print("digits model, 64x64, its default 8 sampling steps, guidance 1.5")
    print(
        f"  direct pipeline {d * 1e3:6.1f} ms/image, omni inproc {o * 1e3:6.1f} ms/image (target < 100 ms), "
        f"ratio {d / o:4.2f}"
    )
    try:
        from omni_core.models.digits_oracle import classify, oracle
    except ImportError:
        return
    predicted = classify([output.output[0] for output in outputs])
    correct = sum(p == seed % 10 for seed, p in enumerate(predicted))
    print(
        f"  oracle: {correct}/{count} images classified as the prompted digit "
        f"(oracle held-out accuracy {oracle()[1]:.3f})"
    )


if __name__ == "__main__":
    main()
